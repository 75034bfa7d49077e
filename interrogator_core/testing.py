"""Tiny random-weight models for tests, benchmarks and offline try-outs (never imported by the engine).

They go through exactly the loading code users hit: a CLIP snapshot folder (``open_clip_config.json`` +
``open_clip_model.safetensors``, the hub layout) and a ``transformers`` BLIP folder from ``save_pretrained``.
Their outputs are gibberish, but deterministic per seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

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
