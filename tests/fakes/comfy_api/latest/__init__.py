"""Fake of ``comfy_api.latest`` (ComfyUI 0.3.75): ``io`` (the V3 node schema) and ``ComfyExtension``.

Only what the pack uses, with the real names and signatures; written for the unit tests, not copied.
"""
from abc import ABC, abstractmethod
from typing import List, Type

from . import _io as io

IO = io


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Called when the extension is loaded."""

    @abstractmethod
    async def get_node_list(self) -> List[Type[io.ComfyNode]]:
        """The node classes this extension provides."""


__all__ = ["ComfyExtension", "io", "IO"]
