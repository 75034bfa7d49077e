"""Image taggers (WD v3 layout) as a caption family: a tiny timm ViT + selected_tags.csv built here, loaded through
load_captioner like a user's folder. Scores are known exactly where a test needs them: the classifier's weights
are zero and its biases chosen, so the real model scores every image sigmoid(bias)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from interrogator_core.caption import (CAPTION_MODELS, caption_dtype, check_family_supported,
                                       load_captioner, resolve_caption_model)
from interrogator_core.errors import InterrogatorError, ModelLoadError, ModelNotFoundError, UnknownNameError
from interrogator_core.tagger import (KAOMOJIS, MIN_TIMM, TAGGER_FAMILY, Tagger, TaggerOptions, TaggerPreprocess,
                                      tag_key)
from interrogator_core.testing import TINY_TAGS, make_tiny_tagger

NAMES = [n for n, _ in TINY_TAGS]

#: the known scores, by tag (ratings: sensitive is the most likely)
KNOWN = {"general": 0.1, "sensitive": 0.7, "questionable": 0.2, "explicit": 0.05,
         "1girl": 0.95, "solo": 0.9, "long_hair": 0.6, "smile": 0.3, "^_^": 0.5, "hat_(object)": 0.4,
         "blue_sky": 0.2, "hatsune_miku": 0.92, "kirisame_marisa": 0.8}

#: what the defaults give for KNOWN: characters first, then general by score; underscores to spaces (not in the
#: kaomoji), parentheses escaped; smile (0.3), blue_sky (0.2) and kirisame_marisa (0.8 < 0.85) below threshold
DEFAULT = "hatsune miku, 1girl, solo, long hair, ^_^, hat \\(object\\)"


@pytest.fixture(scope="module")
def known_tagger(tmp_path_factory) -> Tagger:
    folder = make_tiny_tagger(tmp_path_factory.mktemp("tagger") / "known",
                              head_bias=[math.log(KNOWN[n] / (1 - KNOWN[n])) for n in NAMES])
    tagger = load_captioner(str(folder))
    assert isinstance(tagger, Tagger)
    return tagger


@pytest.fixture(scope="module")
def random_tagger_dir(tmp_path_factory):
    return make_tiny_tagger(tmp_path_factory.mktemp("tagger") / "random", seed=3)


@pytest.fixture(scope="module")
def image():
    return Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8))


def score_of(tagger: Tagger, image, name: str) -> float:
    return float(tagger.scores([image])[0, NAMES.index(name)])


# --- loading and registration -----------------------------------------------------------------------------------
def test_folder_is_a_tagger_caption_model(random_tagger_dir, tmp_path):
    source, family, _ = resolve_caption_model(str(random_tagger_dir))
    assert family == TAGGER_FAMILY
    tagger = load_captioner(str(random_tagger_dir))
    assert isinstance(tagger, Tagger)
    assert tagger.family == TAGGER_FAMILY and tagger.styles == ("tags",) and not tagger.takes_instruction
    assert isinstance(tagger.handle.module, torch.nn.Module) and tagger.handle.dtype == torch.float32
    assert tagger.handle.device.type == "cpu" and tagger.handle.name.startswith("caption:")
    assert len(tagger.labels) == len(TINY_TAGS) and tagger.preprocess.size == (32, 32)
    assert caption_dtype(TAGGER_FAMILY, torch.float16) == torch.float16
    check_family_supported(TAGGER_FAMILY)


def test_known_repositories_are_in_the_table_and_found_in_a_models_folder(tmp_path, image):
    for name in ("wd-eva02-large-tagger-v3", "wd-vit-large-tagger-v3", "wd-swinv2-tagger-v3", "wd-vit-tagger-v3",
                 "wd-convnext-tagger-v3"):
        spec = CAPTION_MODELS[name]
        assert spec.repo_id == f"SmilingWolf/{name}" and spec.family == TAGGER_FAMILY and spec.size
    # a user who copied the repository folder into a models folder names it by its table name
    make_tiny_tagger(tmp_path / "wd-vit-tagger-v3")
    tagger = load_captioner("wd-vit-tagger-v3", search_dirs=[tmp_path])
    assert isinstance(tagger, Tagger) and tagger.generate([image])[0]


def test_a_known_tagger_not_on_this_machine_is_a_clear_error(tmp_path):
    # the test session is offline (conftest): the download fails fast, with the files a tagger folder needs
    with pytest.raises(ModelNotFoundError, match="selected_tags.csv"):
        load_captioner("wd-swinv2-tagger-v3", search_dirs=[tmp_path], download_dir=tmp_path / "dl")


def test_reduced_precision_runs_and_scores_stay_float32(random_tagger_dir, image):
    tagger = load_captioner(str(random_tagger_dir), dtype=torch.bfloat16)
    assert tagger.handle.dtype == torch.bfloat16
    assert next(tagger.handle.module.parameters()).dtype == torch.bfloat16
    scores = tagger.scores([image])
    assert scores.dtype == torch.float32 and scores.shape == (1, len(TINY_TAGS))


def test_batched_scores_equal_per_image(random_tagger_dir, images):
    tagger = load_captioner(str(random_tagger_dir))
    batch = tagger.scores(images)
    single = torch.cat([tagger.scores([im]) for im in images])
    # equal up to float32 rounding: batched kernels may sum in another order (exactly equal on timm 1.x here,
    # 1e-7 apart on timm 0.9)
    assert (batch - single).abs().max() <= 1e-6
    assert tagger.generate(images) == [tagger.generate([im])[0] for im in images]
    calls = []
    tagger.handle.module.register_forward_hook(lambda *a: calls.append(a[1][0].shape[0]))
    tagger.generate(images)
    assert calls == [len(images)]  # the whole batch in one forward


def test_the_engine_captions_with_a_tagger(make_interrogator, tmp_path, images):
    # tags without underscores: the engine's tag grammar (prompts.as_tags) rewrites "_" in every tag caption
    folder = make_tiny_tagger(tmp_path / "plain", tags=[("general", 9), ("sensitive", 9), ("questionable", 9),
                                                       ("explicit", 9), ("1girl", 0), ("solo", 0), ("smile", 0),
                                                       ("miku", 4)])
    ci = make_interrogator(caption_model=str(folder), caption_style="tags")
    expected = load_captioner(str(folder)).generate(images)
    assert ci.caption(images) == expected and all(expected)
    assert any(h.name == f"caption:{folder}" for h in ci.models)


def test_incomplete_or_mismatched_folders_are_clear_errors(tmp_path):
    folder = make_tiny_tagger(tmp_path / "t")
    (folder / "selected_tags.csv").rename(folder / "tags.bak")
    with pytest.raises(ModelLoadError, match="selected_tags.csv"):
        load_captioner(str(folder))
    (folder / "tags.bak").write_text("tag_id,name,category,count\n1,solo,0,5\n", encoding="utf-8")
    (folder / "tags.bak").rename(folder / "selected_tags.csv")
    with pytest.raises(ModelLoadError, match="13 outputs but selected_tags.csv lists 1 tags"):
        load_captioner(str(folder))
    other = make_tiny_tagger(tmp_path / "deeper")
    config = json.loads((other / "config.json").read_text())
    config["model_args"]["depth"] = 3
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not fit .*missing: blocks.2"):
        load_captioner(str(other))


def test_a_too_old_timm_is_named(monkeypatch):
    from interrogator_core import tagger as tagger_module

    monkeypatch.setattr(tagger_module, "timm_version", lambda: "0.6.13")
    with pytest.raises(ModelLoadError, match=f"timm >= {MIN_TIMM}.*timm 0.6.13"):
        check_family_supported(TAGGER_FAMILY, "wd-vit-tagger-v3")


# --- preprocessing ----------------------------------------------------------------------------------------------
def test_preprocess_pads_with_white_and_feeds_bgr():
    pre = TaggerPreprocess(size=(4, 4))
    x = pre(Image.new("RGB", (4, 2), (255, 0, 0)))  # red, 2 rows: padded with one white row above and below
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.ones(3, 4)) and torch.equal(x[:, 3], torch.ones(3, 4))  # white = +1
    assert torch.equal(x[2, 1:3], torch.ones(2, 4))  # channel 2 is red (BGR order), normalized to +1
    assert torch.equal(x[0, 1:3], -torch.ones(2, 4)) and torch.equal(x[1, 1:3], -torch.ones(2, 4))


def test_preprocess_is_timms_eval_transform_then_bgr(images):
    """The reference timm code (neggles/wdv3-timm, linked from the WD v3 model cards): pad square with white,
    timm's transform from the config's pretrained_cfg, then RGB -> BGR."""
    from timm.data import create_transform, resolve_data_config

    pcfg = {"input_size": [3, 32, 32], "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    reference = create_transform(**resolve_data_config(pcfg))
    pre = TaggerPreprocess.from_config({"architecture": "x", "pretrained_cfg": pcfg})
    for im in images:
        assert torch.allclose(pre(im), reference(pre.pad_square(im))[[2, 1, 0]], atol=1e-6)


def test_preprocess_reads_the_config():
    config = {"architecture": "vit_base_patch16_224", "model_args": {"img_size": 448},
              "pretrained_cfg": {"input_size": [3, 448, 448], "interpolation": "bicubic", "crop_pct": 1.0,
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    pre = TaggerPreprocess.from_config(config)
    assert pre.size == (448, 448) and pre.interpolation == "bicubic" and pre.mean == (0.5, 0.5, 0.5)
    assert pre(Image.new("RGB", (100, 30))).shape == (3, 448, 448)
    assert TaggerPreprocess.from_config({"architecture": "x", "model_args": {"img_size": 64}}).size == (64, 64)


# --- options: what the scores become ----------------------------------------------------------------------------
def test_defaults(known_tagger, image):
    assert known_tagger.generate([image]) == [DEFAULT]
    assert known_tagger.generate([image], 32, style="tags", instruction=None) == [DEFAULT]
    assert TaggerOptions() == TaggerOptions(0.35, 0.85, False, True, True, True, (), (), 0)


@pytest.mark.parametrize("name, field", [("long_hair", "general_threshold"),
                                         ("kirisame_marisa", "character_threshold")])
def test_thresholds_are_inclusive_exactly_at_the_boundary(known_tagger, image, name, field):
    score = score_of(known_tagger, image, name)
    tag = TaggerOptions().format(name)
    at = TaggerOptions(**{field: score})
    above = TaggerOptions(**{field: float(np.nextafter(np.float32(score), np.float32(1)))})
    assert tag in known_tagger.generate([image], options=at)[0].split(", ")
    assert tag not in known_tagger.generate([image], options=above)[0].split(", ")


def test_categories_by_their_own_threshold(known_tagger, image):
    only_chars = TaggerOptions(general_threshold=1.0, character_threshold=0.5)
    assert known_tagger.generate([image], options=only_chars) == ["hatsune miku, kirisame marisa"]
    only_general = TaggerOptions(general_threshold=0.85, character_threshold=1.0)
    assert known_tagger.generate([image], options=only_general) == ["1girl, solo"]


def test_character_first_or_all_by_score(known_tagger, image):
    assert known_tagger.generate([image], options=TaggerOptions(character_first=False)) == [
        "1girl, hatsune miku, solo, long hair, ^_^, hat \\(object\\)"]


def test_underscores_and_kaomoji(known_tagger, image):
    raw = TaggerOptions(replace_underscores=False)
    assert known_tagger.generate([image], options=raw) == [
        "hatsune_miku, 1girl, solo, long_hair, ^_^, hat_\\(object\\)"]
    opts = TaggerOptions()
    assert {">_<", "^_^", "o_o", "(o)_(o)"} <= KAOMOJIS
    assert opts.format(">_<") == ">_<" and opts.format("o_o") == "o_o"
    assert opts.format("(o)_(o)") == "\\(o\\)_\\(o\\)"  # a kaomoji keeps its underscore, still escaped
    assert opts.format("looking_at_viewer") == "looking at viewer"


def test_escaping(known_tagger, image):
    plain = TaggerOptions(escape_parentheses=False)
    assert known_tagger.generate([image], options=plain) == ["hatsune miku, 1girl, solo, long hair, ^_^, hat (object)"]
    assert TaggerOptions().format("hatsune_miku_(cosplay)") == "hatsune miku \\(cosplay\\)"


def test_exclude_list_in_any_spelling(known_tagger, image):
    expected = ["1girl, solo, ^_^, hat \\(object\\)"]
    assert known_tagger.generate([image], options=TaggerOptions(exclude="long hair, Hatsune_Miku")) == expected
    assert known_tagger.generate([image], options=TaggerOptions(exclude=["long_hair", "hatsune miku"])) == expected
    escaped = TaggerOptions(exclude=["hat \\(object\\)"])
    assert known_tagger.generate([image], options=escaped) == ["hatsune miku, 1girl, solo, long hair, ^_^"]
    assert tag_key("Hat_\\(Object\\)") == tag_key("hat (object)") == "hat (object)"


def test_always_first_in_its_order_when_found(known_tagger, image):
    opts = TaggerOptions(always_first=["solo", "blue sky", "hat (object)"])  # blue_sky is below threshold
    assert known_tagger.generate([image], options=opts) == [
        "solo, hat \\(object\\), hatsune miku, 1girl, long hair, ^_^"]


def test_max_tags(known_tagger, image):
    assert known_tagger.generate([image], options=TaggerOptions(max_tags=3)) == ["hatsune miku, 1girl, solo"]
    assert known_tagger.generate([image], options=TaggerOptions(max_tags=0)) == [DEFAULT]
    assert known_tagger.generate([image], options=TaggerOptions(max_tags=2, include_rating=True)) == [
        "sensitive, hatsune miku"]


def test_rating_on_and_off(known_tagger, image):
    assert known_tagger.generate([image], options=TaggerOptions(include_rating=True)) == ["sensitive, " + DEFAULT]
    assert "sensitive" not in known_tagger.generate([image])[0]
    excluded = TaggerOptions(include_rating=True, exclude="sensitive")
    assert known_tagger.generate([image], options=excluded) == [DEFAULT]


def test_options_of_the_tagger_are_the_default_for_its_calls(random_tagger_dir, image):
    tagger = load_captioner(str(random_tagger_dir), tagger_options=TaggerOptions(max_tags=2))
    assert tagger.options.max_tags == 2 and len(tagger.generate([image])[0].split(", ")) == 2
    tagger.options = TaggerOptions(max_tags=1)
    assert len(tagger.generate([image])[0].split(", ")) == 1


def test_tags_with_scores_by_category(known_tagger, image):
    (result,) = known_tagger.tag([image])
    assert list(result) == ["character", "general", "rating"]
    scores = known_tagger.scores([image])[0]
    assert result["character"] == {"hatsune miku": float(scores[NAMES.index("hatsune_miku")])}
    assert list(result["general"]) == ["1girl", "solo", "long hair", "^_^", "hat \\(object\\)"]
    assert result["general"]["long hair"] == float(scores[NAMES.index("long_hair")])
    assert list(result["rating"]) == ["sensitive", "questionable", "general", "explicit"]  # every rating, by score
    assert known_tagger.tag([]) == []


def test_style_and_instruction_are_checked(known_tagger, image):
    with pytest.raises(UnknownNameError, match="'short'.*tags"):
        known_tagger.generate([image], style="short")
    with pytest.raises(InterrogatorError, match="takes no instruction"):
        known_tagger.generate([image], instruction="Describe it")
    assert known_tagger.generate([]) == []


@pytest.mark.parametrize("bad", [{"general_threshold": 1.5}, {"character_threshold": -0.1},
                                 {"general_threshold": "high"}, {"max_tags": -1}, {"max_tags": 2.5},
                                 {"exclude": 3}])
def test_bad_options_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TaggerOptions(**bad)


def test_tag_lists_parse_from_strings():
    opts = TaggerOptions(exclude=" a, ,b_c ,", always_first=("x",))
    assert opts.exclude == ("a", "b_c") and opts.always_first == ("x",)
    hash(opts)  # frozen and hashable: a settings value


# -- the tagger in the engine: tags as the head of the anime targets' prompts -------------------------------------
@pytest.fixture(scope="module")
def known_tagger_dir(tmp_path_factory):
    return make_tiny_tagger(tmp_path_factory.mktemp("tagger") / "known-engine",
                            head_bias=[math.log(KNOWN[n] / (1 - KNOWN[n])) for n in NAMES])


@pytest.mark.parametrize("target", ["illustrious", "noobai", "pony"])
def test_tags_are_the_head_of_anime_prompts(target, known_tagger_dir, make_interrogator, images, registry_to_tiny):
    from interrogator_core import TaggerOptions, get_target

    ci = make_interrogator(target=target, caption_model=str(known_tagger_dir),
                           tagger_options=TaggerOptions(exclude="long_hair"))
    r = ci.interrogate(images[:1], mode="fast", max_flavors=8, min_flavors=2)[0]
    prefix = get_target(target).quality_prefix
    # count tags first (the anime tag order), then the character, then general tags by score; escaped; excluded gone
    head = "1girl, solo, hatsune miku, ^_^, hat \\(object\\)"
    assert r.caption == head
    assert r.positive.startswith(f"{prefix}, {head}, "), r.positive
    assert len(r.positive[len(prefix) + len(head) + 4:].split(", ")) >= 1, "CLIP-ranked terms follow the tags"
    assert "long hair" not in r.positive and r.positive == r.prompts["clip_g"]


def test_a_tagger_with_a_prose_target_is_a_clear_error(known_tagger_dir, make_interrogator, images,
                                                       registry_to_tiny):
    from interrogator_core import InterrogatorError

    ci = make_interrogator(target="flux", caption_model=str(known_tagger_dir))
    with pytest.raises(InterrogatorError, match=r"image tagger.*flux reads prose in t5"):
        ci.interrogate(images[:1], mode="fast")


# -- Analyze: the tags with their scores ---------------------------------------------------------------------------
def test_analyze_shows_the_tags_with_their_scores(known_tagger_dir, make_interrogator, images):
    from interrogator_core import TaggerOptions

    ci = make_interrogator(caption_model=str(known_tagger_dir), tagger_options=TaggerOptions(exclude="long_hair"))
    r = ci.analyze(images[:1], top_n=2, with_caption=True)[0]
    assert list(r.tags) == ["character", "general", "rating"]
    assert list(r.tags["character"]) == ["hatsune miku"]
    assert list(r.tags["general"]) == ["1girl", "solo", "^_^", "hat \\(object\\)"]  # long hair excluded
    assert r.tags["general"]["solo"] == pytest.approx(KNOWN["solo"], abs=1e-5)
    assert list(r.tags["rating"]) == ["sensitive", "questionable", "general", "explicit"]
    assert r.caption and r.tables  # the CLIP tables stay
    text = r.to_text()
    assert "tags (character):" in text and "0.9200  hatsune miku" in text and "0.9500  1girl" in text
    assert r.to_dict()["tags"] == r.tags
    # without a caption the tagger is not run; a sentence caption model has no tags
    assert ci.analyze(images[:1], top_n=2)[0].tags == {}
    assert make_interrogator().analyze(images[:1], top_n=2, with_caption=True)[0].tags == {}


# -- taggers through the folder batch: sidecars, jsonl/csv, resume ---------------------------------------------------
@pytest.mark.parametrize("output", ["txt", "jsonl", "csv"])
def test_folder_batch_with_a_tagger(output, known_tagger_dir, make_interrogator, images, tmp_path, registry_to_tiny):
    import csv as csv_module

    from interrogator_core import TaggerOptions, get_target
    from interrogator_core.batch import BatchWriter, collect_images, run_batch

    root = tmp_path / "imgs"
    root.mkdir()
    for i, im in enumerate(images):
        im.save(root / f"{i}.png")
    ci = make_interrogator(target="illustrious", caption_model=str(known_tagger_dir),
                           tagger_options=TaggerOptions(exclude="long_hair"))
    head = f"{get_target('illustrious').quality_prefix}, 1girl, solo, hatsune miku, ^_^, hat \\(object\\), "
    files = collect_images([root])
    # a first run stops after one image (as an interrupt would); the second resumes with the rest
    writer = BatchWriter(root, output=output)
    first = run_batch(ci, files[:1], writer, mode="fast", max_flavors=8, min_flavors=2)
    writer.close()  # not complete: the journal stays
    assert first.written == 1
    writer = BatchWriter(root, output=output, resume=True)
    second = run_batch(ci, files, writer, mode="fast", max_flavors=8, min_flavors=2)
    assert (second.written, second.skipped) == (2, 1)
    if output == "txt":
        prompts = [(root / f"{i}.txt").read_text().strip() for i in range(3)]
    elif output == "jsonl":
        rows = [json.loads(line) for line in (root / "prompts.jsonl").read_text().splitlines()]
        assert sorted(r["file"] for r in rows) == ["0.png", "1.png", "2.png"]
        assert all(r["caption"] == head[len(get_target("illustrious").quality_prefix) + 2:-2] for r in rows)
        prompts = [r["prompt"] for r in rows]
    else:
        with open(root / "prompts.csv", newline="", encoding="utf-8") as f:
            rows = list(csv_module.DictReader(f))
        assert sorted(r["file"] for r in rows) == ["0.png", "1.png", "2.png"]
        prompts = [r["prompt"] for r in rows]
    assert len(prompts) == 3 and all(p.startswith(head) for p in prompts), prompts
