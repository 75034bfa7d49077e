"""Fake of Forge's ``backend.patcher.base.ModelPatcher`` (constructor and the load/unload hooks)."""


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, current_device=None, **kwargs):
        self.size = size
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.model_options = {"transformer_options": {}}
        self.current_device = offload_device if current_device is None else current_device
        model.lora_loader = object()  # the real patcher sets this attribute on the wrapped module

    def model_size(self):
        return self.size

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model

    def forge_patch_model(self, target_device=None):
        if target_device is not None:
            self.model.to(target_device)
            self.current_device = target_device
        return self.model

    def forge_unpatch_model(self, target_device=None):
        if target_device is not None:
            self.model.to(target_device)
            self.current_device = target_device
