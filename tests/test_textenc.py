"""The exact fast text paths give model.encode_text's features (fp32, max abs diff <= 1e-4 normalized)."""
import pytest
import torch
import torch.nn.functional as F

from interrogator_core.clip import load_clip

PROMPTS = ["a photo", "a painting of a red house by the sea, highly detailed, trending on artstation",
           "cat", "x " * 120, "dog, octane render", ""]


def _reference(clip, texts):
    ids, _ = clip.text.tokenize(texts)
    with torch.no_grad():
        return F.normalize(clip.module.encode_text(ids).float(), dim=-1)


def test_tower_is_recognised(tiny_models):
    clip = load_clip(str(tiny_models["clip"]))
    assert clip.text.fast, "standard causal open_clip text tower must use the fast path"
    assert clip.text._bpe is not None, "open_clip's SimpleTokenizer must allow cached candidate tokens"


def test_length_trimmed_encoding_matches_padded_encode_text(tiny_models):
    clip = load_clip(str(tiny_models["clip"]))
    ours = clip.text.encode_texts(PROMPTS, batch_size=2)
    assert (ours - _reference(clip, PROMPTS)).abs().max().item() <= 1e-4


def test_prefix_reuse_matches_full_encode(tiny_models):
    clip = load_clip(str(tiny_models["clip"]))
    prefix = "a painting of a red house by the sea"
    cands = [f"{prefix}, {p}" for p in ["bokeh", "highly detailed, sharp focus", "8k", "by Claude Monet",
                                        "word " * 80]]
    ids, fits = clip.text.tokenize(cands)
    assert fits.tolist() == [True, True, True, True, False]
    ours = clip.text.encode_with_prefix(ids, batch_size=2)
    assert (ours - _reference(clip, cands)).abs().max().item() <= 1e-4


def test_window_fit_flag_is_exact(tiny_models):
    from open_clip.tokenizer import SimpleTokenizer

    clip = load_clip(str(tiny_models["clip"]))
    bpe = SimpleTokenizer()
    texts = ["cat " * n for n in (73, 74, 75, 76)]
    _, fits = clip.text.tokenize(texts)
    assert fits.tolist() == [len(bpe.encode(t)) + 2 <= 77 for t in texts] == [True, True, True, False]


@pytest.mark.parametrize("prompt", [
    "a painting of a red house by the sea", "Photo OF   a cat 2", "ends with punctuation!", "café au lait",
    "tom & jerry", "word " * 70, "(((masterpiece", "a", "it's 8k",
])
def test_candidate_ids_equal_the_tokenizer(tiny_models, prompt):
    clip = load_clip(str(tiny_models["clip"]))
    phrases = ["bokeh", "by Claude Monet", "8k", "(((best quality)))", "it's art", "über detailed",
               "R&D lab", "trending on artstation", "x" * 200, " spaced  out ", "", "a, b", "UPPER case"]
    ids, fits = clip.text.candidate_ids(prompt, phrases)
    ref_ids, ref_fits = clip.text.tokenize([prompt + ", " + p for p in phrases])
    assert torch.equal(ids, ref_ids) and torch.equal(fits, ref_fits)


def test_label_encoding_shares_prefixes_and_matches(tiny_models):
    clip = load_clip(str(tiny_models["clip"]))
    words = ["cat", "dog", "tree", "house", "river", "sky", "boat", "city", "forest", "mountain"]
    labels = ["by Claude Monet", "by Claude Lorrain", "inspired by Claude Monet", "by Claude Monet",
              "trending on artstation", "trending on pixiv"]
    labels += [f"a photo of a {w} and a {v}" for w in words for v in words[:7]]
    embedded = []
    hook = clip.text.tower.token_embedding.register_forward_hook(lambda m, i, o: embedded.append(i[0].numel()))
    ours = clip.text.encode_texts(labels, batch_size=64)
    hook.remove()
    ids, _ = clip.text.tokenize(labels)
    tokens_padded_free = int((ids.argmax(-1) + 1).sum())
    assert sum(embedded) < 0.8 * tokens_padded_free  # shared prefixes (and the duplicate) computed once
    assert (ours - _reference(clip, labels)).abs().max().item() <= 1e-4
    assert torch.equal(ours[0], ours[3])


def test_next_chain_step_extends_the_cached_prefix_exactly(tiny_models):
    clip = load_clip(str(tiny_models["clip"]))
    phrases = ["bokeh", "8k", "sharp focus", "by Claude Monet"]
    step1 = "a painting of a red house by the sea"
    clip.text.encode_with_prefix(clip.text.candidate_ids(step1, phrases)[0])
    step2 = step1 + ", bokeh"
    embedded = []
    hook = clip.text.tower.token_embedding.register_forward_hook(lambda m, i, o: embedded.append(i[0].shape))
    ids, _ = clip.text.candidate_ids(step2, phrases[1:])
    ours = clip.text.encode_with_prefix(ids)
    hook.remove()
    assert embedded[0][-1] <= 3  # only ", bokeh ," is new in the prefix, not all ~12 tokens
    assert (ours - _reference(clip, [f"{step2}, {p}" for p in phrases[1:]])).abs().max().item() <= 1e-4
