"""Prompt Interrogator engine: image → positive and negative prompt for Stable Diffusion.

Hosts (ComfyUI, A1111/Forge, the CLI) pass a :class:`HostAdapter`; everything else is here::

    from interrogator_core import Interrogator, InterrogatorConfig
    results = Interrogator(InterrogatorConfig(clip_model="ViT-L-14/openai")).interrogate(images, mode="best")
    results[0].positive, results[0].negative

Importing this package is cheap: models load on first use. Every user-facing setting (default, bounds,
choices, help) is in :data:`SETTINGS` (:mod:`interrogator_core.settings`); host adapters import from here and
from :mod:`interrogator_core.hostapi` only.
"""
from .cache import LabelCache, cache_file_name, default_cache_dir, label_hash
from .caption import AUTO_STYLE, CAPTION_MODELS, NO_CAPTION, CAPTION_STYLES, list_caption_models, list_caption_styles
from .clip import list_clip_models
from .errors import (DeviceOutOfMemoryError, ImageError, InterrogatorError, Interrupted, ModelLoadError,
                     ModelNotFoundError, UnknownNameError)
from .host import PRECISIONS, HostAdapter, ModelHandle, OffloadPolicy, StandaloneHost
from .images import MAX_PIXELS, ImageInput, RGBImage, is_rgb_image, load_images, load_rgb
from .interrogator import MODES, Interrogator, InterrogatorConfig, list_modes
from .labels import TABLE_NAMES
from .result import AnalyzeResult, InterrogationResult, RoundTripScore
from .settings import SETTINGS, Setting, get_setting, tagger_options
from .tagger import Tagger, TaggerOptions
from .targets import CUSTOM, TARGETS, TargetPreset, get_target, list_targets
from .textenc import MAX_BEAM_WIDTH

__version__ = "0.1.0"

__all__ = [
    "AUTO_STYLE", "AnalyzeResult", "CAPTION_MODELS", "CAPTION_STYLES", "DeviceOutOfMemoryError", "HostAdapter", "ImageError",
    "InterrogationResult", "Interrogator", "InterrogatorConfig", "InterrogatorError", "Interrupted",
    "LabelCache", "MODES", "ModelHandle", "ModelLoadError", "ModelNotFoundError", "OffloadPolicy",
    "StandaloneHost", "TABLE_NAMES", "UnknownNameError", "cache_file_name", "default_cache_dir", "label_hash",
    "list_caption_models", "list_caption_styles", "list_clip_models", "list_modes", "RoundTripScore", "TARGETS",
    "TargetPreset", "list_targets", "get_target", "MAX_BEAM_WIDTH", "NO_CAPTION",
    "ImageInput", "MAX_PIXELS", "RGBImage", "is_rgb_image", "load_images", "load_rgb",
    "CUSTOM", "PRECISIONS", "SETTINGS", "Setting", "get_setting", "Tagger", "TaggerOptions", "tagger_options",
]
