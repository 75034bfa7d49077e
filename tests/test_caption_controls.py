"""Issue 19 item 5: caption controls for datasets -- length presets, trigger words, a replace list."""
import pytest

from interrogator_core import InterrogatorConfig, UnknownNameError
from interrogator_core.captioning import (CAPTION_LENGTHS, apply_replace_list, caption_instruction, caption_tokens,
                                          read_replace_list)


# -- length presets -------------------------------------------------------------------------------------------
def test_length_presets_reach_each_family_kind():
    assert list(CAPTION_LENGTHS) == ["very_short", "short", "medium", "long", "very_long"]
    budgets = [p.tokens for p in CAPTION_LENGTHS.values()]
    assert budgets == sorted(budgets) and len(set(budgets)) == len(budgets)
    cfg = InterrogatorConfig(caption_model=None, cache_dir=None, caption_length="very_short")
    assert caption_instruction(cfg, "chat", "short") == CAPTION_LENGTHS["very_short"].instruction
    assert "under 15 words" in caption_instruction(cfg, "chat", "detailed")
    assert caption_instruction(cfg, "task", "detailed") == "<CAPTION>"
    assert caption_instruction(cfg, "none", "short") is None  # BLIP/GIT: the budget only
    assert caption_instruction(cfg, "chat", "tags") is None  # a tags caption keeps its instruction
    assert caption_tokens(cfg, "detailed") == CAPTION_LENGTHS["very_short"].tokens
    long = InterrogatorConfig(caption_model=None, cache_dir=None, caption_length="very_long")
    assert caption_instruction(long, "task", "short") == "<MORE_DETAILED_CAPTION>"
    # the user's instruction and token budget still win
    own = InterrogatorConfig(caption_model=None, cache_dir=None, caption_length="long", caption_prompt="Say hi.",
                             caption_max_length=7)
    assert caption_instruction(own, "chat", "short") == "Say hi." and caption_tokens(own, "short") == 7
    auto = InterrogatorConfig(caption_model=None, cache_dir=None, caption_length="auto")
    assert auto.caption_length is None and caption_instruction(auto, "chat", "short") is None
    with pytest.raises(UnknownNameError, match="very_short"):
        InterrogatorConfig(caption_model=None, cache_dir=None, caption_length="tiny")


def test_length_preset_budget_reaches_generate(make_interrogator, images):
    ci = make_interrogator(caption_max_length=None, caption_length="very_short")
    cap = ci.captions.model()
    seen = []
    real = cap.generate

    def spy(batch, max_new_tokens, **kwargs):
        seen.append((max_new_tokens, kwargs.get("instruction")))
        return real(batch, max_new_tokens, **kwargs)

    cap.generate = spy
    ci.interrogate(images[:1], mode="caption")
    assert seen == [(CAPTION_LENGTHS["very_short"].tokens, None)]


# -- trigger words --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fast", "caption"])
def test_trigger_words_go_on_every_positive_prompt_only(make_interrogator, images, mode):
    ci = make_interrogator(trigger_prefix=" ohwx, ", trigger_suffix="in the style of zyx")
    r = ci.interrogate(images[:1], mode=mode, captions=["a lighthouse on a rock."])[0]
    plain = make_interrogator().interrogate(images[:1], mode=mode, captions=["a lighthouse on a rock."])[0]
    assert r.caption == plain.caption == "a lighthouse on a rock."
    assert r.negative == plain.negative
    for text in [r.positive, *r.prompts.values()]:
        assert text.startswith("ohwx, ") and text.endswith(", in the style of zyx") and ".," not in text
    assert r.positive == "ohwx, " + plain.positive.rstrip(".") + ", in the style of zyx"


# -- replace list ---------------------------------------------------------------------------------------------
def test_replace_list_file_rules(tmp_path):
    f = tmp_path / "replace.txt"
    f.write_text("# comment\nwoman => person\nblurry\n\nred car => vehicle\n", encoding="utf-8")
    rules = read_replace_list(str(f))
    assert len(rules) == 3
    text = "A Woman beside a red car, blurry, womanly smile, Blurry."
    assert apply_replace_list(text, rules) == "A person beside a vehicle, womanly smile."
    with pytest.raises(ValueError, match="caption_replace"):
        InterrogatorConfig(caption_model=None, cache_dir=None, caption_replace=str(tmp_path / "missing.txt"))


def test_replace_list_applies_to_written_captions(make_interrogator, images, tmp_path):
    raw = make_interrogator().interrogate(images[:1], mode="caption")[0].caption
    words = raw.split()
    assert words, "the tiny captioner wrote nothing"
    f = tmp_path / "replace.txt"
    f.write_text(f"{words[0]} => REPLACED\n", encoding="utf-8")
    out = make_interrogator(caption_replace=str(f)).interrogate(images[:1], mode="caption")[0].caption
    assert out.split()[0] == "REPLACED"
    given = make_interrogator(caption_replace=str(f)).interrogate(images[:1], mode="caption",
                                                                   captions=[raw])[0].caption
    assert given == raw  # a caption you give is yours


# -- the CLI and the Ray stage ---------------------------------------------------------------------------------
def test_cli_flags_and_the_ray_stage_config_carry_the_caption_controls(tmp_path):
    from interrogator_core import cli
    from interrogator_core.dataset import config_dict, split_config

    f = tmp_path / "replace.txt"
    f.write_text("blurry\n", encoding="utf-8")
    a = cli.build_parser().parse_args(["x.png", "--caption-model", "none", "--caption-length", "long",
                                       "--trigger-prefix", "ohwx", "--trigger-suffix", "zyx style",
                                       "--caption-replace", str(f)])
    cfg = cli._config(a)
    assert (cfg.caption_length, cfg.trigger_prefix, cfg.trigger_suffix, cfg.caption_replace) == \
        ("long", "ohwx", "zyx style", str(f))
    engine = split_config(config_dict(cfg)).engine  # what each Ray actor builds
    assert (engine.caption_length, engine.trigger_prefix, engine.trigger_suffix, engine.caption_replace) == \
        ("long", "ohwx", "zyx style", str(f))
