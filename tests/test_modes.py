"""Each mode's structure, window fit, batching, determinism, analyze, user tables and blocklist."""
import pytest
from open_clip.tokenizer import SimpleTokenizer

from interrogator_core import InterrogatorError, UnknownNameError, list_modes, load_images

BPE = SimpleTokenizer()


def fits_window(prompt: str) -> bool:
    return len(BPE.encode(prompt)) + 2 <= 77


@pytest.fixture(scope="module")
def results(tiny_models, small_data_dir, tmp_path_factory, images):
    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost

    ci = Interrogator(InterrogatorConfig(clip_model=str(tiny_models["clip"]), caption_model=str(tiny_models["blip"]),
                                         cache_dir=tmp_path_factory.mktemp("cache"), data_dir=small_data_dir,
                                         caption_max_length=8), StandaloneHost(device="cpu"))
    return {m: ci.interrogate(images, mode=m) for m in list_modes()}


@pytest.mark.parametrize("mode", ["best", "classic", "fast"])
def test_positive_starts_with_caption_and_negative_has_none(results, mode):
    for r in results[mode]:
        assert r.caption and r.positive.startswith(r.caption)
        assert r.negative and r.caption not in r.negative
        assert r.mode == mode


@pytest.mark.parametrize("mode", list_modes())
def test_batch_of_n_gives_n_results_that_fit_the_window(results, mode, images):
    assert len(results[mode]) == len(images)
    for r in results[mode]:
        assert fits_window(r.positive) and fits_window(r.negative)


def test_negative_mode_has_only_a_negative(results):
    for r in results["negative"]:
        assert r.positive == "" and r.negative and r.similarity is None
        assert r.negative_similarity is not None


def test_caption_mode_needs_no_clip(results):
    for r in results["caption"]:
        assert r.positive == r.caption and r.negative == ""


def test_best_picks_the_most_similar_candidate(results):
    for r in results["best"]:
        assert set(r.candidates) >= {"caption", "classic", "fast", "chain"}
        assert r.similarity == pytest.approx(max(r.candidates.values()), abs=1e-5)
        assert r.similarity >= r.candidates["caption"]


def test_negative_chain_is_at_most_as_similar_as_its_least_similar_phrase(make_interrogator, images):
    ci = make_interrogator()
    r = ci.interrogate(images[:1], mode="negative")[0]
    feats = ci.main.image_features(load_images(images[:1]))
    least = ci.main.tables().negative_pool.scores(feats).min().item()
    assert r.negative_similarity <= least + 2e-3  # + fp16 rounding of the cached single-phrase embeddings


def test_deterministic_across_instances(make_interrogator, images, results):
    again = make_interrogator().interrogate(images, mode="best")
    assert [(r.positive, r.negative) for r in again] == [(r.positive, r.negative) for r in results["best"]]


def test_image_features_are_computed_once_per_image(make_interrogator, images):
    ci = make_interrogator()
    clip = ci.main.clip
    calls = []
    clip.module.visual.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    ci.interrogate(images, mode="best")
    assert sum(calls) == len(images)


def test_long_caption_is_cut_to_fit(make_interrogator, images):
    long = "a very long caption " * 30
    for mode in ("best", "fast", "classic"):
        r = make_interrogator().interrogate(images[:1], mode=mode, captions=[long])[0]
        assert fits_window(r.positive), mode


def test_flavor_bounds(make_interrogator, images):
    ci = make_interrogator()
    r = ci.interrogate(images[:1], mode="fast", min_flavors=3, max_flavors=3, negative_count=0)[0]
    assert len(r.positive[len(r.caption):].split(", ")) - 1 == 3
    assert r.negative == ""
    with pytest.raises(ValueError):
        ci.interrogate(images[:1], max_flavors=-1)


def test_unknown_mode_lists_valid_ones(make_interrogator, images):
    with pytest.raises(UnknownNameError, match="best"):
        make_interrogator().interrogate(images[:1], mode="bestt")


def test_no_caption_model(make_interrogator, images):
    ci = make_interrogator(caption_model=None)
    r = ci.interrogate(images[:1], mode="fast")[0]
    assert r.caption == "" and r.positive
    with pytest.raises(InterrogatorError, match="caption model"):
        ci.captions.model()


def test_given_captions_are_used(make_interrogator, images):
    r = make_interrogator().interrogate(images[:2], mode="fast", captions=["a red house", None])
    assert r[0].positive.startswith("a red house") and r[1].caption


def test_analyze_top_n_sorted(make_interrogator, images, small_data_dir):
    res = make_interrogator().analyze(images, top_n=3)
    assert len(res) == len(images)
    for a in res:
        assert set(a.tables) == {"artists", "flavors", "mediums", "movements", "trendings"}
        for pairs in a.tables.values():
            assert len(pairs) == 3
            sims = [s for _, s in pairs]
            assert sims == sorted(sims, reverse=True)
        assert "mediums:" in a.to_text()


def test_blank_and_duplicate_labels_are_never_ranked(make_interrogator, images):
    ci = make_interrogator()
    flavors = ci.analyze(images[:1], top_n=100, tables=["flavors"])[0].tables["flavors"]
    labels = [l for l, _ in flavors]
    assert "" not in labels and len(labels) == len(set(labels))


def test_blocklist_removes_labels(make_interrogator, images):
    top = make_interrogator().analyze(images[:1], top_n=1, tables=["artists"])[0].tables["artists"][0][0]
    artist = top.split("by ", 1)[1]
    blocked = make_interrogator(blocklist=[artist]).analyze(images[:1], top_n=100, tables=["artists"])[0]
    assert all(artist not in l for l, _ in blocked.tables["artists"])


def test_user_tables_join_the_pool(make_interrogator, images, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "styles.txt").write_bytes("\ufeffzzsty one\r\nzzsty two\r\n\r\nzzsty one\n".encode("utf-8"))
    ci = make_interrogator(user_tables_dir=folder)
    res = ci.analyze(images[:1], top_n=5, tables=["styles"])[0]
    assert sorted(l for l, _ in res.tables["styles"]) == ["zzsty one", "zzsty two"]
    assert "zzsty one" in ci.main.tables().pool.labels
    (folder / "flavors.txt").write_text("x\n")
    with pytest.raises(InterrogatorError, match="built-in"):
        make_interrogator(user_tables_dir=folder).load(caption=False)


def test_tables_and_pools_share_one_block_of_memory(make_interrogator, images):
    ci = make_interrogator()
    ci.interrogate(images[:1], mode="best")
    flavors, pool, neg = ci.main.tables().tables["flavors"], ci.main.tables().pool, ci.main.tables().negative_pool
    base = pool.embeds.untyped_storage().data_ptr()
    for t in (flavors, neg, ci.main.tables().tables["negative"], ci.main.tables().tables["artists"]):
        assert t.embeds.untyped_storage().data_ptr() == base  # views, not copies
    assert neg.labels == flavors.labels + ci.main.tables().tables["negative"].labels
    assert "blurry" not in pool.labels and "bokeh" in pool.labels
    ci.offload()
    assert all(t._on_device is None for t in ci.main.tables().indexes())


@pytest.mark.parametrize("mode", ["best", "classic", "fast", "negative"])
def test_a_batch_gives_what_each_image_alone_gives(make_interrogator, images, mode):
    """The batch ranks, scores and chains its images together; each result must be the one-image result."""
    ci = make_interrogator()
    together = ci.interrogate(images, mode=mode, max_flavors=4, negative_count=4)
    alone = [ci.interrogate([im], mode=mode, max_flavors=4, negative_count=4)[0] for im in images]
    for a, b in zip(together, alone):
        assert (a.positive, a.negative, a.caption) == (b.positive, b.negative, b.caption)
        for x, y in ((a.similarity, b.similarity), (a.negative_similarity, b.negative_similarity)):
            assert (x is None) == (y is None) and (x is None or x == pytest.approx(y, abs=1e-5))
        assert a.candidates.keys() == b.candidates.keys()


@pytest.mark.parametrize("mode", ["best", "classic", "fast", "negative"])
def test_reported_similarities_are_the_prompts_and_score_off_skips_only_extra_encodes(make_interrogator, images,
                                                                                      mode):
    from interrogator_core.prompts import similarities

    ci = make_interrogator()
    scored = ci.interrogate(images, mode=mode, max_flavors=4, negative_count=4)
    bare = ci.interrogate(images, mode=mode, max_flavors=4, negative_count=4, similarities=False)
    text = ci.main.clip.text
    feats = ci.main.image_features(load_images(images))
    for i, (r, b) in enumerate(zip(scored, bare)):
        assert (r.positive, r.negative) == (b.positive, b.negative)
        for prompt, sim in ((r.positive, r.similarity), (r.negative, r.negative_similarity)):
            if prompt:  # what a full encode of the prompt gives (chains report theirs without one)
                assert sim == pytest.approx(similarities(text, feats[i], [prompt])[0], abs=1e-4)
        chained = mode in ("best", "negative")  # chains know their similarity: kept without score
        assert (b.similarity is not None) == (chained and bool(b.positive))  # best: the picked candidate's
        assert (b.negative_similarity is not None) == (chained and bool(b.negative))


def test_eta_text():
    from interrogator_core.interrogator import eta_text

    assert eta_text(0, 100, 5.0) == "" and eta_text(100, 100, 5.0) == ""
    assert eta_text(25, 100, 10.0) == "ETA 30s"
    assert eta_text(10, 100, 20.0) == "ETA 3m00s"
    assert eta_text(1, 1000, 10.0) == "ETA 2h46m"


def test_label_encoding_progress_shows_an_eta(make_interrogator, images):
    from interrogator_core import StandaloneHost

    seen = []
    ci = make_interrogator(text_batch_size=8, host=StandaloneHost(device="cpu", progress=lambda s, t, d: seen.append(
        (s, t, d))))
    ci.interrogate(images[:1], mode="fast")
    encoding = [(s, t, d) for s, t, d in seen if d.startswith("encoding labels: flavors")]
    assert encoding and all(("ETA" in d) == (0 < s < t) for s, t, d in encoding)
    assert any("ETA" in d for _, _, d in encoding)
