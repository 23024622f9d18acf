"""Image decoding with Pillow, and a cache of decoded stacks.

Every image becomes RGB float32 in [0, 1], shape (size, size, 3), channels
last, resized (squished, aspect ratio not kept) with Pillow's BILINEAR filter.
Mode rules:
  - RGBA, LA, PA and palette/RGB/L images with a transparency key are
    composited on WHITE (alpha is not just dropped: a transparent pixel's
    hidden colour is arbitrary, often black).
  - 16-bit and 32-bit integer greyscale (I;16*, I) are scaled from
    [0, 65535] to 8 bits (value / 257) before becoming grey RGB.
  - Everything else (L, P, 1, CMYK, YCbCr, F, ...) goes through Pillow's own
    `convert("RGB")`.
  - EXIF orientation is not applied (the stored pixel order is used, as
    fastai's PILImage.create does).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.core.atomic import atomic_write_bytes
from shared.core.errors import DataError

__all__ = [
    "CACHE_ENV",
    "CACHE_FORMAT_VERSION",
    "RESAMPLE",
    "default_cache_dir",
    "to_rgb",
    "load_image",
    "load_images",
    "cache_key",
]

# Environment variable naming the decoded-image cache folder.
CACHE_ENV = "KTP_CACHE_DIR"
# Bump when decoding changes (filter, mode rules, dtype), so old caches miss.
CACHE_FORMAT_VERSION = 1
# The one resize filter both frameworks' data come from.
RESAMPLE = Image.Resampling.BILINEAR
# Background that transparent pixels are composited onto.
ALPHA_BACKGROUND = (255, 255, 255)
# 16-bit greyscale -> 8 bits: 65535 / 257 == 255 exactly.
_SIXTEEN_TO_EIGHT = 257.0
_SIXTEEN_BIT_MAX = 65535
_INT_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# 8-bit channel maximum, for the [0, 1] scaling.
_CHANNEL_MAX = np.float32(255.0)


def default_cache_dir() -> Path:
    """$KTP_CACHE_DIR, else ~/.cache/keras-torch-parity/images."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "keras-torch-parity" / "images"


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow image to mode RGB following the module's mode rules.

    Args:
        img: a loaded Pillow image of any mode.

    Returns:
        A new (or the same, if already plain RGB) image in mode RGB.
    """
    if img.mode in _INT_GREY_MODES:
        grey = np.clip(np.asarray(img, dtype=np.float64), 0, _SIXTEEN_BIT_MAX)
        img = Image.fromarray(np.round(grey / _SIXTEEN_TO_EIGHT).astype(np.uint8), mode="L")
    has_key = "transparency" in img.info and img.mode in ("P", "L", "RGB")
    if img.mode in _ALPHA_MODES or has_key:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    return img.convert("RGB")


def load_image(path, size: int) -> np.ndarray:
    """Decode one image file to a (size, size, 3) float32 array in [0, 1].

    Args:
        path: the image file.
        size: output height and width in pixels.

    Returns:
        The resized RGB image, channels last.

    Raises:
        DataError: the file is missing, not an image, truncated or corrupt.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            rgb = to_rgb(img)
    except FileNotFoundError:
        raise DataError("image file not found", path=path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image ({exc}); expected a readable image file", path=path) from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample=RESAMPLE)
    return np.asarray(rgb, dtype=np.float32) / _CHANNEL_MAX


def cache_key(paths, size: int) -> str:
    """sha256 over (resolved path, byte size, mtime_ns) of each file, size and version.

    Args:
        paths: image files, in order (every one must exist).
        size: output size in pixels.

    Returns:
        A hex digest naming the cached stack.
    """
    entries = []
    for p in paths:
        st = os.stat(p)
        entries.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": CACHE_FORMAT_VERSION, "size": int(size), "files": entries})
    return hashlib.sha256(blob.encode()).hexdigest()


def load_images(paths, size: int, cache_dir=None, *, source=None, rows=None, use_cache: bool = True) -> np.ndarray:
    """Decode many images into one (N, size, size, 3) float32 stack, with a cache.

    The stack is stored as `<cache_dir>/<cache_key>.npy`; a later call with the
    same files (same resolved paths, byte sizes and mtimes) and size reads it
    back without decoding anything. Nothing is written unless every image
    decodes.

    Args:
        paths: image files, in order.
        size: output height and width in pixels.
        cache_dir: cache folder; None means `default_cache_dir()`.
        source: the listing file (e.g. a CSV) the paths came from; errors then
            name it and the item's row, and mention the image.
        rows: 1-based row numbers in `source`, one per path.
        use_cache: False decodes and writes nothing to disk.

    Returns:
        The stacked images, channels last.

    Raises:
        DataError: an image is missing or cannot be decoded.
    """
    paths = [Path(p) for p in paths]
    for i, p in enumerate(paths):
        if not p.is_file():
            raise _item_error(DataError("image file not found", path=p), p, i, source, rows)
    if not paths:
        return np.zeros((0, size, size, 3), dtype=np.float32)
    cache_file = None
    if use_cache:
        cache_file = Path(cache_dir or default_cache_dir()) / f"{cache_key(paths, size)}.npy"
        cached = _read_cache(cache_file, (len(paths), size, size, 3))
        if cached is not None:
            return cached
    stack = np.empty((len(paths), size, size, 3), dtype=np.float32)
    for i, p in enumerate(paths):
        try:
            stack[i] = load_image(p, size)
        except DataError as exc:
            raise _item_error(exc, p, i, source, rows) from None
    if cache_file is not None:
        buf = io.BytesIO()
        np.save(buf, stack, allow_pickle=False)
        atomic_write_bytes(cache_file, buf.getvalue())
    return stack


def _read_cache(cache_file: Path, shape: tuple):
    """The cached stack if present and well-formed, else None (decode again)."""
    try:
        arr = np.load(cache_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.shape != shape or arr.dtype != np.float32:
        return None
    return arr


def _item_error(exc: DataError, image: Path, index: int, source, rows) -> DataError:
    """Re-address an image error to the listing file and row, if there is one."""
    if source is None:
        return exc
    row = rows[index] if rows is not None else index + 1
    text = str(exc)
    reason = text[len(exc.path) + 2 :] if exc.path and exc.row is None else text
    return DataError(f"image {str(image)!r}: {reason}", path=source, row=row)
