"""Fake of Forge's ``backend.memory_management`` (CPU only): the loaded-model list, load_models_gpu,
free_memory, the text-encoder devices, should_use_fp16, soft_empty_cache — same signatures, call records."""
import torch

cpu = torch.device("cpu")
current_loaded_models = []
#: What the tests set: the device the manager loads text encoders to (a meta-free CPU stand-in by default).
load_device = torch.device("cpu")
calls = []


class LoadedModel:
    def __init__(self, model):
        self.model = model
        self.model_accelerated = False
        self.device = model.load_device

    def model_load(self, model_gpu_memory_when_using_cpu_swap=-1):
        self.real_model = self.model.forge_patch_model(self.device)
        return self.real_model

    def model_unload(self, avoid_model_moving=False):
        calls.append(("model_unload", self.model))
        if avoid_model_moving:
            self.model.forge_unpatch_model()
        else:
            self.model.forge_unpatch_model(self.model.offload_device)

    def __eq__(self, other):
        return self.model is other.model


def get_torch_device():
    return load_device


def text_encoder_device():
    return load_device


def text_encoder_offload_device():
    return cpu


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False):
    if device is not None and device.type == "cpu":
        return False
    return True


def free_memory(memory_required, device, keep_loaded=[], free_all=False):
    calls.append(("free_memory", memory_required, device))
    for i in range(len(current_loaded_models) - 1, -1, -1):
        m = current_loaded_models[i]
        if m not in keep_loaded and (free_all or m.device == device):
            current_loaded_models.pop(i).model_unload()


def load_models_gpu(models, memory_required=0, hard_memory_preservation=0):
    calls.append(("load_models_gpu", list(models)))
    for x in models:
        loaded = LoadedModel(x)
        if loaded in current_loaded_models:
            current_loaded_models.insert(0, current_loaded_models.pop(current_loaded_models.index(loaded)))
            continue
        loaded.model_load()
        current_loaded_models.insert(0, loaded)


def load_model_gpu(model):
    return load_models_gpu([model])


def soft_empty_cache(force=False):
    calls.append(("soft_empty_cache",))


def unload_all_models():
    free_memory(1e30, get_torch_device(), free_all=True)
