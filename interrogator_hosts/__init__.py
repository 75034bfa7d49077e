"""Host adapters that need a host application (ComfyUI, ...) to import.

They live outside :mod:`interrogator_core` so that the engine never imports a host: each module here is
imported only by that host's entry point (``nodes.py`` for ComfyUI).
"""
