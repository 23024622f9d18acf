"""fastai's BIWI_HEAD_POSE folders: the head centre of each frame, projected
with the person's camera intrinsics (fastbook chapter 6), as a regression Dataset.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.data.dataset import Dataset
from shared.core.errors import DataError, UsageError
from shared.data.images import load_images
from shared.data.loader_rows import require_both_splits, split_dataset

__all__ = ["BIWI_CAL", "CAL_INTRINSIC_ROWS", "POSE_SKIP_HEADER", "POINT_SCALING", "load_biwi", "point_pixels"]

# BIWI layout: 2-digit person folders, per-frame jpg + pose, one rgb.cal each.
_PERSON_DIR = re.compile(r"^\d{2}$")
_FRAME_FILE = re.compile(r"^(frame_\d+)_(rgb\.jpg|pose\.txt)$")
BIWI_CAL = "rgb.cal"
_RGB_SUFFIX = "rgb.jpg"
_POSE_SUFFIX = "pose.txt"
# fastbook ch.6 reads rgb.cal with np.genfromtxt(skip_footer=6): the 3x3
# intrinsics are the first three rows (distortion, 3 rotation rows, translation
# and image size follow). Here the first CAL_INTRINSIC_ROWS non-blank rows are
# taken, so a file with a missing or an extra trailing row still reads right.
# np.genfromtxt(pose.txt, skip_header=3) skips the 3 rotation rows.
CAL_INTRINSIC_ROWS = 3
POSE_SKIP_HEADER = 3
# load_digits pixels are integers 0..16.
POINT_SCALING = "fastai PointScaler: scaled = pixel / (size / 2) - 1, size = original (W, H); pixel = (scaled + 1) * size / 2"


def _genfromtxt(path: Path, what: str, **kw) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.genfromtxt(path, **kw)
    except (ValueError, IndexError) as exc:
        raise DataError(f"cannot parse {what} ({exc})", path=path) from None


def _read_cal(folder: Path) -> np.ndarray:
    cal_file = folder / BIWI_CAL
    if not cal_file.is_file():
        raise DataError(
            f"missing {BIWI_CAL}; expected each BIWI person folder to hold its camera calibration "
            "(3x3 intrinsics, distortion, rotation, translation, image size)",
            path=folder,
        )
    try:
        lines = cal_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read camera calibration ({exc})", path=cal_file) from None
    rows = [line.split() for line in lines if line.strip()][:CAL_INTRINSIC_ROWS]
    try:
        cal = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except ValueError:
        cal = np.empty((0,))
    if cal.shape != (3, 3) or not np.isfinite(cal).all():
        raise DataError(f"expected a 3x3 intrinsics matrix of numbers in the first {CAL_INTRINSIC_ROWS} rows; "
                        f"got {[' '.join(r) for r in rows]}", path=cal_file)
    return cal


def _read_pose(pose_file: Path) -> np.ndarray:
    ctr = _genfromtxt(pose_file, "head pose", skip_header=POSE_SKIP_HEADER)
    if ctr.shape != (3,) or not np.isfinite(ctr).all() or ctr[2] == 0:
        raise DataError(
            f"expected 3 rotation rows, a blank line and a translation row 'x y z' with z != 0; got {ctr!r}",
            path=pose_file,
        )
    return ctr


def _image_size(image: Path) -> tuple:
    try:
        with Image.open(image) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image ({exc}); expected a readable image file", path=image) from None


def _person_frames(folder: Path) -> list:
    """(jpg, pose) pairs of one person folder, sorted by frame name."""
    found = {_RGB_SUFFIX: {}, _POSE_SUFFIX: {}}
    for f in folder.iterdir():
        m = _FRAME_FILE.match(f.name)
        if m:
            found[m.group(2)][m.group(1)] = f
    jpgs, poses = found[_RGB_SUFFIX], found[_POSE_SUFFIX]
    lonely_jpgs, lonely_poses = sorted(set(jpgs) - set(poses)), sorted(set(poses) - set(jpgs))
    if lonely_jpgs:
        stem = lonely_jpgs[0]
        raise DataError(f"image has no pose file {stem}_{_POSE_SUFFIX}", path=jpgs[stem])
    if lonely_poses:
        stem = lonely_poses[0]
        raise DataError(f"pose file has no image {stem}_{_RGB_SUFFIX}", path=poses[stem])
    if not jpgs:
        raise DataError(f"no frame_*_{_RGB_SUFFIX} images; expected BIWI frames", path=folder)
    return [(jpgs[s], poses[s]) for s in sorted(jpgs)]


def _centre(cal: np.ndarray, ctr: np.ndarray) -> tuple:
    """fastbook ch.6 get_ctr: the head centre projected into image pixels."""
    c1 = ctr[0] * cal[0][0] / ctr[2] + cal[0][2]
    c2 = ctr[1] * cal[1][1] / ctr[2] + cal[1][2]
    return c1, c2


def _person_name(valid_person) -> str:
    if isinstance(valid_person, (int, np.integer)):
        return f"{int(valid_person):02d}"
    return str(valid_person)


def load_biwi(path, image_size: int = 32, valid_person="13", *, cache_dir=None) -> Dataset:
    """fastai BIWI_HEAD_POSE layout: person folders of frame_*_rgb.jpg + frame_*_pose.txt + rgb.cal.

    The target is the head centre in image pixels (fastbook ch.6), scaled to
    [-1, 1] like fastai's PointScaler with the ORIGINAL image size (W, H).

    Args:
        path: the dataset folder holding 2-digit person folders.
        image_size: images are resized to (image_size, image_size).
        valid_person: the person folder used for validation.
        cache_dir: decoded-image cache folder (None: the default).

    Returns:
        A regression Dataset, classes ["x", "y"], items = "<person>/<jpg name>".

    Raises:
        DataError: layout, calibration, pose or image problems.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError("folder not found; expected a BIWI_HEAD_POSE folder of person folders 01/ .. 24/", path=root)
    persons = sorted(d for d in root.iterdir() if d.is_dir() and _PERSON_DIR.match(d.name))
    names = [d.name for d in persons]
    if not persons:
        raise DataError("no person folders; expected 2-digit folders such as 01/ .. 24/", path=root)
    valid_person = _person_name(valid_person)
    if valid_person not in names:
        raise DataError(f"validation person folder {valid_person!r} not found; person folders present: {names}", path=root)
    items, pixels, sizes, jpgs, is_valid = [], [], [], [], []
    for folder in persons:
        cal = _read_cal(folder)
        for jpg, pose in _person_frames(folder):
            pixels.append(_centre(cal, _read_pose(pose)))
            sizes.append(_image_size(jpg))
            jpgs.append(jpg)
            items.append(f"{folder.name}/{jpg.name}")
            is_valid.append(folder.name == valid_person)
    is_valid = np.array(is_valid, dtype=bool)
    require_both_splits(is_valid, root)
    size_arr = np.array(sizes, dtype=np.float64)
    y = (np.array(pixels, dtype=np.float64) / (size_arr / 2) - 1).astype(np.float32)
    x = load_images(jpgs, image_size, cache_dir)
    meta = {
        "image_size": image_size,
        "layout": "NHWC",
        "valid_person": valid_person,
        "persons": names,
        "point_scaling": POINT_SCALING,
        "original_sizes": {
            "train": [list(s) for s, v in zip(sizes, is_valid) if not v],
            "valid": [list(s) for s, v in zip(sizes, is_valid) if v],
        },
    }
    kw = dict(name=f"biwi:{root}", task="regression", classes=["x", "y"], source=str(root), format="biwi", meta=meta)
    return Dataset(**split_dataset(kw, x, y, items, is_valid))


def point_pixels(dataset: Dataset, split: str = "valid") -> np.ndarray:
    """Undo the PointScaler: the (N, 2) targets of a split in original-image pixels.

    Args:
        dataset: a dataset whose meta has "original_sizes" (BIWI-style).
        split: "train" or "valid".

    Returns:
        float64 (N, 2) array of (x, y) pixel coordinates.
    """
    sizes = dataset.meta.get("original_sizes")
    if sizes is None:
        raise UsageError(f"dataset {dataset.name!r} has no point targets (meta lacks 'original_sizes')")
    y = getattr(dataset, f"y_{split}").astype(np.float64)
    size = np.array(sizes[split], dtype=np.float64).reshape(len(y), 2)
    return (y + 1) * size / 2


# ---------------------------------------------------------------- CSV
