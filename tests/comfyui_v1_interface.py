"""The V1 release's ComfyUI node interface, frozen (used by the unit and the real-ComfyUI tests).

Node id → (required input names in order, optional input names in order, output types, output names, output
list flags). Saved workflows refer to exactly these: the API format by input name and output index, the UI
format by widget position. New inputs may only be appended to the optional ones and new outputs only after
these, so every entry here must stay a prefix of what the nodes declare. Nodes added later are frozen here from
their first release on the same way.
"""
V1_INTERFACE = {
    "PromptInterrogator.Loader": (["clip_model", "caption_model", "precision", "memory"],
                                  ["target", "sdxl_dual"], ["INTERROGATOR"], ["interrogator"], [False]),
    "PromptInterrogator.Interrogate": (
        ["image", "interrogator", "mode", "min_flavors", "max_flavors", "negative_count"], ["beam_width"],
        ["STRING"] * 5, ["positive", "negative", "caption", "positive_l", "negative_l"], [True] * 5),
    "PromptInterrogator.Caption": (["image", "interrogator"], [], ["STRING"], ["caption"], [True]),
    "PromptInterrogator.Analyze": (["image", "interrogator", "top_n", "with_caption"], [], ["STRING"],
                                   ["analysis"], [True]),
    "PromptInterrogator.RoundTripScore": (["original", "regenerated", "interrogator"], ["prompt"],
                                          ["FLOAT", "FLOAT", "STRING"],
                                          ["image_similarity", "prompt_similarity", "summary"], [True] * 3),
    # added after V1 (issue 19.4), frozen from its first release on
    "PromptInterrogator.InterrogateEncode": (
        ["image", "interrogator", "clip", "mode", "min_flavors", "max_flavors", "negative_count"],
        ["beam_width", "guidance"], ["CONDITIONING", "CONDITIONING", "STRING", "STRING", "STRING"],
        ["positive", "negative", "positive_text", "negative_text", "caption"], [True] * 5),
}
