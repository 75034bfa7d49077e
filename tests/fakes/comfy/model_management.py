"""Fake of ``comfy.model_management`` (ComfyUI 0.3.75 signatures), CPU only, with call records.

``current_loaded_models`` holds ``LoadedModel`` entries like the real module; ``load_models_gpu`` adds them,
``free_memory``/``unload_all_models`` evict them through ``model_unload`` (which detaches the patcher).
Tests set ``DEVICE``/``OFFLOAD_DEVICE``/``FP16`` and read ``CALLS``.
"""
import threading
import weakref
from typing import Any, List, Tuple

import torch

DEVICE = torch.device("cpu")
OFFLOAD_DEVICE = torch.device("cpu")
FP16 = False
#: (function name, args) of every call the adapter may make.
CALLS: List[Tuple[str, Any]] = []

current_loaded_models: list = []


def reset() -> None:
    global DEVICE, OFFLOAD_DEVICE, FP16, interrupt_processing
    DEVICE = OFFLOAD_DEVICE = torch.device("cpu")
    FP16 = False
    CALLS.clear()
    current_loaded_models.clear()
    interrupt_processing = False


def module_size(module):
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


class LoadedModel:
    def __init__(self, model):
        self._model = weakref.ref(model)
        self.device = model.load_device
        self.currently_used = True

    @property
    def model(self):
        return self._model()

    def model_memory(self):
        return self.model.model_size()

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        self.model.load(self.device, lowvram_model_memory, force_patch_weights, full_load=True)
        return self.model.model

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        self.model.detach(unpatch_weights)
        return True

    def __eq__(self, other):
        return self.model is other.model


def get_torch_device():
    return DEVICE


def text_encoder_device():
    return DEVICE


def text_encoder_offload_device():
    return OFFLOAD_DEVICE


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False):
    CALLS.append(("should_use_fp16", (device, prioritize_performance)))
    return FP16


def minimum_inference_memory():
    return 1024 * 1024 * 1024 * 0.8


def soft_empty_cache(force=False):
    CALLS.append(("soft_empty_cache", ()))


def free_memory(memory_required, device, keep_loaded=[]):
    CALLS.append(("free_memory", (memory_required, device)))
    unloaded = []
    for i in range(len(current_loaded_models) - 1, -1, -1):
        lm = current_loaded_models[i]
        if lm.device == device and lm not in keep_loaded:
            lm.model_unload()
            unloaded.append(current_loaded_models.pop(i))
    return unloaded


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    CALLS.append(("load_models_gpu", (list(models), force_full_load)))
    for m in models:
        lm = LoadedModel(m)
        if lm in current_loaded_models:
            current_loaded_models[current_loaded_models.index(lm)].model_load()
            continue
        lm.model_load()
        current_loaded_models.insert(0, lm)


def loaded_models(only_currently_used=False):
    return [m.model for m in current_loaded_models]


def unload_all_models():
    CALLS.append(("unload_all_models", ()))
    free_memory(1e30, get_torch_device())


class InterruptProcessingException(Exception):
    pass


interrupt_processing_mutex = threading.RLock()
interrupt_processing = False


def interrupt_current_processing(value=True):
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted():
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted():
    global interrupt_processing
    CALLS.append(("throw_exception_if_processing_interrupted", ()))
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()
