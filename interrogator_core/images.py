"""Input images: open files safely and bring any PIL image to plain 8-bit RGB."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Refuse decompression bombs beyond this many pixels (PIL's own limit is a warning only below 2x).
MAX_PIXELS = 16384 * 16384

ImageInput = Union[Image.Image, str, "os.PathLike[str]"]


def describe(image: ImageInput, index: int) -> str:
    if isinstance(image, Image.Image):
        name = getattr(image, "filename", "") or ""
        return name or f"#{index}"
    return str(image)


def to_rgb(image: Image.Image, source: str = "image") -> Image.Image:
    """First frame, EXIF orientation applied, transparency flattened on white, 16-bit/float scaled to 8-bit."""
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        if image.width < 1 or image.height < 1:
            raise ImageError(source, f"has no pixels ({image.width}x{image.height})")
        if image.width * image.height > MAX_PIXELS:
            raise ImageError(source, f"is too large ({image.width}x{image.height} pixels)")
        image = ImageOps.exif_transpose(image)
        mode = image.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            lo, hi = image.getextrema()
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            image = image.point(lambda v: (v - lo) * scale).convert("L")
            mode = "L"
        if mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
            mode = "RGBA"
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = image.convert("RGBA")
            base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(base, rgba).convert("RGB")
        return image.convert("RGB") if mode != "RGB" else image.copy()
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(source, f"cannot be decoded ({e})") from e


def open_image(path: Union[str, "os.PathLike[str]"]) -> Image.Image:
    """Open and fully decode an image file into RGB, or raise :class:`ImageError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(str(p), "does not exist or is not a file")
    if p.stat().st_size == 0:
        raise ImageError(str(p), "is empty (0 bytes)")
    try:
        with Image.open(p) as im:
            im.load()
            return to_rgb(im, str(p))
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(str(p), f"is not a readable image ({e})") from e


def load_rgb(image: ImageInput, index: int = 0) -> Image.Image:
    """A PIL image or a path, as RGB."""
    if isinstance(image, Image.Image):
        return to_rgb(image, describe(image, index))
    return open_image(image)


def iter_image_files(paths: Iterable[Union[str, "os.PathLike[str]"]], recursive: bool = True) -> Iterator[Path]:
    """Image files named directly, and those inside folders (subfolders too when ``recursive``), sorted."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            yield from sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            yield p
