"""The image edge: every host's input becomes the core's one image type here, once.

The core's image type (:data:`RGBImage`, tested by :func:`is_rgb_image`) is an 8-bit RGB ``PIL.Image.Image`` held
in memory (not a lazily read file), one frame, upright (no EXIF orientation left to apply), with 1 to
:data:`MAX_PIXELS` pixels. :func:`load_images` (a list, one image, or a batch) and :func:`load_rgb` (one image)
turn what a host has into it -- PIL images of any mode, file paths, encoded image bytes, numpy arrays, torch
tensors (a ComfyUI ``IMAGE`` is a float [B, H, W, C] batch: pass ``channels_last=True``) -- and hand an image
that already is one back as it is (no copy), so the pipeline never converts twice. Every failure is an
:class:`ImageError` naming the image.

Pixel values are scaled by their type's range, never by the image's own minimum/maximum (a dark image stays
dark):

* 8-bit modes as they are; 16-bit modes (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) and ``I`` (what Pillow
  uses for 16-bit PNG/PGM) as 0–65535; ``F`` (32-bit float) as 0–1, values outside clipped;
* arrays/tensors: ``uint8`` 0–255, ``uint16`` 0–65535, ``bool``, floats 0–1 (clipped). Shapes H×W, H×W×C,
  C×H×W (C = 1, 2, 3 or 4) and a 4-D batch; ``channels_last`` says which, else an ambiguous shape is H×W×C for
  numpy, C×H×W for torch;
* NaN or infinite values are refused (the one rule, :func:`check_finite`): replace them, e.g.
  ``numpy.nan_to_num``, or fix what produced the image.
"""
from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Set, Tuple, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Refuse decompression bombs beyond this many pixels (PIL's own limit is a warning only below 2x).
MAX_PIXELS = 16384 * 16384
#: What the Python API accepts as an image (used in error messages).
ACCEPTED = ("a PIL image, a file path, encoded image bytes, a numpy array (HxW, HxWxC or CxHxW; uint8 0-255, "
            "uint16, bool or float 0-1) or a torch tensor of those shapes, or a list of these")

ImageInput = Union[Image.Image, str, "os.PathLike[str]", bytes, Any]
#: The core's image type: an in-memory, upright, one-frame, 8-bit RGB PIL image (see :func:`is_rgb_image`).
RGBImage = Image.Image

_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def describe(image: ImageInput, index: int) -> str:
    if isinstance(image, Image.Image):
        name = getattr(image, "filename", "") or ""
        return name or f"#{index}"
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"#{index}"


def check_finite(values: np.ndarray, source: str) -> None:
    """The one NaN/range rule: float pixels must be finite (values outside 0..1 are clipped, NaN or infinity
    is refused with an :class:`ImageError` counting them), so a broken image never becomes a plausible one."""
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        raise ImageError(source, f"has {bad} NaN or infinite pixel values (of {values.size}): replace them (e.g. "
                                 "numpy.nan_to_num) or fix what produced the image (a VAE decode in fp16 often "
                                 "does: decode in fp32, e.g. ComfyUI's --fp32-vae); an interrogation of it would "
                                 "be garbage")


def is_rgb_image(image: Any) -> bool:
    """True when ``image`` already is the core's image type (:data:`RGBImage`): then the edge passes it through
    unchanged, the same object."""
    if not isinstance(image, Image.Image) or isinstance(image, ImageFile.ImageFile) or image.mode != "RGB":
        return False
    if not 0 < image.width * image.height <= MAX_PIXELS or getattr(image, "is_animated", False):
        return False
    try:
        return image.getexif().get(0x0112, 1) == 1  # no EXIF orientation left to apply
    except Exception:  # noqa: BLE001 - unreadable EXIF: let the conversion decide
        return False


def _to_8bit(values: np.ndarray, source: str) -> np.ndarray:
    """uint8 pixels from an array of any supported dtype, scaled by the dtype's range."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
        check_finite(values, source)
        return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if values.dtype == np.uint16:
        return np.round(values.astype(np.float32) / 257.0).astype(np.uint8)
    raise ImageError(source, f"has pixel type {values.dtype}, which is not supported; use uint8 (0-255), uint16 "
                             "or float (0-1)")


def to_rgb(image: Image.Image, source: str = "image") -> Image.Image:
    """The core's image (:data:`RGBImage`) from a PIL image of any mode: first frame, EXIF orientation applied,
    transparency flattened on white, high bit depths scaled to 8 bits by their range (see the module notes).
    An image that already is one is returned as it is (no copy)."""
    if is_rgb_image(image):
        return image
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        if image.width < 1 or image.height < 1:
            raise ImageError(source, f"has no pixels ({image.width}x{image.height})")
        if image.width * image.height > MAX_PIXELS:
            raise ImageError(source, f"is too large ({image.width}x{image.height} pixels)")
        image = ImageOps.exif_transpose(image)
        mode = image.mode
        if mode in _HIGH_BIT_MODES or mode == "F":
            if mode == "F":
                values = np.asarray(image, dtype=np.float32)
            else:  # any byte order → native uint16; Pillow's 32-bit "I" holds 16-bit files, beyond is clipped
                values = np.clip(np.asarray(image).astype(np.int64), 0, 65535).astype(np.uint16)
            image = Image.fromarray(_to_8bit(values, source))
            mode = "L"
        elif mode == "La":  # premultiplied: Pillow converts it to nothing else
            la = np.asarray(image).astype(np.float32)
            alpha = la[..., 1:2]
            gray = np.where(alpha > 0, la[..., :1] * 255.0 / np.maximum(alpha, 1.0), 0.0)
            image = Image.fromarray(np.concatenate([np.clip(np.round(gray), 0, 255), alpha], -1).astype(np.uint8))
            mode = "LA"
        if mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
            mode = "RGBA"
        if mode in _ALPHA_MODES:
            rgba = image.convert("RGBA")
            base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(base, rgba).convert("RGB")
        return image.convert("RGB") if mode != "RGB" else image.copy()
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, TypeError) as e:
        raise ImageError(source, f"cannot be decoded ({e})") from e


def _decode(fp, source: str) -> Image.Image:
    try:
        with Image.open(fp) as im:
            im.load()
            return to_rgb(im, source)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(source, f"is not a readable image ({e})") from e


def _not_a_file(p: Path) -> str:
    """Why ``p`` cannot be opened as an image file: missing, a broken symlink, a symlink loop, a folder."""
    if p.is_symlink():
        try:
            os.stat(p)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "is a symbolic link loop (it points back to itself)"
            return f"is a broken symbolic link (its target {os.readlink(p)} does not exist)"
        if p.is_dir():
            target = Path(os.path.realpath(p))
            parent = Path(os.path.realpath(p.parent))
            if target == parent or target in parent.parents:
                return f"is a symbolic link loop (it points to {target}, a folder that contains it)"
    if p.is_dir():
        try:
            os.scandir(p).close()
        except OSError as e:
            return f"is a folder that cannot be read ({e.strerror})"
        return "is a folder, not an image file"
    return "does not exist or is not a file"


def open_image(path: Union[str, "os.PathLike[str]"]) -> Image.Image:
    """Open and fully decode an image file into RGB, or raise :class:`ImageError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(str(p), _not_a_file(p))
    if p.stat().st_size == 0:
        raise ImageError(str(p), "is empty (0 bytes)")
    return _decode(p, str(p))


def _array_layout(values: np.ndarray, channels_first: bool, source: str,
                  channels_last: Optional[bool] = None) -> np.ndarray:
    """An H×W or H×W×C array from H×W, H×W×C or C×H×W (``channels_last``: True H×W×C, False C×H×W, None: guess,
    C×H×W first when ``channels_first``)."""
    if values.ndim == 2:
        return values
    if values.ndim != 3:
        raise ImageError(source, f"has shape {tuple(values.shape)}; expected HxW, HxWxC or CxHxW (C = 1-4)")
    last, first = values.shape[-1] in (1, 2, 3, 4), values.shape[0] in (1, 2, 3, 4)
    if channels_last is not None:  # said explicitly: no guess
        if not (last if channels_last else first):
            layout = "HxWxC" if channels_last else "CxHxW"
            raise ImageError(source, f"has shape {tuple(values.shape)}; expected {layout} (C = 1-4)")
        last, first, channels_first = channels_last, not channels_last, not channels_last
    if first and (channels_first or not last):
        values = np.moveaxis(values, 0, -1)
    elif not last:
        raise ImageError(source, f"has shape {tuple(values.shape)}; expected HxW, HxWxC or CxHxW (C = 1-4)")
    return values[..., 0] if values.shape[-1] == 1 else values


def from_array(values: Any, source: str = "array", channels_last: Optional[bool] = None) -> Image.Image:
    """A numpy array or torch tensor (one image: H×W, H×W×C or C×H×W; ``channels_last`` says which) as an RGB
    image."""
    torch = sys.modules.get("torch")
    channels_first = False
    if torch is not None and isinstance(values, torch.Tensor):
        channels_first = True
        t = values.detach().cpu()
        values = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
    values = np.asarray(values)
    if values.size == 0:
        raise ImageError(source, f"has no pixels (shape {tuple(values.shape)})")
    values = _array_layout(values, channels_first, source, channels_last)
    # uint8 H×W / H×W×2 / H×W×3 / H×W×4 → Pillow's L / LA / RGB / RGBA
    return to_rgb(Image.fromarray(np.ascontiguousarray(_to_8bit(values, source))), source)


def _is_array(image: Any) -> bool:
    torch = sys.modules.get("torch")
    return isinstance(image, np.ndarray) or (torch is not None and isinstance(image, torch.Tensor))


def load_rgb(image: ImageInput, index: int = 0, source: Optional[str] = None, *,
             channels_last: Optional[bool] = None) -> Image.Image:
    """One image of any accepted kind (see :data:`ACCEPTED`) as the core's image (:data:`RGBImage`; one that
    already is one comes back as it is), or :class:`ImageError` saying why not (naming ``source``, default
    ``#index``). ``channels_last``: the layout of an array/tensor (True H×W×C, False C×H×W, None: guess)."""
    name = source or f"#{index}"
    if isinstance(image, Image.Image):
        return to_rgb(image, source or describe(image, index))
    if isinstance(image, (str, os.PathLike)):
        return open_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ImageError(name, "is empty (0 bytes)")
        return _decode(io.BytesIO(data), source or f"#{index} (bytes)")
    if _is_array(image):
        return from_array(image, name, channels_last)
    raise ImageError(name, f"is {'None' if image is None else type(image).__name__}; accepted: {ACCEPTED}")


def load_images(images: Any, *, channels_last: Optional[bool] = None,
                name: Optional[str] = None) -> List[Image.Image]:
    """The image edge: one image or a list of them (a 4-D array/tensor is a batch) as the core's images
    (:data:`RGBImage`); ``[]`` stays ``[]``, and an image that already is one is passed through (no copy).

    Args:
        images: see :data:`ACCEPTED` (a ComfyUI ``IMAGE`` is a float [B, H, W, C] tensor in 0..1).
        channels_last: layout of arrays/tensors: True H×W×C (B×H×W×C), False C×H×W, None: guess (numpy H×W×C,
            torch C×H×W when ambiguous).
        name: the batch's name in errors ("image 1 of the IMAGE batch: ..."); default "#1".
    """
    if images is None:
        raise ImageError("images", f"is None; accepted: {ACCEPTED}")
    if isinstance(images, (Image.Image, str, os.PathLike, bytes, bytearray, memoryview)):
        items: List[Any] = [images]
    elif _is_array(images):
        items = list(images) if images.ndim == 4 else [images]
    elif isinstance(images, (list, tuple)) or (hasattr(images, "__iter__") and not isinstance(images, dict)):
        items = list(images)
    else:
        raise ImageError("images", f"is {type(images).__name__}; accepted: {ACCEPTED}")
    return [load_rgb(im, i, f"{i} of the {name} batch" if name else None, channels_last=channels_last)
            for i, im in enumerate(items)]


def _walk(folder: Path, recursive: bool) -> List[Path]:
    """Image files under ``folder``; broken symlinks with an image extension, symlink loops and unreadable
    folders are returned too, so that opening them reports them as failed."""
    found: List[Path] = []
    visited: Set[Tuple[int, int]] = set()

    def visit(d: Path, ancestors: Tuple[Tuple[int, int], ...]) -> None:
        try:
            st = os.stat(d)
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            found.append(d)  # unreadable folder: reported when opened
            return
        ident = (st.st_dev, st.st_ino)
        if ident in visited:
            return
        visited.add(ident)
        for e in entries:
            path = Path(e.path)
            try:
                is_dir = e.is_dir()  # follows symlinks; False for broken links and loops
            except OSError:
                is_dir = False
            if is_dir:
                if not recursive:
                    continue
                try:
                    sub = os.stat(path)
                except OSError:
                    found.append(path)
                    continue
                if (sub.st_dev, sub.st_ino) in ancestors + (ident,):
                    found.append(path)  # a link to a folder that contains it: a loop
                else:
                    visit(path, ancestors + (ident,))
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                try:
                    is_file = e.is_file()
                except OSError:
                    is_file = False
                if is_file or e.is_symlink():  # a broken link or link loop is reported, a sub-folder skipped
                    found.append(path)

    visit(folder, ())
    return sorted(found)


def iter_image_files(paths: Iterable[Union[str, "os.PathLike[str]"]], recursive: bool = True) -> Iterator[Path]:
    """Image files named directly, and those inside folders (subfolders too when ``recursive``), sorted per
    folder. Symlinks are followed; a broken symlink or a symlink loop inside a folder is yielded too (opening
    it raises an :class:`ImageError` that says which), so a batch reports it instead of skipping it silently."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from _walk(p, recursive)
        else:
            yield p
