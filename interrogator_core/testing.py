"""Tiny random-weight models for tests, benchmarks and offline try-outs (never imported by the engine).

They go through exactly the loading code users hit: a CLIP snapshot folder (``open_clip_config.json`` +
``open_clip_model.safetensors``, the hub layout) and a ``transformers`` BLIP folder from ``save_pretrained``.
Their outputs are gibberish, but deterministic per seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

TINY_BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "the", "cat",
                   "dog", "painting", "on", "red", "blue", "green", "tree", "house", "man", "woman", "with",
                   "in", "sky", "field", "sea"]

PathLike = Union[str, Path]


def make_tiny_clip(folder: PathLike, seed: int = 0, cfg: Optional[dict] = None, arch: Optional[str] = None) -> Path:
    """Write a random CLIP as an open_clip snapshot folder; returns the folder.

    With ``arch`` (a real open_clip architecture such as ``ViT-B-32``) the real architecture is built with
    random weights instead of the tiny config (benchmarks: same compute as the real model).
    """
    import open_clip
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if arch is not None:
        model_cfg = open_clip.get_model_config(arch)
        model = open_clip.create_model(arch, pretrained=None)
    else:
        model_cfg = cfg or TINY_CLIP_CFG
        name = f"pi-tiny-{seed}"
        cfg_dir = folder / ".arch"
        cfg_dir.mkdir(exist_ok=True)
        (cfg_dir / f"{name}.json").write_text(json.dumps(model_cfg))
        open_clip.add_model_config(cfg_dir)
        model = open_clip.create_model(name, pretrained=None)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(folder / "open_clip_model.safetensors"))
    return folder


def make_tiny_blip(folder: PathLike, seed: int = 0) -> Path:
    """Write a random tiny BLIP captioner (model + processor) with ``save_pretrained``; returns the folder."""
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(TINY_BERT_VOCAB) + "\n")
    tok = BertTokenizer(str(vocab), bos_token="[DEC]")
    dec = TINY_BERT_VOCAB.index("[DEC]")
    sep = TINY_BERT_VOCAB.index("[SEP]")
    config = BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
        text_config={"vocab_size": len(TINY_BERT_VOCAB), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "encoder_hidden_size": 32,
                     "bos_token_id": dec, "sep_token_id": sep, "eos_token_id": sep, "pad_token_id": 0,
                     "max_position_embeddings": 64},
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(str(folder))
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 64, "width": 64}), tokenizer=tok)
    processor.save_pretrained(str(folder))
    return folder


# --- tiny vision-language caption models (Florence-2, Qwen2.5-VL, Qwen3-VL, LLaVA) -----------------------------
# Built the way transformers' own tests build them (tests/models/<family>/test_modeling_*.py): a few layers of
# width 16-32, a word-level tokenizer made here, and the processor the family's hub repos ship, chat template
# included. They need the transformers version that introduced each family (see caption.FAMILIES).

#: Words the tiny tokenizers know besides special tokens: the family prompts (so a test can read an instruction
#: back from the input ids) and a few caption words for the random models to emit.
TINY_WORDS = ("a photo of the cat dog painting on red blue green tree house man woman with in sky field sea "
              "what does image describe ? detail is shown paragraph . , : ; ' - 1girl solo system user "
              "assistant").split()

#: Qwen2-VL style chat template (string or typed-list content; default system prompt), as the Qwen repos ship.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Llama-3 style chat template with the LLaVA image placeholder (typed-list content, as llava-hf repos ship).
LLAVA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<image>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _tiny_fast_tokenizer(specials, words=None, **named):
    """A lower-casing word-level fast tokenizer: ``specials`` first (ids 0..), then ``words`` plus the words of
    every caption instruction in caption.FAMILIES. ``named`` maps bos_token/eos_token/... to special tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .caption import FAMILIES

    extra = []
    for fam in FAMILIES.values():
        for text in list(fam.prompts.values()) + ([fam.system] if fam.system else []):
            extra += pre_tokenizers.Whitespace().pre_tokenize_str(text.lower())
    vocab: dict = {}
    for tok in list(specials) + list(words or TINY_WORDS) + [w for w, _ in extra]:
        vocab.setdefault(tok, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.add_special_tokens(list(specials))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"], **named), vocab


def _save(model, processor, folder: Path) -> Path:
    model.save_pretrained(str(folder), safe_serialization=True)
    processor.save_pretrained(str(folder))
    return folder


def make_tiny_florence2(folder: PathLike, seed: int = 0) -> Path:
    """A random tiny native Florence-2 (DaViT 1 stage + BART 1+1 layers, 16 px images); returns the folder.

    A Florence-2 named ``*PromptGen*`` (folder name) is treated as a PromptGen fine-tune (it can do ``tags``).
    """
    from transformers import CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok, vocab = _tiny_fast_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<image>"], bos_token="<s>", eos_token="</s>",
                                      pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    config = Florence2Config(
        text_config={"model_type": "bart", "vocab_size": len(vocab), "max_position_embeddings": 64,
                     "encoder_layers": 1, "encoder_ffn_dim": 32, "encoder_attention_heads": 2, "decoder_layers": 1,
                     "decoder_ffn_dim": 32, "decoder_attention_heads": 2, "d_model": 16, "bos_token_id": 0,
                     "pad_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2, "forced_bos_token_id": 0},
        vision_config={"depths": [1], "patch_size": [7], "patch_stride": [4], "patch_padding": [3],
                       "patch_prenorm": [False], "embed_dim": [16], "num_heads": [1], "num_groups": [1],
                       "window_size": 12, "projection_dim": 16},
        image_token_id=vocab["<image>"],
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessor(size={"height": 16, "width": 16}, do_center_crop=False,
                                         crop_size={"height": 16, "width": 16})
    image_processor.image_seq_length = 17  # (16 / stride 4)^2 patches + 1 pooled token
    return _save(model, Florence2Processor(image_processor=image_processor, tokenizer=tok), folder)


_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "<unk>"]


def _tiny_qwen_tokenizer():
    return _tiny_fast_tokenizer(_QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def _tiny_qwen_text(**extra: Any) -> Tuple[Any, Dict[str, int], Dict[str, Any]]:
    """(tokenizer, vision token ids, text config) shared by the tiny Qwen2.5-VL and Qwen3-VL."""
    tok, vocab = _tiny_qwen_tokenizer()
    ids = {k: vocab[v] for k, v in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                                    ("vision_start_token_id", "<|vision_start|>"),
                                    ("vision_end_token_id", "<|vision_end|>"))}
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
            "bos_token_id": vocab["<|endoftext|>"], "eos_token_id": vocab["<|im_end|>"],
            "pad_token_id": vocab["<|endoftext|>"], **extra}
    return tok, ids, text


def make_tiny_qwen2_5_vl(folder: PathLike, seed: int = 0) -> Path:
    """A random tiny Qwen2.5-VL (vision 2 blocks width 32, text 2 layers width 32) with the Qwen chat template."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok, ids, text = _tiny_qwen_text()
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 32, "out_hidden_size": 32, "num_heads": 4,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
              "fullatt_block_indexes": [1]}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 84, patch_size=14, merge_size=2,
                                            temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                    chat_template=QWEN_CHAT_TEMPLATE)
    return _save(model, processor, folder)


def make_tiny_qwen3_vl(folder: PathLike, seed: int = 0) -> Path:
    """A random tiny Qwen3-VL (vision 2 blocks width 32, text 2 layers width 32) with the Qwen chat template."""
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok, ids, text = _tiny_qwen_text(head_dim=8)
    text["rope_parameters"]["mrope_interleaved"] = True
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 32, "out_hidden_size": 32, "num_heads": 4,
              "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 16,
              "deepstack_visual_indexes": [1]}
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessor(min_pixels=32 * 32, max_pixels=64 * 96, patch_size=16, merge_size=2,
                                            temporal_patch_size=2)
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 chat_template=QWEN_CHAT_TEMPLATE)
    return _save(model, processor, folder)


def make_tiny_llava(folder: PathLike, seed: int = 0) -> Path:
    """A random tiny LLaVA (SigLIP vision 2 layers + Llama 2 layers, JoyCaption's layout) with a chat template."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, SiglipImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<image>",
                "<|finetune_right_pad_id|>", "<unk>"]
    tok, vocab = _tiny_fast_tokenizer(specials, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                      pad_token="<|finetune_right_pad_id|>")
    config = LlavaConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 512, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": vocab["<|finetune_right_pad_id|>"]},
        image_token_index=vocab["<image>"], vision_feature_layer=-2, vision_feature_select_strategy="full",
        projector_hidden_act="gelu", image_seq_length=16,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="full", chat_template=LLAVA_CHAT_TEMPLATE,
                               num_additional_image_tokens=0)
    return _save(model, processor, folder)


# --- tiny image tagger (WD v3 hub layout) -------------------------------------------------------------------------
#: A small selected_tags.csv: 4 ratings, general tags (one kaomoji, one with parentheses) and 2 characters, in the
#: WD v3 order (ratings, general, character).
TINY_TAGS: Tuple[Tuple[str, int], ...] = (
    ("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9),
    ("1girl", 0), ("solo", 0), ("long_hair", 0), ("smile", 0), ("^_^", 0), ("hat_(object)", 0), ("blue_sky", 0),
    ("hatsune_miku", 4), ("kirisame_marisa", 4),
)

#: The WD v3 timm config shape (SmilingWolf/wd-vit-tagger-v3: vit_base_patch16_224 with these model_args at 448
#: px), shrunk to 2 layers of width 32 at 32 px.
TINY_TAGGER_MODEL_ARGS = {"img_size": 32, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2,
                          "class_token": False, "global_pool": "avg", "fc_norm": False, "act_layer": "gelu_tanh"}


def make_tiny_tagger(folder: PathLike, seed: int = 0, tags: Sequence[Tuple[str, int]] = TINY_TAGS,
                     head_bias: Optional[Sequence[float]] = None) -> Path:
    """Write a random tiny tagger folder (timm ``config.json``, ``model.safetensors``, ``selected_tags.csv``);
    returns the folder.

    With ``head_bias`` the classifier's weights are zero and its bias is this (one logit per tag): the real model
    then scores every image ``sigmoid(head_bias)``, so tests know the scores exactly.
    """
    import csv as _csv

    import timm
    from safetensors.torch import save_file

    from .tagger import _model_args

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architecture": "vit_tiny_patch16_224", "num_classes": len(tags), "num_features": 32,
              "global_pool": "avg", "model_args": dict(TINY_TAGGER_MODEL_ARGS),
              "pretrained_cfg": {"custom_load": False, "input_size": [3, 32, 32], "fixed_input_size": False,
                                 "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": len(tags),
                                 "pool_size": None, "first_conv": None, "classifier": None}}
    torch.manual_seed(seed)
    model = timm.create_model(config["architecture"], pretrained=False, num_classes=len(tags),
                              **_model_args(config)).eval()
    if head_bias is not None:
        if len(head_bias) != len(tags):
            raise ValueError(f"{len(head_bias)} biases for {len(tags)} tags")
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.copy_(torch.tensor(list(head_bias), dtype=torch.float32))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    with open(folder / "selected_tags.csv", "w", newline="", encoding="utf-8") as f:
        writer = _csv.writer(f)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(tags):
            writer.writerow([1000 + i, name, category, 100 - i])
    return folder
