"""Fake of A1111's ``modules.lowvram``; ``calls`` counts send_everything_to_cpu()."""
import torch

module_in_gpu = None
cpu = torch.device("cpu")
calls = 0


def send_everything_to_cpu():
    global module_in_gpu, calls
    calls += 1
    if module_in_gpu is not None:
        module_in_gpu.to(cpu)
    module_in_gpu = None


def setup_for_low_vram(sd_model, use_medvram):
    pass
