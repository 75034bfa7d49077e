"""Fake of ``comfy.patcher_extension`` (only the callback names used by ModelPatcher)."""


class CallbacksMP:
    ON_CLONE = "on_clone"
    ON_LOAD = "on_load_after"
    ON_DETACH = "on_detach_after"
    ON_CLEANUP = "on_cleanup"

    @classmethod
    def init_callbacks(cls) -> dict:
        return {}
