"""Target profiles: which prompts a result carries per target, their limits (clip 77 tokens, t5 whole), tag
joining, the caption style a target asks for, one low-VRAM rule over every encoder, and the core's validation."""
from typing import Dict, List

import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

import interrogator_core.interrogator as engine
import interrogator_core.pool as loaders  # where models are loaded
from interrogator_core import (MAX_BEAM_WIDTH, load_images, InterrogatorConfig, StandaloneHost, UnknownNameError, get_target,
                               list_targets)
from interrogator_core.request import check_request
from interrogator_core.targets import CLIP_G, CLIP_H, CLIP_L, NO_NEGATIVE_NOTE

BPE = SimpleTokenizer()

#: the first six targets (their names and order never change) and those of issue 19, appended
FIRST_TARGETS = ["sd15", "sd2", "sdxl", "sdxl-tags", "flux", "sd35"]
NEW_TARGETS = ["flux2", "qwen-image", "hidream", "z-image", "chroma", "lumina2", "wan", "illustrious", "noobai",
               "pony"]
#: what each target must return in ``result.prompts`` (written out, not read from the presets)
EXPECTED_KEYS = {"sd15": {"clip_l"}, "sd2": set(), "sdxl": {"clip_g"}, "sdxl-tags": {"clip_g"},
                 "flux": {"clip_l", "t5"}, "sd35": {"clip_l", "clip_g", "t5"}, "custom": set(),
                 "flux2": {"llm"}, "qwen-image": {"llm"}, "hidream": {"clip_l", "clip_g", "t5", "llama"},
                 "z-image": {"llm"}, "chroma": {"t5"}, "lumina2": {"llm"}, "wan": {"t5"},
                 "illustrious": {"clip_g"}, "noobai": {"clip_g"}, "pony": {"clip_g"}}
MAIN_KEY = {"sd15": "clip_l", "sdxl": "clip_g", "sdxl-tags": "clip_g", "flux": "clip_l", "sd35": "clip_g",
            "flux2": "llm", "qwen-image": "llm", "hidream": "llama", "z-image": "llm", "chroma": "t5",
            "lumina2": "llm", "wan": "t5", "illustrious": "clip_g", "noobai": "clip_g", "pony": "clip_g"}
#: the long-prose prompts (the whole caption), by target
PROSE_KEYS = {"flux": {"t5"}, "sd35": {"t5"}, "flux2": {"llm"}, "qwen-image": {"llm"}, "hidream": {"t5", "llama"},
              "z-image": {"llm"}, "chroma": {"t5"}, "lumina2": {"llm"}, "wan": {"t5"}}
#: the CLIP model of each preset (it ranks positive/negative; for a prose-main target, the negative)
MAIN_CLIP = {"sd15": CLIP_L, "sd2": CLIP_H, "sdxl": CLIP_G, "sdxl-tags": CLIP_G, "flux": CLIP_L, "sd35": CLIP_G,
             "flux2": CLIP_L, "qwen-image": CLIP_L, "hidream": CLIP_L, "z-image": CLIP_L, "chroma": CLIP_L,
             "lumina2": CLIP_L, "wan": CLIP_L, "illustrious": CLIP_G, "noobai": CLIP_G, "pony": CLIP_G}
CAPTION_STYLE = {"sd15": "short", "sd2": "short", "sdxl": "short", "sdxl-tags": "tags", "flux": "detailed",
                 "sd35": "detailed", "custom": "short", "flux2": "detailed", "qwen-image": "detailed",
                 "hidream": "detailed", "z-image": "detailed", "chroma": "detailed", "lumina2": "detailed",
                 "wan": "detailed", "illustrious": "tags", "noobai": "tags", "pony": "tags"}
LONG_CAPTION = ("a detailed photograph of an old stone lighthouse on a rocky cliff above a stormy grey sea, "
                "with waves breaking against the rocks below, seagulls circling the lantern room, a narrow "
                "path winding up from a small fishing village whose red roofs glow in the last light of the "
                "evening, heavy clouds rolling in from the horizon and a single boat heading back to the harbour "
                "while the keeper climbs the spiral stairs with an oil lamp to light the great lens for the night")


def bpe_tokens(prompt: str) -> int:
    return len(BPE.encode(prompt)) + 2  # + start/end tokens


def encoder_text(ci, key: str):
    """The TextEncoder (tokenizer path) the engine used for the prompt ``key``."""
    return ci.encoders[key].clip.text


def engine_fits(ci, key: str, prompt: str) -> bool:
    return bool(encoder_text(ci, key).tokenize([prompt])[1].item())


# -- the presets as data ----------------------------------------------------------------------------------------
def test_targets_are_listed_in_order_and_unknown_ones_name_the_valid_ones():
    assert list_targets() == FIRST_TARGETS + NEW_TARGETS + ["custom"]
    for bad in ("sdxxl", "Flux", None):
        with pytest.raises(UnknownNameError) as e:
            InterrogatorConfig(target=bad)
        assert repr(str(bad)) in str(e.value) and "sd35" in str(e.value) and "sdxl-tags" in str(e.value)
    with pytest.raises(UnknownNameError, match="flux"):
        get_target("flx")


@pytest.mark.parametrize("target", list_targets())
def test_each_preset_declares_its_prompts(target):
    preset = get_target(target)
    assert set(preset.prompt_keys()) == EXPECTED_KEYS[target]
    assert preset.main_encoder == MAIN_KEY.get(target)
    if target != "custom":
        assert InterrogatorConfig(target=target, clip_model="ViT-B-32/openai").clip_model == MAIN_CLIP[target]
    assert {e.key for e in preset.encoders if not e.ranked} == PROSE_KEYS.get(target, set())
    assert get_target("sdxl").prompt_keys(sdxl_dual=True) == ["clip_g", "clip_l"]
    assert get_target("flux").negative is False and NO_NEGATIVE_NOTE in get_target("flux").notes
    styles = {t: get_target(t).caption_style for t in list_targets()}
    assert styles == CAPTION_STYLE


#: issue 19's targets as the sources say (written out here, not read back from the presets): per target the
#: encoders ``(key, CLIP model or "" for long prose, ComfyUI node input, token stream)``, whether it uses a negative
#: prompt, its quality prefix, the start of its negative base, its ComfyUI node and grammar
SYSTEM = ("You are an assistant designed to generate superior images with the superior degree of image-text "
          "alignment based on textual prompts or user prompts.")
NEW_DATA = {
    "flux2": dict(encoders=[("llm", "", "text", "llm")], negative=False, prefix="", neg_base="",
                  node="CLIPTextEncode", join="prose", guidance=True, template=""),
    "qwen-image": dict(encoders=[("llm", "", "text", "llm")], negative=True, prefix="", neg_base="低分辨率，低画质",
                       node="CLIPTextEncode", join="prose", guidance=False, template=""),
    "hidream": dict(encoders=[("clip_l", CLIP_L, "clip_l", "l"), ("clip_g", CLIP_G, "clip_g", "g"),
                              ("t5", "", "t5xxl", "t5xxl"), ("llama", "", "llama", "llama")],
                    negative=True, prefix="", neg_base="", node="CLIPTextEncodeHiDream", join="prose",
                    guidance=False, template=""),
    "z-image": dict(encoders=[("llm", "", "text", "llm")], negative=True, prefix="", neg_base="",
                    node="CLIPTextEncode", join="prose", guidance=False, template=""),
    "chroma": dict(encoders=[("t5", "", "text", "t5xxl")], negative=True, prefix="", neg_base="low quality, ugly",
                   node="CLIPTextEncode", join="prose", guidance=False, template=""),
    "lumina2": dict(encoders=[("llm", "", "user_prompt", "llm")], negative=True, prefix="", neg_base="",
                    node="CLIPTextEncodeLumina2", join="prose", guidance=False,
                    template=SYSTEM + " <Prompt Start> {prompt}"),
    "wan": dict(encoders=[("t5", "", "text", "umt5xxl")], negative=True, prefix="", neg_base="色调艳丽，过曝，静态",
                node="CLIPTextEncode", join="prose", guidance=False, template=""),
    "illustrious": dict(encoders=[("clip_g", CLIP_G, "clip_g", "g"), ("clip_l", CLIP_L, "clip_l", "l")],
                        negative=True, prefix="masterpiece, best quality", neg_base="worst quality, bad quality",
                        node="CLIPTextEncode", join="tags", guidance=False, template=""),
    "noobai": dict(encoders=[("clip_g", CLIP_G, "clip_g", "g"), ("clip_l", CLIP_L, "clip_l", "l")],
                   negative=True, prefix="masterpiece, best quality, newest, absurdres, highres, safe",
                   neg_base="nsfw, worst quality, old, early, low quality, lowres", node="CLIPTextEncode",
                   join="tags", guidance=False, template=""),
    "pony": dict(encoders=[("clip_g", CLIP_G, "clip_g", "g"), ("clip_l", CLIP_L, "clip_l", "l")], negative=True,
                 prefix="score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up", neg_base="",
                 node="CLIPTextEncode", join="tags", guidance=False, template=""),
}
ANIME_ORDER = ("count", "character", "series", "artist", "general", "meta")
#: the most tokens each long-prose encoder reads, where a source says so (HiDream's T5: ComfyUI keeps 128; Wan's
#: umT5: text_len 512; Flux.2: 512; Lumina 2's Gemma: 256)
MAX_TOKENS = {("hidream", "t5"): 128, ("wan", "t5"): 512, ("flux2", "llm"): 512, ("lumina2", "llm"): 256}


@pytest.mark.parametrize("target", NEW_TARGETS)
def test_new_targets_are_the_data_their_sources_give(target):
    preset, want = get_target(target), NEW_DATA[target]
    got = [(e.key, e.clip_model, e.comfy_input or e.key, e.stream) for e in preset.encoders]
    assert got == want["encoders"]
    assert preset.negative is want["negative"] and preset.quality_prefix == want["prefix"]
    assert preset.negative_base.startswith(want["neg_base"]) and bool(preset.negative_base) == bool(want["neg_base"])
    assert (preset.comfy_node, preset.join, preset.guidance, preset.encode_template) == \
        (want["node"], want["join"], want["guidance"], want["template"])
    for e in preset.encoders:
        assert e.max_tokens == MAX_TOKENS.get((target, e.key), 0), e.key
    anime = want["join"] == "tags"
    assert preset.tag_order == (ANIME_ORDER if anime else ())
    assert preset.escape_parentheses is anime and preset.tag_underscores is False
    assert [e.key for e in preset.encoders if e.needs_dual] == (["clip_l"] if anime else [])
    assert preset.needs_dual is anime
    if not want["negative"]:
        assert any("negative" in n for n in preset.notes), "a target without a negative says so"


@pytest.mark.parametrize("target", NEW_TARGETS + ["flux", "sd35", "sdxl"])
def test_targets_name_the_sources_their_facts_were_checked_in(target):
    sources = get_target(target).sources
    assert sources
    for src in sources:
        assert src.startswith("https://") or src.startswith("github:"), src
        if src.startswith("github:"):
            repo, path = src[len("github:"):].split(" ")[0].split(":", 1)
            assert repo.count("/") == 1 and "." in path, src
    if get_target(target).comfy_node != "CLIPTextEncode" or target in ("flux2", "z-image", "chroma", "wan",
                                                                        "qwen-image"):
        assert any("ComfyUI:comfy" in src for src in sources), "each ComfyUI fact names its ComfyUI file"


def test_all_prompt_keys_grow_at_the_end_only():
    from interrogator_core.targets import all_prompt_keys

    assert all_prompt_keys() == ["clip_l", "clip_g", "t5", "llm", "llama"]


def test_a_preset_refuses_a_template_without_the_prompt_and_an_unknown_tag_category():
    from interrogator_core.targets import TargetPreset

    with pytest.raises(ValueError, match="prompt"):
        TargetPreset("x", CLIP_L, "x", encode_template="no placeholder")
    with pytest.raises(ValueError, match="colour"):
        TargetPreset("x", CLIP_L, "x", tag_order=("count", "colour"))


def _result(**fields):
    from interrogator_core.result import InterrogationResult

    base = dict(mode="best", positive="P", negative="N", caption="C")
    base.update(fields)
    return InterrogationResult(**base)


@pytest.mark.parametrize("target, prompts, dual, streams", [
    ("sd15", {"clip_l": "P"}, False, {}),
    ("sdxl", {"clip_g": "P"}, False, {}),
    ("sdxl", {"clip_g": "P", "clip_l": "L"}, True, {"g": "P", "l": "L"}),
    ("flux", {"clip_l": "P", "t5": "T"}, False, {"l": "P", "t5xxl": "T"}),
    ("sd35", {"clip_g": "P", "clip_l": "L", "t5": "T"}, False, {"g": "P", "l": "L", "t5xxl": "T"}),
    ("hidream", {"llama": "P", "clip_l": "L", "clip_g": "G", "t5": "T"}, False,
     {"l": "L", "g": "G", "t5xxl": "T", "llama": "P"}),
    ("pony", {"clip_g": "P", "clip_l": "L"}, True, {"g": "P", "l": "L"}),
    ("wan", {"t5": "P"}, False, {}),
    ("flux2", {"llm": "P"}, False, {}),
    ("sd2", {}, False, {}),
])
def test_token_streams_map_each_prompt_to_its_comfyui_stream(target, prompts, dual, streams):
    from interrogator_core.targets import token_streams

    r = _result(prompts=prompts, positive_l=prompts.get("clip_l") if dual else None,
                negative_l="NL" if dual else None)
    assert token_streams(get_target(target), r, sdxl_dual=dual) == ("P", streams)
    negative = token_streams(get_target(target), r, negative=True, sdxl_dual=dual)
    assert negative == ("N", {"l": "NL"} if dual else {}), "own negatives: SDXL's ViT-L only"


def test_token_streams_put_lumina2s_system_prompt_around_the_positive_only():
    from interrogator_core.targets import token_streams

    r = _result(positive="a cat", prompts={"llm": "a cat"})
    assert token_streams(get_target("lumina2"), r) == (SYSTEM + " <Prompt Start> a cat", {})
    assert token_streams(get_target("lumina2"), r, negative=True) == ("N", {})
    assert token_streams(get_target("lumina2"), _result(positive="", prompts={"llm": ""})) == ("", {})


@pytest.mark.parametrize("target", NEW_TARGETS)
def test_new_targets_return_their_prompts_prose_whole_and_clip_within_77(target, make_interrogator, images,
                                                                         registry_to_tiny):
    """What holds with any composition: the target's prompt keys, each long-prose prompt the whole caption, each
    CLIP prompt within its 77-token window."""
    ci = make_interrogator(target=target)
    r = ci.interrogate(images[:1], mode="fast", max_flavors=12, min_flavors=2, captions=[LONG_CAPTION])[0]
    assert set(r.prompts) == EXPECTED_KEYS[target]
    for key, prompt in r.prompts.items():
        if key in PROSE_KEYS.get(target, ()):
            assert LONG_CAPTION in prompt, f"{key} reads the whole caption"
        else:
            assert prompt and engine_fits(ci, key, prompt) and bpe_tokens(prompt) <= 77, key


@pytest.mark.parametrize("target", NEW_TARGETS)
def test_new_targets_compose_positive_prefix_and_negative_base(target, make_interrogator, images,
                                                              registry_to_tiny):
    """The composition issue 19 asks for: a prose-main target's positive is its prose prompt; the quality prefix
    starts every positive prompt; the negative base starts the negative (after it, CLIP-ranked terms); a target
    without a negative returns none."""
    want = NEW_DATA[target]
    ci = make_interrogator(target=target)
    caption = "1girl, hatsune_miku_(vocaloid), solo" if want["join"] == "tags" else LONG_CAPTION
    r = ci.interrogate(images[:1], mode="fast", max_flavors=12, min_flavors=2, captions=[caption])[0]
    assert r.positive == r.prompts[MAIN_KEY[target]]
    if MAIN_KEY[target] in PROSE_KEYS.get(target, ()):
        assert LONG_CAPTION in r.positive
    if want["prefix"]:
        assert r.positive.startswith(want["prefix"] + ", ")
        assert bpe_tokens(r.positive) <= 77
    if want["join"] == "tags":
        assert "hatsune miku \\(vocaloid\\)" in r.positive and "_" not in r.positive.replace(want["prefix"], "")
    if not want["negative"]:
        assert r.negative == ""
    else:
        assert r.negative.startswith(want["neg_base"]) and r.negative != get_target(target).negative_base


# -- prompts per target -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", FIRST_TARGETS + ["custom"])
def test_each_target_returns_exactly_its_prompts_within_their_limits(target, make_interrogator, images,
                                                                     registry_to_tiny):
    ci = make_interrogator(target=target)
    r = ci.interrogate(images[:1], mode="fast", max_flavors=12, min_flavors=2, captions=[LONG_CAPTION])[0]
    assert set(r.prompts) == EXPECTED_KEYS[target]
    assert bpe_tokens(LONG_CAPTION) > 77, "the caption must be too long for CLIP to prove the cut"
    for key, prompt in r.prompts.items():
        if key == "t5":
            assert prompt == LONG_CAPTION, "t5 is the whole caption, never cut"
        else:
            assert prompt and engine_fits(ci, key, prompt) and bpe_tokens(prompt) <= 77, key
            assert LONG_CAPTION.startswith(prompt.split(", ")[0]), "every clip prompt starts with the caption"
    if target in MAIN_KEY:
        assert r.prompts[MAIN_KEY[target]] == r.positive
    assert bpe_tokens(r.positive) <= 77 and r.caption == LONG_CAPTION
    if target == "flux":
        assert r.negative == "" and r.notes == [NO_NEGATIVE_NOTE] and r.negative_similarity is None
    else:
        assert r.negative and bpe_tokens(r.negative) <= 77 and r.notes == []
    expected_clips = {"sd35": [CLIP_G, CLIP_L], "flux": [CLIP_L], "sd15": [CLIP_L], "sd2": [CLIP_H]}
    if target in expected_clips:
        assert registry_to_tiny == expected_clips[target]


def test_sd35_clip_l_is_ranked_by_its_own_encoder(make_interrogator, images, registry_to_tiny, tiny_clip_l):
    caps = ["a red house"]
    r = make_interrogator(target="sd35").interrogate(images[:1], mode="fast", captions=caps)[0]
    alone = make_interrogator(clip_model=str(tiny_clip_l)).interrogate(images[:1], mode="fast", captions=caps)[0]
    assert r.prompts["clip_l"] == alone.positive, "the clip_l prompt is ViT-L's own ranking"
    assert r.prompts["clip_g"] == r.positive != r.prompts["clip_l"]
    assert r.prompts["t5"] == "a red house" and r.negative and r.positive_l is None


def test_sdxl_tags_joins_the_caption_and_terms_as_tags(make_interrogator, images, registry_to_tiny):
    ci = make_interrogator(target="sdxl-tags")
    caption = "1girl, solo, long_hair,  Solo , smile.\nouter space"
    fast = ci.interrogate(images[:1], mode="fast", captions=[caption], negative_count=0)[0]
    assert fast.caption == "1girl, solo, long hair, smile, outer space"
    assert fast.positive.startswith(fast.caption + ", ") and fast.prompts == {"clip_g": fast.positive}
    classic = ci.interrogate(images[:1], mode="classic", captions=[caption], negative_count=0)[0]
    tags = classic.positive.split(", ")
    feats = ci.main.image_features(load_images(images[:1]))
    medium = ci.main.tables().tables["mediums"].top(feats, 1)[0][0][0]
    artist = ci.main.tables().tables["artists"].top(feats, 1)[0][0][0]
    assert medium in tags and artist in tags, "classic layout: medium and artist are tags of their own"
    assert all(t == t.strip() and t for t in tags)


def test_sdxl_tags_on_another_target_with_the_tags_style(make_interrogator, images):
    ci = make_interrogator(caption_style="tags")
    r = ci.interrogate(images[:1], mode="fast", captions=["a_b, a_b, c."], negative_count=0)[0]
    assert r.caption == "a b, c" and r.prompts == {}


def test_caption_mode_gives_every_prompt_the_caption(make_interrogator, images, registry_to_tiny):
    r = make_interrogator(target="sd35").interrogate(images[:1], mode="caption", captions=["a cat"])[0]
    assert r.prompts == {"clip_l": "a cat", "clip_g": "a cat", "t5": "a cat"} and registry_to_tiny == []
    neg = make_interrogator(target="sd35").interrogate(images[:1], mode="negative", min_flavors=2, max_flavors=4)[0]
    assert neg.prompts == {"clip_l": "", "clip_g": "", "t5": ""} and neg.negative
    assert registry_to_tiny == [CLIP_G], "negative mode: the extra encoders have nothing to build"
    flux = make_interrogator(target="flux").interrogate(images[:1], mode="negative", min_flavors=2, max_flavors=4)[0]
    assert flux.negative == "" and flux.notes == [NO_NEGATIVE_NOTE]


def test_target_caption_style_falls_back_to_short_with_a_note(make_interrogator, images, registry_to_tiny):
    """BLIP writes short captions only: the flux target's detailed style falls back with a note; a style the
    user set is refused with the styles the model has."""
    r = make_interrogator(target="flux").interrogate(images[:1], mode="fast", negative_count=0)[0]
    assert r.caption and r.prompts["t5"] == r.caption
    assert r.notes[0] == NO_NEGATIVE_NOTE and "cannot write detailed captions" in r.notes[1]
    with pytest.raises(UnknownNameError, match="short"):
        make_interrogator(target="flux", caption_style="detailed").interrogate(images[:1], mode="fast")


def test_caption_settings_reach_the_caption_model(make_interrogator, images, monkeypatch):
    seen: Dict[str, object] = {}
    real = loaders.load_captioner

    def load_captioner(*args, **kwargs):
        seen["trust_remote_code"] = kwargs.get("trust_remote_code")
        cap = real(*args, **kwargs)
        generate = cap.generate

        def spy(images, max_new_tokens=32, style="short", instruction=None):
            seen.update(style=style, instruction=instruction, max_new_tokens=max_new_tokens)
            return generate(images, 8)  # the real model (tiny BLIP: 64 positions); BLIP takes no instruction

        cap.generate = spy
        return cap

    monkeypatch.setattr(loaders, "load_captioner", load_captioner)
    ci = make_interrogator(caption_style="short", caption_prompt=" Describe the lighting. ", caption_max_length=None)
    ci.interrogate(images[:1], mode="caption")
    assert seen == {"trust_remote_code": False, "style": "short", "instruction": "Describe the lighting.",
                    "max_new_tokens": engine.INSTRUCTION_TOKENS}
    make_interrogator(trust_remote_code=True, caption_max_length=None).interrogate(images[:1], mode="caption")
    assert seen["trust_remote_code"] is True and seen["instruction"] is None
    assert seen["max_new_tokens"] == engine.CAPTION_TOKENS["short"]
    with pytest.raises(UnknownNameError, match="detailed"):
        InterrogatorConfig(caption_style="detailled")


# -- one low-VRAM rule over the whole tree ----------------------------------------------------------------------
class OneAtATimeHost(StandaloneHost):
    """Tracks which handles are on the (pretend) load device and fails a load that would make two."""

    def __init__(self) -> None:
        super().__init__(device="cpu")
        self.on_device: list = []
        self.loads: list = []

    def load(self, models) -> None:
        for m in models:
            others = [h.name for h in self.on_device if h is not m]
            assert not others, f"loading {m.name} while {others} are on the device"
            if m not in self.on_device:
                self.on_device.append(m)
            self.loads.append(m.name)
        super().load(models)

    def offload(self, models) -> None:
        self.on_device = [h for h in self.on_device if h not in list(models)]
        super().offload(models)


@pytest.mark.parametrize("target,dual", [("sdxl", True), ("sd35", False)])
def test_lowvram_keeps_one_model_of_the_whole_tree_on_the_device(target, dual, make_interrogator, images,
                                                                 registry_to_tiny):
    host = OneAtATimeHost()
    ci = make_interrogator(target=target, sdxl_dual=dual, offload="lowvram", host=host)
    r = ci.interrogate(images[:2], mode="fast", max_flavors=4, min_flavors=2)
    assert all(x.prompts["clip_l"] and x.prompts["clip_g"] for x in r)
    names = {n.split(":")[0] for n in host.loads}
    assert names == {"caption", "clip"} and len({n for n in host.loads if n.startswith("clip")}) == 2
    assert host.on_device == [], "everything is offloaded after the call"
    assert len(ci.models) == 3 and {m.name for m in ci.models} >= set(host.loads)
    ci.unload()
    assert ci.models == [] and ci.pool.loaded() == set()


def test_offload_and_release_cover_every_encoder(make_interrogator, images, registry_to_tiny):
    ci = make_interrogator(target="sdxl", sdxl_dual=True)  # keep: models stay after the call
    ci.interrogate(images[:1], mode="fast", max_flavors=4, min_flavors=2)
    extra = ci.encoders["clip_l"]
    assert extra.clip.handle in ci.models
    extra.clip.text._kv_cache.append(("x", None, None))  # an inside: the cached prefix the release must drop
    ci.release_device_caches()
    assert extra.clip.text._kv_cache == []
    ci.set_offload("offload")
    assert ci.pool.policy is engine.OffloadPolicy.OFFLOAD


# -- validation in the core, once -------------------------------------------------------------------------------
def test_interrogate_validates_its_arguments(make_interrogator, images):
    ci = make_interrogator()
    with pytest.raises(ValueError, match=r"min_flavors \(9\) is larger than max_flavors \(4\)"):
        ci.interrogate(images[:1], mode="fast", min_flavors=9, max_flavors=4)
    for bad in (0, MAX_BEAM_WIDTH + 1, 2.5, "wide", True):
        with pytest.raises(ValueError, match="beam_width"):
            ci.interrogate(images[:1], beam_width=bad)
    for bad in (None, "bestt", 3):
        with pytest.raises(UnknownNameError, match="mode"):
            ci.interrogate(images[:1], mode=bad)
    with pytest.raises(ValueError, match="negative_count must be a whole number"):
        ci.interrogate(images[:1], negative_count="many")
    assert ci.pool.loaded() == set(), "bad arguments fail before any model loads"


def test_an_unset_min_flavors_is_its_default_capped_at_max():
    assert check_request("best", None, 4, 0, 1)[1] == 4  # 8 by default, but never above max_flavors
    assert check_request("best", None, 32, 0, 1)[1] == 8
    assert check_request("best", None, 3, 0, 1, min_default=2)[1] == 2  # a host's setting as the default
    assert check_request("best", None, 3, 0, 1, min_default="12")[1] == 3
    with pytest.raises(ValueError, match="larger than max_flavors"):
        check_request("best", 5, 3, 0, 1, min_default=2)  # an explicit min is checked, not capped


def test_whole_numbers_from_widgets_are_converted():
    assert check_request("best", "2", 4.0, " 3 ", MAX_BEAM_WIDTH) == ("best", 2, 4, 3, MAX_BEAM_WIDTH)
    cfg = InterrogatorConfig(caption_batch_size="4", image_batch_size=2.0, sdxl_dual="false", target="sdxl",
                             trust_remote_code="yes", caption_max_length="12")
    assert (cfg.caption_batch_size, cfg.image_batch_size, cfg.sdxl_dual, cfg.trust_remote_code,
            cfg.caption_max_length) == (4, 2, False, True, 12)
    for field, bad in (("text_batch_size", "x"), ("caption_batch_size", 0), ("flavor_intermediate_count", 1.5),
                       ("sdxl_dual", "maybe"), ("caption_max_length", -1)):
        with pytest.raises(ValueError, match=field):
            InterrogatorConfig(**{field: bad})


def test_prefix_cache_holds_the_widest_beam_and_its_parents(make_interrogator):
    """A chain step of MAX_BEAM_WIDTH beams computes their prefixes one by one; each must find its parent
    prefix of the previous step still cached, in any order of parents. (An inside of the text encoder: its prefix
    cache, which no public call shows but whose misses would make every beam step slow.)"""
    text = make_interrogator().main.clip.text
    parents = [torch.tensor([49406, 1000 + i, 267]) for i in range(MAX_BEAM_WIDTH)]
    for p in parents:
        text._prefix_kv(p)
    offsets = []
    real = text._embed
    text._embed = lambda ids, offset: offsets.append(offset) or real(ids, offset)
    for p in reversed(parents):  # a step's best beams can come from any parent, the last one first
        text._prefix_kv(torch.cat([p, torch.tensor([2000, 267])]))
    assert offsets == [3] * MAX_BEAM_WIDTH, "every child reused its parent's keys/values"


# -- CLI -------------------------------------------------------------------------------------------------------
def test_cli_target_flags_print_and_write_every_prompt(tiny_models, small_data_dir, tmp_path, images, capsys,
                                                      registry_to_tiny):
    import json

    from interrogator_core.cli import _config, build_parser, main

    images[0].save(tmp_path / "a.png")
    common = ["--caption-model", str(tiny_models["blip"]), "--cache-dir", str(tmp_path / "cache"),
              "--data-dir", str(small_data_dir), "--mode", "fast", "--max-flavors", "8"]
    assert main([str(tmp_path / "a.png"), "--target", "flux", "--caption-style", "short", *common]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.splitlines()[1:])
    assert set(lines) == {"positive", "negative", "clip_l", "t5", "note"}
    assert lines["clip_l"] == lines["positive"] and lines["t5"] and lines["negative"] == ""
    assert lines["note"] == NO_NEGATIVE_NOTE
    jsonl = tmp_path / "out.jsonl"
    assert main([str(tmp_path / "a.png"), "--target", "sd35", "--jsonl", str(jsonl), "--quiet", *common]) == 0
    row = json.loads(jsonl.read_text())
    assert set(row["prompts"]) == {"clip_l", "clip_g", "t5"} and row["prompts"]["clip_g"] == row["prompt"]
    assert row["negative_prompt"]
    cfg = _config(build_parser().parse_args(["x.png", "--target", "sdxl-tags", "--caption-style", "tags",
                                             "--caption-prompt", "List the tags.", "--trust-remote-code"]))
    assert (cfg.target, cfg.clip_model, cfg.caption_style, cfg.caption_prompt, cfg.trust_remote_code) == (
        "sdxl-tags", CLIP_G, "tags", "List the tags.", True)
    assert _config(build_parser().parse_args(["x.png"])).trust_remote_code is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["x.png", "--caption-style", "poem"])


def test_auto_caption_style_means_the_targets_default():
    from interrogator_core import AUTO_STYLE

    assert InterrogatorConfig(caption_style=AUTO_STYLE).caption_style is None
    assert InterrogatorConfig(caption_style=" Auto ", target="flux").effective_caption_style == "detailed"
