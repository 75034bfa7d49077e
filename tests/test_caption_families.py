"""Caption families (issue 12): Florence-2, Qwen2.5-VL, Qwen3-VL and LLaVA/JoyCaption beside BLIP/GIT.

Tiny random-weight models of each family are built in fixtures (``interrogator_core.testing``), saved with
``save_pretrained`` (safetensors) and loaded back through ``load_captioner``. Their captions are gibberish, so the
tests assert structure, determinism, equality between paths (batched vs one image at a time, new vs old BLIP
code) and what reaches the model (the task token / instruction in the input ids).
"""
import json
import shutil

import pytest
import torch

from interrogator_core import InterrogatorError, ModelLoadError, ModelNotFoundError, UnknownNameError
from interrogator_core.caption import (CAPTION_MODELS, CAPTION_STYLES, FAMILIES, MODEL_TYPES, caption_dtype,
                                       list_caption_styles, load_captioner, transformers_version)
from interrogator_core import testing

NEW_FAMILIES = ["florence2", "qwen2_5_vl", "qwen3_vl", "llava"]
#: a known model of each family (by name) and the config.json model_type of each family
KNOWN = {"florence2": "florence2-base", "qwen2_5_vl": "qwen2.5-vl-3b", "qwen3_vl": "qwen3-vl-2b",
         "llava": "joycaption-beta-one"}
MODEL_TYPE = {family: mt for mt, family in MODEL_TYPES.items()}


def _supported(family: str) -> bool:
    from packaging.version import Version

    return Version(transformers_version()) >= Version(FAMILIES[family].min_transformers)


def _need(family: str) -> None:
    if not _supported(family):
        pytest.skip(f"{family} needs transformers >= {FAMILIES[family].min_transformers}; this environment has "
                    f"{transformers_version()} (its version error is tested by test_too_old_transformers_*)")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """family -> folder of its tiny model, built on first use (once per module)."""
    root = tmp_path_factory.mktemp("vlm")
    built = {}

    def get(family: str):
        _need(family)
        if family not in built:
            built[family] = getattr(testing, f"make_tiny_{family}")(root / f"tiny-{family}")
        return built[family]

    return get


def _ids_text(cap, inputs, row=0) -> str:
    return cap.processor.tokenizer.decode(inputs["input_ids"][row])


def _tokens(cap, text: str) -> str:
    """``text`` as the model sees it: tokenized and decoded again (the tiny tokenizer lower-cases, splits
    punctuation off and maps unknown words to <unk>)."""
    tok = cap.processor.tokenizer
    return tok.decode(tok(text, add_special_tokens=False)["input_ids"])


# --- registry -------------------------------------------------------------------------------------------------
def test_registry_is_consistent():
    assert list_caption_styles() == ["short", "detailed", "tags"]
    for name, spec in CAPTION_MODELS.items():
        assert spec.family in FAMILIES, name
        assert set(spec.styles or ()) <= set(CAPTION_STYLES), name
    for family, fam in FAMILIES.items():
        assert set(fam.default_styles) <= set(fam.prompts) <= set(CAPTION_STYLES), family
        assert family in MODEL_TYPES.values() or family == "tagger"  # taggers: a timm config, no model_type
    for family in ["blip", "blip2", "git"]:
        assert FAMILIES[family].default_styles == ("short",) and FAMILIES[family].prompting == "none"
    for family in NEW_FAMILIES:
        assert CAPTION_MODELS[KNOWN[family]].family == family
    promptgen = [s for s in CAPTION_MODELS.values() if "PromptGen" in s.repo_id]
    assert len(promptgen) == 2 and all("tags" in s.styles and s.remote_code for s in promptgen)
    assert "tags" not in FAMILIES["florence2"].default_styles  # base Florence-2 was never trained for tags


def test_caption_dtype_per_family():
    assert caption_dtype("blip", torch.float16) == torch.float16
    assert caption_dtype("git", torch.float16) == torch.float32
    assert caption_dtype("florence2", torch.float16) == torch.float16
    for family in ["qwen2_5_vl", "qwen3_vl", "llava"]:
        assert caption_dtype(family, torch.float16) == torch.bfloat16
        assert caption_dtype(family, torch.float32) == torch.float32


# --- each new family, end to end on a tiny model -------------------------------------------------------------
@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_batched_generation_is_deterministic_and_matches_one_by_one(family, tiny_vlm, images):
    folder = tiny_vlm(family)
    cap = load_captioner(str(folder))
    assert cap.family == family
    two = images[:2]  # 64x64 and 48x96: different sizes (Qwen: different numbers of image tokens -> padding)
    first = cap.generate(two, max_new_tokens=5)
    assert len(first) == 2 and all(isinstance(t, str) and t and t == " ".join(t.split()) for t in first)
    # only the new tokens are decoded: no echo of the prompt, no special tokens
    prompt = _tokens(cap, FAMILIES[family].prompts["short"])
    assert not any(prompt in t or "<" in t for t in first), first
    assert cap.generate(two, max_new_tokens=5) == first
    assert load_captioner(str(folder)).generate(two, max_new_tokens=5) == first
    # left padding (decoder-only families) and decoding only the new tokens: a batch equals one image at a time
    assert [cap.generate([im], max_new_tokens=5)[0] for im in two] == first
    assert cap.generate([], max_new_tokens=5) == []


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_each_style_reaches_the_model(family, tiny_vlm, images):
    cap = load_captioner(str(tiny_vlm(family)))
    fam = FAMILIES[family]
    seen = set()
    for style in cap.styles:
        inputs, texts = cap.build_inputs(images[:2], style)
        assert len(texts) == 2 and texts[0] == texts[1]
        ids = _ids_text(cap, inputs)
        if fam.prompting == "task":  # Florence-2: the task token, expanded by the processor into its prompt
            assert texts[0] == fam.prompts[style]
            expected = cap.processor._construct_prompts([fam.prompts[style]])[0]
            assert _tokens(cap, expected) in ids
        else:  # chat families: the style's instruction inside the chat template, after the image
            assert fam.prompts[style] in texts[0]
            assert _tokens(cap, fam.prompts[style]) in ids and "<unk>" not in _tokens(cap, fam.prompts[style])
            assert ids.index(_tokens(cap, fam.prompts[style])) > ids.index(cap.processor.image_token)
            if fam.decoder_only:
                assert cap.processor.tokenizer.padding_side == "left"
        seen.add(tuple(inputs["input_ids"][0].tolist()))
    assert len(seen) == len(cap.styles)  # every style gives the model different input ids


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_free_instruction_replaces_the_style_prompt(family, tiny_vlm, images):
    cap = load_captioner(str(tiny_vlm(family)))
    instruction = "<OCR>" if family == "florence2" else "Describe  the red tree in one paragraph."
    inputs, texts = cap.build_inputs(images[:1], "short", instruction=instruction)
    assert FAMILIES[family].prompts["short"] not in texts[0]
    assert " ".join(instruction.split()) in texts[0]
    if family == "florence2":  # the task token, expanded by the processor
        assert _tokens(cap, cap.processor._construct_prompts([instruction])[0]) in _ids_text(cap, inputs)
    else:
        assert _tokens(cap, " ".join(instruction.split())) in _ids_text(cap, inputs)
    assert len(cap.generate(images[:2], max_new_tokens=3, instruction=instruction)) == 2


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_unknown_style_is_refused_with_the_family_styles(family, tiny_vlm, images):
    cap = load_captioner(str(tiny_vlm(family)))
    with pytest.raises(UnknownNameError) as e:
        cap.generate(images[:1], style="poem")
    assert all(s in str(e.value) for s in cap.styles) and "poem" in str(e.value)


def test_base_florence2_refuses_tags_promptgen_does_them(tiny_vlm, images, tmp_path):
    base = tiny_vlm("florence2")
    cap = load_captioner(str(base))
    assert cap.styles == ("short", "detailed")
    with pytest.raises(UnknownNameError) as e:
        cap.generate(images[:1], style="tags")
    assert "detailed, short" in str(e.value) and "PromptGen" in str(e.value)
    promptgen = shutil.copytree(base, tmp_path / "Florence-2-base-PromptGen-v2.0")
    cap = load_captioner(str(promptgen))
    assert cap.styles == ("short", "detailed", "tags")
    _, texts = cap.build_inputs(images[:1], "tags")
    assert texts == ["<GENERATE_TAGS>"]
    assert len(cap.generate(images[:2], max_new_tokens=3, style="tags")) == 2


def test_half_precision_load_generates(tiny_vlm, images):
    cap = load_captioner(str(tiny_vlm("qwen2_5_vl")), dtype=torch.float16)
    assert cap.handle.dtype == torch.bfloat16 and next(cap.handle.module.parameters()).dtype == torch.bfloat16
    assert len(cap.generate(images[:2], max_new_tokens=3)) == 2


# --- BLIP stays as it was ------------------------------------------------------------------------------------
def test_blip_is_unchanged_and_takes_only_the_short_style(tiny_models, images):
    cap = load_captioner(str(tiny_models["blip"]))
    assert cap.styles == ("short",) and not cap.takes_instruction
    got = cap.generate(images, max_new_tokens=8)
    # the pre-issue-12 code path, verbatim
    with torch.inference_mode():
        inputs = cap.processor(images=list(images), return_tensors="pt")
        tokens = cap.handle.module.generate(pixel_values=inputs["pixel_values"], max_new_tokens=8)
        old = [" ".join(t.split()) for t in cap.processor.batch_decode(tokens, skip_special_tokens=True)]
    assert got == old and len(got) == 3
    assert cap.generate(images, max_new_tokens=8, style="short") == old
    assert cap.generate(images, max_new_tokens=8, style=None, instruction="  ") == old
    inputs, texts = cap.build_inputs(images, "short")
    assert set(inputs) == {"pixel_values"} and texts == ["", "", ""]
    with pytest.raises(UnknownNameError, match="Valid: short"):
        cap.generate(images, style="detailed")
    with pytest.raises(InterrogatorError, match="takes no instruction"):
        cap.generate(images, instruction="Describe the image.")


# --- remote code ----------------------------------------------------------------------------------------------
ORIGINAL_FLORENCE2 = {
    "model_type": "florence2", "architectures": ["Florence2ForConditionalGeneration"],
    "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config",
                 "AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"},
    "vision_config": {"model_type": "davit", "dim_embed": [128, 256, 512, 1024]},
    "text_config": {"model_type": "florence2_language", "vocab_size": 51289},
}


def test_remote_code_is_refused_by_default(tmp_path):
    folder = tmp_path / "Florence-2-base-PromptGen-v2.0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(ORIGINAL_FLORENCE2))
    (folder / "modeling_florence2.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelLoadError) as e:
        load_captioner(str(folder))
    assert "trust_remote_code" in str(e.value) and "original Florence-2 format" in str(e.value)
    # a known remote-code model is refused before any download
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        load_captioner("florence2-base-promptgen-v2")
    # turned on, it gets past the gate (offline here: then it is simply not found)
    with pytest.raises(ModelNotFoundError):
        load_captioner("florence2-base-promptgen-v2", trust_remote_code=True)


# --- too-old transformers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_too_old_transformers_gives_the_named_version_error(family, tmp_path):
    need = FAMILIES[family].min_transformers
    if _supported(family):
        pytest.skip(f"transformers {transformers_version()} has {family} (>= {need}); the version error is "
                    "tested in the a1111 (4.30.2) and forge (4.46.1) environments")
    folder = tmp_path / f"some-{family}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": MODEL_TYPE[family]}))
    for name in (str(folder), KNOWN[family]):  # a local folder, and a known name (no download attempted)
        with pytest.raises(ModelLoadError) as e:
            load_captioner(name)
        msg = str(e.value)
        assert family in msg and f">= {need}" in msg and transformers_version() in msg, msg
