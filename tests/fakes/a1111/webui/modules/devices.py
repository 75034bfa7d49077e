"""Fake of A1111's ``modules.devices`` (CPU only); ``gc_calls`` counts torch_gc()."""
import torch

cpu: torch.device = torch.device("cpu")
device: torch.device = torch.device("cpu")
device_interrogate: torch.device = torch.device("cpu")
dtype: torch.dtype = torch.float16
gc_calls = 0


def get_optimal_device_name():
    return "cpu"


def get_optimal_device():
    return torch.device(get_optimal_device_name())


def get_device_for(task):
    return get_optimal_device()


def torch_gc():
    global gc_calls
    gc_calls += 1
dtype_unet: torch.dtype = torch.float16
unet_needs_upcast = False  # A1111 sets it for --upcast-sampling with an fp16 UNet
