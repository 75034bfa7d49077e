"""Fake of ComfyUI's ``folder_paths`` (the model-folder registry), rooted at ``base_path``."""
import os

base_path = os.environ.get("FAKE_COMFYUI_BASE", os.path.dirname(os.path.realpath(__file__)))
models_dir = os.path.join(base_path, "models")
supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
folder_names_and_paths: dict = {
    "checkpoints": ([os.path.join(models_dir, "checkpoints")], supported_pt_extensions),
}


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name in folder_names_and_paths:
        paths, _exts = folder_names_and_paths[folder_name]
        if full_folder_path in paths:
            if is_default and paths[0] != full_folder_path:
                paths.remove(full_folder_path)
                paths.insert(0, full_folder_path)
        elif is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name: str) -> list:
    folder_name = map_legacy(folder_name)
    return folder_names_and_paths[folder_name][0][:]
