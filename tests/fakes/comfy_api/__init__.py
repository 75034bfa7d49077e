"""Fake of ComfyUI's ``comfy_api`` package: only ``comfy_api.latest`` (the V3 node schema) is faked."""
