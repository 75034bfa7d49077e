"""A request is validated once, into one frozen object; ``score=`` is the old name of ``similarities=``."""
import dataclasses

import pytest

from interrogator_core import UnknownNameError
from interrogator_core.request import MAX_BEAM_WIDTH, Request, check_request


def test_a_request_is_validated_once_into_a_frozen_object():
    r = Request.make("best", "2", 4.0, " 3 ", MAX_BEAM_WIDTH, similarities="no")
    assert (r.mode, r.min_flavors, r.max_flavors, r.negative_count, r.beam_width, r.similarities) == \
        ("best", 2, 4, 3, MAX_BEAM_WIDTH, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.mode = "fast"
    assert check_request("best", "2", 4.0, " 3 ", MAX_BEAM_WIDTH) == r.as_tuple()
    with pytest.raises(UnknownNameError, match="mode"):
        Request.make("bestt")
    with pytest.raises(ValueError, match="similarities"):
        Request.make(similarities="maybe")


def test_negative_terms_follow_clip_interrogator():
    assert Request.make("negative", max_flavors=5, negative_count=2).negative_terms() == 5
    assert Request.make("best", max_flavors=5, negative_count=2).negative_terms() == 2
    assert Request.make("best", max_flavors=5, negative_count=2).negative_terms(writes_negatives=False) == 0
    assert not Request.make("negative").needs_caption and not Request.make("caption").needs_clip


def test_score_is_a_deprecated_alias_of_similarities(make_interrogator, images):
    ci = make_interrogator()
    new = ci.interrogate(images[:1], mode="fast", max_flavors=4, similarities=False)[0]
    with pytest.warns(DeprecationWarning, match="similarities"):
        old = ci.interrogate(images[:1], mode="fast", max_flavors=4, score=False)[0]
    assert (old.positive, old.similarity) == (new.positive, new.similarity) and new.similarity is None
    assert ci.interrogate(images[:1], mode="fast", max_flavors=4)[0].similarity is not None
    with pytest.raises(ValueError, match="disagree"):
        ci.interrogate(images[:1], mode="fast", similarities=False, score=True)
