"""Target presets, round-trip scores, the beam chain."""
import pytest

from interrogator_core import TARGETS, InterrogatorConfig, UnknownNameError, list_targets
from interrogator_core import prompts


def test_targets_pick_the_clip_model():
    assert InterrogatorConfig(target="sd15").clip_model == "ViT-L-14/openai"
    assert InterrogatorConfig(target="sd2").clip_model == "ViT-H-14/laion2b_s32b_b79k"
    assert InterrogatorConfig(target="sdxl").clip_model == "ViT-bigG-14/laion2b_s39b_b160k"
    assert InterrogatorConfig(target="custom", clip_model="ViT-B-32/openai").clip_model == "ViT-B-32/openai"
    assert TARGETS["sdxl"].second_clip_model == "ViT-L-14/openai"
    assert list_targets() == ["sd15", "sd2", "sdxl", "custom"]
    with pytest.raises(UnknownNameError, match="sdxl"):
        InterrogatorConfig(target="sdxxl")
    with pytest.raises(ValueError, match="sdxl"):
        InterrogatorConfig(target="sd15", sdxl_dual=True)


def test_sdxl_dual_returns_prompts_per_encoder(make_interrogator, images, tmp_path, tiny_models):
    ci = make_interrogator(caption_model=str(tiny_models["blip"]))
    ci.config.sdxl_dual = True  # the bigG/L names are not available offline: point the second encoder at tiny
    second = make_interrogator(caption_model=None)
    ci._second = second
    r = ci.interrogate(images[:2], mode="fast")
    assert all(x.positive_l and x.negative_l for x in r)
    assert all(x.positive_l.startswith(x.caption) for x in r)  # same caption, the second encoder's flavors
    ci.unload()
    assert ci._second is None and second.models == []


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
    feats = ci._image_features(ci._prepare(images))
    phrases = [l for l, _ in ci._pool.top(feats[:1], 40)[0]]
    return ci._clip.text, feats, phrases


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


def test_beam_width_one_is_the_greedy_chain(make_interrogator, images):
    a = make_interrogator().interrogate(images[:1], mode="best")[0]
    b = make_interrogator().interrogate(images[:1], mode="best", beam_width=1)[0]
    assert (a.positive, a.negative) == (b.positive, b.negative)
    with pytest.raises(ValueError):
        make_interrogator().interrogate(images[:1], beam_width=0)


def test_beam_reported_similarity_is_the_prompts(chain_setup):
    text, feats, phrases = chain_setup
    res = prompts.chain(text, feats[0], phrases, start="a picture", min_count=2, max_count=6, beam_width=3)
    assert res.similarity == pytest.approx(prompts.similarities(text, feats[0], [res.prompt])[0], abs=1e-4)
