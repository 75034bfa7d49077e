"""Target presets, round-trip scores, the beam chain."""
import pytest

from interrogator_core import TARGETS, InterrogatorConfig, UnknownNameError, list_targets
from interrogator_core import load_images, prompts


def test_targets_pick_the_clip_model():
    assert InterrogatorConfig(target="sd15").clip_model == "ViT-L-14/openai"
    assert InterrogatorConfig(target="sd2").clip_model == "ViT-H-14/laion2b_s32b_b79k"
    assert InterrogatorConfig(target="sdxl").clip_model == "ViT-bigG-14/laion2b_s39b_b160k"
    assert InterrogatorConfig(target="custom", clip_model="ViT-B-32/openai").clip_model == "ViT-B-32/openai"
    assert TARGETS["sdxl"].extras(sdxl_dual=True) == (("clip_l", "ViT-L-14/openai"),)
    assert list_targets()[:6] == ["sd15", "sd2", "sdxl", "sdxl-tags", "flux", "sd35"]  # then issue 19's, custom
    assert list_targets()[-1] == "custom"
    with pytest.raises(UnknownNameError, match="sdxl"):
        InterrogatorConfig(target="sdxxl")
    with pytest.raises(ValueError, match="sdxl"):
        InterrogatorConfig(target="sd15", sdxl_dual=True)


def test_sdxl_dual_returns_prompts_per_encoder(make_interrogator, images, registry_to_tiny, tiny_clip_l):
    """Through the real path: target sdxl + sdxl_dual loads bigG and ViT-L by their registry names (served
    from tiny models) and ranks each prompt with its own encoder, from one caption."""
    ci = make_interrogator(target="sdxl", sdxl_dual=True)
    r = ci.interrogate(images[:2], mode="fast")
    assert registry_to_tiny == ["ViT-bigG-14/laion2b_s39b_b160k", "ViT-L-14/openai"]
    assert all(x.positive_l and x.negative_l for x in r)
    assert all(x.positive_l.startswith(x.caption) for x in r)  # same caption, the second encoder's flavors
    assert all(x.prompts == {"clip_g": x.positive, "clip_l": x.positive_l} for x in r)
    alone = make_interrogator(clip_model=str(tiny_clip_l)).interrogate(images[:2], mode="fast",
                                                                      captions=[x.caption for x in r])
    assert [(x.positive_l, x.negative_l) for x in r] == [(a.positive, a.negative) for a in alone]
    assert len(ci.models) == 3  # caption model, bigG, ViT-L
    ci.unload()
    assert ci.models == [] and ci.pool.loaded() == set()


def test_round_trip_scores(make_interrogator, images):
    ci = make_interrogator()
    s = ci.score(images, references=images)
    assert [round(x.image_similarity, 4) for x in s] == [1.0, 1.0, 1.0]  # an image matches itself
    other = ci.score(images[:1], references=images[1:2])[0].image_similarity
    assert other < 0.9999
    p = ci.interrogate(images[:1], mode="fast")[0]
    scored = ci.score(images[:1], prompts=[p.positive])[0]
    assert scored.prompt_similarity == pytest.approx(p.similarity, abs=1e-4)
    assert "image↔prompt" in scored.to_text()
    both = ci.score(images, references=images[:1], prompts="a photo")
    assert len(both) == 3 and both[0].image_similarity == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="references"):
        ci.score(images, references=images[:2])


@pytest.fixture
def chain_setup(make_interrogator, images):
    ci = make_interrogator()
    ci.load(caption=False)
    feats = ci.main.image_features(load_images(images))
    phrases = [l for l, _ in ci.main.tables().pool.top(feats[:1], 40)[0]]
    return ci.main.clip.text, feats, phrases


@pytest.mark.parametrize("reverse", [False, True])
def test_beam_is_never_worse_than_greedy(chain_setup, reverse):
    text, feats, phrases = chain_setup
    for f in feats:
        greedy = prompts.chain(text, f, phrases, start=None if reverse else "a picture", min_count=2,
                               max_count=8, reverse=reverse)
        for k in (2, 4):
            beam = prompts.chain(text, f, phrases, start=None if reverse else "a picture", min_count=2,
                                 max_count=8, reverse=reverse, beam_width=k)
            if reverse:
                assert beam.similarity <= greedy.similarity + 1e-6
            else:
                assert beam.similarity >= greedy.similarity - 1e-6


def greedy_reference(text, feats, phrases, start, min_count, max_count):
    """clip-interrogator's greedy chain, written plainly: every candidate encoded whole (no prefix reuse),
    append the best phrase while it helps (or for min_count steps), skip candidates past the 77-token window,
    return the best prompt seen."""
    pool = list(dict.fromkeys(p for p in phrases if p))
    prompt, sim = start, prompts.similarities(text, feats, [start])[0]
    best, best_sim = prompt, sim
    for step in range(max_count):
        cands = [(p, prompt + ", " + p) for p in pool]
        cands = [c for c, ok in zip(cands, prompts.fits(text, [c for _, c in cands])) if ok]
        if not cands:
            break
        sims = prompts.similarities(text, feats, [c for _, c in cands])
        j = max(range(len(sims)), key=lambda i: (sims[i], -i))  # first of equal maxima, like topk on ranks
        if not (sims[j] > sim or step < min_count):
            break
        pool.remove(cands[j][0])
        prompt, sim = cands[j][1], sims[j]
        if sim > best_sim:
            best, best_sim = prompt, sim
    return best, best_sim


def test_beam_width_one_is_the_greedy_chain(make_interrogator, images):
    ci = make_interrogator()
    r = ci.interrogate(images[:1], mode="best", beam_width=1, min_flavors=2, max_flavors=8, negative_count=0)[0]
    text = ci.main.clip.text
    feats = ci.main.image_features(load_images(images[:1]))[0]
    phrases = [l for l, _ in ci.main.tables().pool.top(feats[None], ci.config.flavor_intermediate_count)[0]]
    head = prompts.truncate_to_fit(text, r.caption)
    ref, ref_sim = greedy_reference(text, feats, phrases, head, 2, 8)
    chain = prompts.chain(text, feats, phrases, start=head, min_count=2, max_count=8, beam_width=1)
    assert chain.prompt == ref
    assert r.candidates["chain"] == pytest.approx(ref_sim, abs=1e-4)
    with pytest.raises(ValueError):
        make_interrogator().interrogate(images[:1], beam_width=0)


def test_beam_reported_similarity_is_the_prompts(chain_setup):
    text, feats, phrases = chain_setup
    res = prompts.chain(text, feats[0], phrases, start="a picture", min_count=2, max_count=6, beam_width=3)
    assert res.similarity == pytest.approx(prompts.similarities(text, feats[0], [res.prompt])[0], abs=1e-4)
