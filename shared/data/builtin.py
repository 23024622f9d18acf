"""Built-in image datasets made from scikit-learn's real 8x8 digit scans.

Both are written to disk in the real fastai layouts and read back through
`shared.data.loaders`, so the built-in path exercises exactly the code a user's
PASCAL_2007 or BIWI_HEAD_POSE download goes through:

  - multilabel (PASCAL_2007 layout): 48x48 RGB PNG canvases cut into a 2x2
    grid of 24x24 slots; each image holds zero to three DIFFERENT digits
    (each upscaled x3 into its own slot), labelled with the digit names as
    words ("zero" .. "nine"). 15% of the images are empty (no label).
  - regression (BIWI_HEAD_POSE layout): 64x48 RGB JPEG frames with one digit
    (upscaled x2 to 16x16) pasted at a random place; the pose translation is
    chosen so that fastbook's projection gives back exactly the digit's centre.

Generation is deterministic: the same seed gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

from shared.core.atomic import atomic_dir
from shared.data.dataset import Dataset
from shared.core.errors import UsageError
from shared.data.loaders import BIWI_CAL, load_biwi, load_pascal

__all__ = [
    "DATA_ENV",
    "BUILTIN_VERSION",
    "BUILTIN_NAMES",
    "DIGIT_WORDS",
    "default_data_dir",
    "make_multilabel",
    "make_regression",
    "builtin_dataset",
]

# Environment variable naming the parent folder of the generated datasets.
DATA_ENV = "KTP_DATA_DIR"
# Bump when generation changes, so stale folders are not reused.
BUILTIN_VERSION = 1
BUILTIN_NAMES = ("multilabel", "regression")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# load_digits pixels are integers 0..16.
_DIGIT_MAX = 16.0
# Background noise level (0..255) under the digits, so images are not flat.
_NOISE_MAX = 40
# Digit colours are drawn per digit from [_COLOUR_MIN, 255] per channel.
_COLOUR_MIN = 128

# multilabel: 48x48 canvas = 2x2 slots of 24x24, digits upscaled x3 (8 -> 24).
ML_CANVAS = 48
ML_SLOT = 24
ML_SLOTS = ((0, 0), (ML_SLOT, 0), (0, ML_SLOT), (ML_SLOT, ML_SLOT))  # (left, top)
# Share of images holding 0, 1, 2 and 3 digits (0 digits = empty image).
ML_DIGIT_COUNT_SHARES = (0.15, 0.35, 0.30, 0.20)
ML_VALID_SHARE = 0.2
ML_ITEMS = 600

# regression: 64x48 frames (W x H), digits upscaled x2 (8 -> 16).
RG_WIDTH, RG_HEIGHT = 64, 48
RG_DIGIT = 16
# Made-up intrinsics: focal 500 px, principal point at the frame centre; every
# head sits at depth 1000. With these the translation tx = (u - cx) * 2 and the
# projection tx * 500 / 1000 + cx = u are exact in floating point.
RG_FOCAL = 500.0
RG_DEPTH = 1000.0
RG_PERSONS = ("01", "02", "03", "04", "05", "13")
RG_PER_PERSON = 100
RG_JPEG_QUALITY = 95


def default_data_dir() -> Path:
    """$KTP_DATA_DIR, else ~/.cache/keras-torch-parity/builtin."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "keras-torch-parity" / "builtin"


def _digit_patch(pixels: np.ndarray, size: int, colour: np.ndarray) -> np.ndarray:
    """One 8x8 digit scan as a (size, size, 3) uint8 coloured patch."""
    grey = Image.fromarray(np.round(pixels / _DIGIT_MAX * 255).astype(np.uint8), mode="L")
    grey = np.asarray(grey.resize((size, size), resample=Image.Resampling.BILINEAR), dtype=np.float64)
    return np.round(grey[..., None] / 255 * colour).astype(np.uint8)


def _paste(canvas: np.ndarray, patch: np.ndarray, left: int, top: int) -> None:
    h, w = patch.shape[:2]
    region = canvas[top : top + h, left : left + w]
    np.maximum(region, patch, out=region)


def _noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, _NOISE_MAX + 1, size=(height, width, 3), dtype=np.uint8)


def _digit_counts(n_items: int) -> np.ndarray:
    """How many digits each image holds (fixed shares, so counts are exact)."""
    counts = [int(round(share * n_items)) for share in ML_DIGIT_COUNT_SHARES]
    counts[1] += n_items - sum(counts)
    return np.repeat(np.arange(len(counts)), counts)


def make_multilabel(root, n_items: int = ML_ITEMS, seed: int = 0) -> Path:
    """Write a PASCAL_2007-style multi-label dataset: root/train.csv + root/train/*.png.

    Args:
        root: folder to write into (created if needed).
        n_items: number of images.
        seed: the numpy Generator seed; same seed, same bytes.

    Returns:
        root as a Path.
    """
    root = Path(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    by_class = [np.flatnonzero(digits.target == c) for c in range(len(DIGIT_WORDS))]
    rng = np.random.default_rng(seed)
    n_digits = rng.permutation(_digit_counts(n_items))
    is_valid = np.zeros(n_items, dtype=bool)
    is_valid[rng.choice(n_items, int(round(ML_VALID_SHARE * n_items)), replace=False)] = True
    rows = []
    for i, k in enumerate(n_digits):
        canvas = _noise(rng, ML_CANVAS, ML_CANVAS)
        classes = rng.choice(len(DIGIT_WORDS), size=k, replace=False)
        slots = rng.choice(len(ML_SLOTS), size=k, replace=False)
        for c, s in zip(classes, slots):
            sample = digits.images[rng.choice(by_class[c])]
            colour = rng.integers(_COLOUR_MIN, 256, size=3).astype(np.float64)
            _paste(canvas, _digit_patch(sample, ML_SLOT, colour), *ML_SLOTS[s])
        fname = f"{i:05d}.png"
        Image.fromarray(canvas, mode="RGB").save(root / "train" / fname, format="PNG")
        labels = " ".join(sorted(DIGIT_WORDS[c] for c in classes))
        rows.append((fname, labels, bool(is_valid[i])))
    df = pd.DataFrame(rows, columns=["fname", "labels", "is_valid"])
    df.to_csv(root / "train.csv", index=False)
    return root


def _rgb_cal_text() -> str:
    """rgb.cal in BIWI's layout: intrinsics, distortion, rotation, translation, size."""
    cx, cy = RG_WIDTH / 2, RG_HEIGHT / 2
    return (
        f"{RG_FOCAL:g} 0 {cx:g} \n0 {RG_FOCAL:g} {cy:g} \n0 0 1 \n\n"
        "0 0 0 0 \n\n"
        "1 0 0 \n0 1 0 \n0 0 1 \n\n"
        "0 0 0 \n\n"
        f"{RG_WIDTH} {RG_HEIGHT} \n"
    )


def _pose_text(u: float, v: float) -> str:
    """frame_*_pose.txt in BIWI's layout: 3 rotation rows, blank, translation."""
    tx = (u - RG_WIDTH / 2) * RG_DEPTH / RG_FOCAL
    ty = (v - RG_HEIGHT / 2) * RG_DEPTH / RG_FOCAL
    return f"1 0 0 \n0 1 0 \n0 0 1 \n\n{tx!r} {ty!r} {RG_DEPTH!r} \n\n"


def make_regression(root, n_per_person: int = RG_PER_PERSON, persons=RG_PERSONS, seed: int = 0) -> Path:
    """Write a BIWI_HEAD_POSE-style dataset: root/<person>/{rgb.cal, frame_*_rgb.jpg, frame_*_pose.txt}.

    The "head centre" is the pasted digit's centre in continuous pixel
    coordinates (pixel i spans [i, i+1)): left + 8, top + 8.

    Args:
        root: folder to write into (created if needed).
        n_per_person: frames per person folder.
        persons: person folder names.
        seed: the numpy Generator seed; same seed, same bytes.

    Returns:
        root as a Path.
    """
    root = Path(root)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for person in persons:
        folder = root / person
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BIWI_CAL).write_text(_rgb_cal_text())
        for i in range(n_per_person):
            canvas = _noise(rng, RG_HEIGHT, RG_WIDTH)
            sample = digits.images[rng.integers(len(digits.images))]
            colour = rng.integers(_COLOUR_MIN, 256, size=3).astype(np.float64)
            left = int(rng.integers(0, RG_WIDTH - RG_DIGIT + 1))
            top = int(rng.integers(0, RG_HEIGHT - RG_DIGIT + 1))
            _paste(canvas, _digit_patch(sample, RG_DIGIT, colour), left, top)
            stem = f"frame_{i:05d}"
            Image.fromarray(canvas, mode="RGB").save(folder / f"{stem}_rgb.jpg", format="JPEG", quality=RG_JPEG_QUALITY)
            centre = (left + RG_DIGIT / 2, top + RG_DIGIT / 2)
            (folder / f"{stem}_pose.txt").write_text(_pose_text(*centre))
    return root


def builtin_dataset(name: str, data_dir=None, image_size: int = 32, *, cache_dir=None) -> Dataset:
    """Generate (once) and load a built-in dataset.

    Args:
        name: "multilabel" or "regression".
        data_dir: the dataset folder; None means
            default_data_dir() / "<name>-v<BUILTIN_VERSION>". Generated into a
            temporary sibling and renamed into place only when complete.
        image_size: images are resized to (image_size, image_size).
        cache_dir: decoded-image cache folder (None: the default).

    Returns:
        The Dataset, format "builtin-<name>".
    """
    if name not in BUILTIN_NAMES:
        raise UsageError(f"built-in dataset must be one of {BUILTIN_NAMES}; got {name!r}")
    folder = Path(data_dir) if data_dir is not None else default_data_dir() / f"{name}-v{BUILTIN_VERSION}"
    make = make_multilabel if name == "multilabel" else make_regression
    if not folder.exists():
        with atomic_dir(folder) as tmp:
            make(tmp, seed=0)
    if name == "multilabel":
        ds = load_pascal(folder, image_size, vocab=sorted(DIGIT_WORDS), cache_dir=cache_dir)
    else:
        ds = load_biwi(folder, image_size, valid_person="13", cache_dir=cache_dir)
    fmt = f"builtin-{name}"
    meta = dict(ds.meta, generator={"version": BUILTIN_VERSION, "seed": 0, "made_from": "sklearn.datasets.load_digits"})
    return dataclasses.replace(ds, name=fmt, format=fmt, meta=meta)
