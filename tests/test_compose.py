"""Per-encoder composition (issue 19): a 77-token CLIP prompt starts with the caption's head and keeps room for
CLIP-ranked terms; long-prose prompts are the whole caption; sentences end before the terms begin."""
import pytest

from interrogator_core import compose

PARAGRAPH = ("A weathered stone lighthouse stands on a rocky shore under a heavy grey sky. Waves break against the "
             "dark rocks below while seagulls circle the lantern room, and a narrow path winds up from a small "
             "fishing village whose red roofs glow in the last light. A single boat heads back to the harbour as "
             "the keeper climbs the spiral stairs with an oil lamp.")


def ranked_terms(ci, key: str, prompt: str, caption: str) -> int:
    """How many ranked terms follow the caption's head in ``prompt``."""
    head, cut = compose.clip_head(ci.encoders[key].clip.text, caption)
    assert cut and prompt.startswith(head), (head, prompt)
    rest = prompt[len(head):]
    return len([t for t in rest.split(", ") if t]) if rest.startswith(", ") else 0


@pytest.mark.parametrize("target", ["flux", "sd35"])
@pytest.mark.parametrize("mode", ["fast", "best"])
def test_paragraph_caption_leaves_room_for_ranked_terms(target, mode, make_interrogator, images, registry_to_tiny):
    ci = make_interrogator(target=target)
    r = ci.interrogate(images[:1], mode=mode, max_flavors=12, min_flavors=2, captions=[PARAGRAPH])[0]
    assert r.prompts["t5"] == PARAGRAPH, "t5 reads the whole caption"
    for key in [k for k in r.prompts if k != "t5"]:
        prompt = r.prompts[key]
        assert ".," not in prompt and ci.encoders[key].clip.text.tokenize([prompt])[1].item(), prompt
        assert ranked_terms(ci, key, prompt, PARAGRAPH) >= compose.MIN_TERMS, (key, prompt)
        assert prompt.startswith("A weathered stone lighthouse stands on a rocky shore under a heavy grey sky, ")


def test_head_rule(make_interrogator):
    text = make_interrogator().main.clip.text
    short = "A cat on a sofa."
    assert compose.clip_head(text, short) == ("A cat on a sofa", False), "a short caption is whole, its full stop gone"
    head, cut = compose.clip_head(text, PARAGRAPH)
    assert cut and head == "A weathered stone lighthouse stands on a rocky shore under a heavy grey sky"
    assert compose.token_counts(text, [head])[0] <= compose.HEAD_TOKENS
    one_sentence = PARAGRAPH.replace(". ", ", ")  # no sentence fits: cut at a comma
    head, cut = compose.clip_head(text, one_sentence)
    assert cut and one_sentence.startswith(head) and not head.endswith(",")
    tags = ", ".join(f"tag{i}" for i in range(60))
    head, cut = compose.clip_head(text, tags, tags=True)
    assert cut and tags.startswith(head + ",") and compose.token_counts(text, [head])[0] <= compose.HEAD_TOKENS
