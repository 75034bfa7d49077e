"""Hand-written fakes of the parts of ComfyUI (0.3.75) that Prompt Interrogator uses.

They keep the real signatures and the behaviour our adapter relies on (the loaded-model list, ModelPatcher
setting ``model.device``, detach callbacks, the interrupt flag, ProgressBar), and record calls for asserts.
Only the unit tests import them; the integration test runs the real ComfyUI.
"""
