"""Loaders that turn files on disk into one `shared.dataset.Dataset`.

Formats: fastai's PASCAL_2007 (multi-label images), fastai's BIWI_HEAD_POSE
(head-centre regression), tabular CSV, and two scikit-learn datasets. Each
loader checks its whole input first and raises `DataError` (naming the file,
the 1-based data row and what was expected) before it writes anything,
the decoded-image cache included.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from shared.config import TASKS
from shared.dataset import Dataset
from shared.errors import DataError, UsageError
from shared.images import load_images

__all__ = [
    "PASCAL_COLUMNS",
    "IS_VALID",
    "FORMATS",
    "SKLEARN_NAMES",
    "load_pascal",
    "load_biwi",
    "load_csv",
    "load_sklearn",
    "load",
    "point_pixels",
    "parse_bool",
]

# fastai PASCAL_2007 train.csv header, exactly.
PASCAL_COLUMNS = ("fname", "labels", "is_valid")
# The split column (fastai's convention, also honoured in tabular CSVs).
IS_VALID = "is_valid"
# Text accepted in is_valid (compared lower-cased).
_TRUE_TEXT = ("true", "1")
_FALSE_TEXT = ("false", "0")
# A labels cell holding one of these means "no label" (pandas writes NaN as "").
_NO_LABEL_TEXT = ("", "nan")
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
DIGITS_PIXEL_MAX = 16.0
SKLEARN_NAMES = ("digits", "breast_cancer")
FORMATS = ("pascal", "biwi", "csv", *SKLEARN_NAMES, "builtin-multilabel", "builtin-regression")
POINT_SCALING = "fastai PointScaler: scaled = pixel / (size / 2) - 1, size = original (W, H); pixel = (scaled + 1) * size / 2"


# ---------------------------------------------------------------- CSV helpers
def _read_csv(csv: Path) -> pd.DataFrame:
    """Every cell as text (no NaN guessing), after checking the file has rows."""
    if not csv.is_file():
        raise DataError("file not found; expected a CSV file", path=csv)
    if csv.stat().st_size == 0:
        raise DataError("empty file (0 bytes); expected a header row and at least one data row", path=csv)
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataError("no header row; expected a header row and at least one data row", path=csv) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse as CSV ({exc})", path=csv) from None
    if len(df) == 0:
        raise DataError(f"no data rows under the header {list(df.columns)}; expected at least one", path=csv)
    return df


def _require_columns(df: pd.DataFrame, wanted, csv: Path) -> None:
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; columns present: {list(df.columns)}", path=csv)


def _reject_extra_columns(df: pd.DataFrame, allowed, csv: Path) -> None:
    extra = [c for c in df.columns if c not in allowed]
    if extra:
        raise DataError(f"unexpected column(s) {extra}; expected only {list(allowed)}", path=csv)


def parse_bool(value, column: str, csv, row: int) -> bool:
    """A split flag: True/False, true/false or 1/0 (as text or as Python values).

    Args:
        value: the cell.
        column: its column name (for the message).
        csv: the file (for the message).
        row: the 1-based data row (for the message).

    Returns:
        The flag.

    Raises:
        DataError: anything else.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE_TEXT:
        return True
    if text in _FALSE_TEXT:
        return False
    raise DataError(f"column {column!r} must be True or False (or true/false/1/0); got {value!r}", path=csv, row=row)


def _parse_split(values, csv: Path) -> np.ndarray:
    return np.array([parse_bool(v, IS_VALID, csv, r) for r, v in enumerate(values, start=1)], dtype=bool)


def _require_both_splits(is_valid: np.ndarray, source) -> None:
    n_valid = int(is_valid.sum())
    if n_valid == 0 or n_valid == len(is_valid):
        raise DataError(
            f"needs at least one training and one validation item; got {len(is_valid) - n_valid} training "
            f"and {n_valid} validation",
            path=source,
        )


def _sorted_labels(values) -> list:
    """Sorted vocabulary: numerically when every label is a number, else as text."""
    values = list(values)
    try:
        keys = [float(v) for v in values]
    except ValueError:
        return sorted(values)
    if any(math.isnan(k) for k in keys):
        return sorted(values)
    return [v for _, v in sorted(zip(keys, values))]


def _check_vocab(vocab) -> list:
    vocab = [str(v) for v in vocab]
    if len(set(vocab)) != len(vocab):
        raise UsageError(f"vocab has duplicate entries: {vocab}")
    return vocab


def _split(ds_kwargs: dict, x, y, items, is_valid) -> dict:
    """Dataset keyword arguments for the train/valid split of x, y, items."""
    train = ~is_valid
    ds_kwargs.update(
        x_train=x[train],
        y_train=y[train],
        x_valid=x[is_valid],
        y_valid=y[is_valid],
        items_train=[it for it, v in zip(items, is_valid) if not v],
        items_valid=[it for it, v in zip(items, is_valid) if v],
    )
    return ds_kwargs


# ---------------------------------------------------------------- PASCAL
def _row_labels(cell: str) -> list:
    if cell.strip().lower() in _NO_LABEL_TEXT:
        return []
    return list(dict.fromkeys(cell.split()))


def _multilabel_vocab(rows_labels, vocab, csv: Path) -> list:
    if vocab is None:
        classes = sorted({lab for labs in rows_labels for lab in labs})
        if not classes:
            raise DataError("no labels in any row; expected at least one class name", path=csv)
        return classes
    classes = _check_vocab(vocab)
    known = set(classes)
    for row, labs in enumerate(rows_labels, start=1):
        for lab in labs:
            if lab not in known:
                raise DataError(f"label {lab!r} is not in the given vocabulary {classes}", path=csv, row=row)
    return classes


def load_pascal(path, image_size: int = 32, vocab=None, *, cache_dir=None) -> Dataset:
    """fastai PASCAL_2007 layout: train.csv (fname,labels,is_valid) + train/<fname>.

    Args:
        path: the dataset folder.
        image_size: images are resized to (image_size, image_size).
        vocab: class names to use (in this order); None means the sorted
            unique labels of the CSV.
        cache_dir: decoded-image cache folder (None: the default).

    Returns:
        A multilabel Dataset: multi-hot float32 y, items = fname.

    Raises:
        DataError: layout, CSV content, label or image problems.
    """
    root = Path(path)
    csv = root / "train.csv"
    df = _read_csv(csv)
    _require_columns(df, PASCAL_COLUMNS, csv)
    _reject_extra_columns(df, PASCAL_COLUMNS, csv)
    fnames = [f.strip() for f in df["fname"]]
    for row, fname in enumerate(fnames, start=1):
        if not fname:
            raise DataError("column 'fname' is empty; expected an image file name", path=csv, row=row)
    rows_labels = [_row_labels(cell) for cell in df["labels"]]
    is_valid = _parse_split(df[IS_VALID], csv)
    classes = _multilabel_vocab(rows_labels, vocab, csv)
    _require_both_splits(is_valid, csv)
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(df), len(classes)), dtype=np.float32)
    for r, labs in enumerate(rows_labels):
        y[r, [index[lab] for lab in labs]] = 1.0
    image_dir = root / "train"
    rows = list(range(1, len(df) + 1))
    x = load_images([image_dir / f for f in fnames], image_size, cache_dir, source=csv, rows=rows)
    meta = {"image_size": image_size, "image_dir": str(image_dir), "csv": str(csv), "layout": "NHWC"}
    kw = dict(name=f"pascal:{root}", task="multilabel", classes=classes, source=str(root), format="pascal", meta=meta)
    return Dataset(**_split(kw, x, y, fnames, is_valid))


# ---------------------------------------------------------------- BIWI
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
    _require_both_splits(is_valid, root)
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
    return Dataset(**_split(kw, x, y, items, is_valid))


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
def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def _cell_problem(column: str, raw: str, what: str) -> str:
    if raw.strip() == "":
        return f"column {column!r} has an empty value; expected a finite number ({what})"
    try:
        float(raw)
    except ValueError:
        return f"column {column!r} must be numeric ({what}); got {raw!r}"
    return f"column {column!r} must be a finite number ({what}); got {raw!r}"


def _numeric_block(df: pd.DataFrame, columns: list, csv: Path, what: str) -> np.ndarray:
    """float64 (N, len(columns)); the first non-finite cell (row order) raises."""
    block = np.empty((len(df), len(columns)), dtype=np.float64)
    first_bad = None
    for j, col in enumerate(columns):
        block[:, j] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(block[:, j]))
        if bad.size and (first_bad is None or bad[0] < first_bad[0]):
            first_bad = (int(bad[0]), col)
    if first_bad is not None:
        r, col = first_bad
        raise DataError(_cell_problem(col, df[col].iloc[r], what), path=csv, row=r + 1)
    return block


def _label_column(df: pd.DataFrame, col: str, csv: Path) -> list:
    values = [v.strip() for v in df[col]]
    for row, v in enumerate(values, start=1):
        if not v:
            raise DataError(f"target column {col!r} has an empty value; expected a class label", path=csv, row=row)
    return values


def _encode(values: list, classes: list, col: str, csv: Path) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    for row, v in enumerate(values, start=1):
        if v not in index:
            raise DataError(f"label {v!r} in column {col!r} is not in the vocabulary {classes}", path=csv, row=row)
    return np.array([index[v] for v in values], dtype=np.int64)


def _single_target(targets: list, task: str) -> str:
    if len(targets) != 1:
        raise UsageError(f"task {task!r} takes exactly one target column; got {targets}")
    return targets[0]


def _multiclass_targets(df, targets, csv, vocab):
    col = _single_target(targets, "multiclass")
    values = _label_column(df, col, csv)
    classes = _check_vocab(vocab) if vocab is not None else _sorted_labels(set(values))
    return _encode(values, classes, col, csv), classes


def _binary_targets(df, targets, csv, vocab):
    col = _single_target(targets, "binary")
    values = _label_column(df, col, csv)
    if vocab is not None:
        classes = _check_vocab(vocab)
        if len(classes) != 2:
            raise UsageError(f"a binary vocab is [negative, positive]; got {classes}")
    else:
        classes = _sorted_labels(set(values))
        if len(classes) != 2:
            raise DataError(
                f"binary target column {col!r} must hold exactly 2 distinct values; got {len(classes)}: {classes[:10]}",
                path=csv,
            )
    return _encode(values, classes, col, csv).astype(np.float32).reshape(-1, 1), classes


def _multilabel_targets(df, targets, csv, vocab):
    if vocab is not None and list(vocab) != list(targets):
        raise UsageError(f"multilabel classes are the target column names {targets}; got vocab={list(vocab)}")
    y = np.empty((len(df), len(targets)), dtype=np.float32)
    for j, col in enumerate(targets):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
        if bad.size:
            raw = df[col].iloc[bad[0]]
            raise DataError(f"column {col!r} must be 0 or 1 (multilabel target); got {raw!r}", path=csv, row=int(bad[0]) + 1)
        y[:, j] = values
    return y, list(targets)


def _regression_targets(df, targets, csv, vocab):
    if vocab is not None:
        raise UsageError("vocab does not apply to regression")
    return _numeric_block(df, targets, csv, "regression target").astype(np.float32), list(targets)


_TARGET_BUILDERS = {
    "multiclass": _multiclass_targets,
    "binary": _binary_targets,
    "multilabel": _multilabel_targets,
    "regression": _regression_targets,
}


def _seeded_split(n: int, valid_fraction: float, seed: int, source, stratify=None) -> np.ndarray:
    if not 0 < valid_fraction < 1:
        raise UsageError(f"valid_fraction must be between 0 and 1 (exclusive); got {valid_fraction}")
    try:
        _, valid_idx = train_test_split(
            np.arange(n), test_size=valid_fraction, random_state=seed, shuffle=True, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(f"cannot split {n} rows with valid_fraction={valid_fraction} ({exc})", path=source) from None
    is_valid = np.zeros(n, dtype=bool)
    is_valid[valid_idx] = True
    return is_valid


def _standardise(x: np.ndarray, is_valid: np.ndarray):
    """Scale with the TRAIN split's mean/std (population std; 0 -> 1)."""
    mean = x[~is_valid].mean(axis=0)
    std = x[~is_valid].std(axis=0)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32), mean, std


def _csv_columns(df, target, features, csv):
    columns = list(df.columns)
    if target is None:
        candidates = [c for c in columns if c != IS_VALID]
        if not candidates:
            raise DataError(f"no target column; columns present: {columns}", path=csv)
        targets = [candidates[-1]]
    else:
        targets = _as_list(target)
    if features is None:
        feats = [c for c in columns if c not in targets and c != IS_VALID]
    else:
        feats = _as_list(features)
    overlap = [c for c in feats if c in targets]
    if overlap:
        raise UsageError(f"column(s) {overlap} cannot be both feature and target")
    _require_columns(df, targets + feats, csv)
    if features is not None:
        _reject_extra_columns(df, feats + targets + [IS_VALID], csv)
    if not feats:
        raise DataError(f"no feature columns besides the target {targets}; columns present: {columns}", path=csv)
    return targets, feats


def load_csv(path, task: str, target=None, features=None, valid_fraction: float = 0.2, seed: int = 0, vocab=None) -> Dataset:
    """A tabular CSV: numeric features, targets per task, optional is_valid column.

    Args:
        path: the CSV file (read with pandas).
        task: one of shared.config.TASKS.
        target: target column name(s); default the last column (is_valid aside).
        features: feature columns; default every other column except is_valid.
            Given explicitly, any other column is an error.
        valid_fraction: validation share of a seeded split when there is no
            is_valid column.
        seed: the split's random_state.
        vocab: class names (multiclass) or [negative, positive] (binary).

    Returns:
        A Dataset with features standardised by the training split's mean/std
        (in meta), items = the 1-based data row as text.

    Raises:
        DataError: file, column or cell problems.
        UsageError: inconsistent arguments.
    """
    if task not in TASKS:
        raise UsageError(f"task must be one of {TASKS}; got {task!r}")
    csv = Path(path)
    df = _read_csv(csv)
    targets, feats = _csv_columns(df, target, features, csv)
    x = _numeric_block(df, feats, csv, "feature")
    y, classes = _TARGET_BUILDERS[task](df, targets, csv, vocab)
    if IS_VALID in df.columns:
        is_valid = _parse_split(df[IS_VALID], csv)
        split = "is_valid column"
    else:
        is_valid = _seeded_split(len(df), valid_fraction, seed, csv)
        split = f"train_test_split(test_size={valid_fraction}, random_state={seed})"
    _require_both_splits(is_valid, csv)
    x, mean, std = _standardise(x, is_valid)
    meta = {
        "feature_names": feats,
        "target_columns": targets,
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "split": split,
    }
    items = [str(r) for r in range(1, len(df) + 1)]
    kw = dict(name=f"csv:{csv}", task=task, classes=classes, source=str(csv), format="csv", meta=meta)
    return Dataset(**_split(kw, x, y, items, is_valid))


# ---------------------------------------------------------------- sklearn
def load_sklearn(name: str, seed: int = 0, valid_fraction: float = 0.2) -> Dataset:
    """scikit-learn's digits (multiclass) or breast_cancer (binary), stratified split.

    Args:
        name: "digits" (x = pixels / 16, (N, 64)) or "breast_cancer"
            (standardised with the training split's statistics).
        seed: train_test_split random_state.
        valid_fraction: validation share.

    Returns:
        The Dataset; items are the sklearn sample indices as text.
    """
    if name == "digits":
        bunch = load_digits()
        x = (bunch.data / DIGITS_PIXEL_MAX).astype(np.float32)
        y = bunch.target.astype(np.int64)
        classes = [str(c) for c in bunch.target_names]
        task, meta = "multiclass", {"pixel_scale": DIGITS_PIXEL_MAX}
    elif name == "breast_cancer":
        bunch = load_breast_cancer()
        x, y = bunch.data.astype(np.float64), bunch.target
        classes = [str(c) for c in bunch.target_names]
        task, meta = "binary", {"feature_names": [str(f) for f in bunch.feature_names]}
    else:
        raise UsageError(f"sklearn dataset must be one of {SKLEARN_NAMES}; got {name!r}")
    source = f"sklearn:{name}"
    is_valid = _seeded_split(len(x), valid_fraction, seed, source, stratify=y)
    if task == "binary":
        x, mean, std = _standardise(x, is_valid)
        meta.update(feature_mean=mean.tolist(), feature_std=std.tolist())
        y = y.astype(np.float32).reshape(-1, 1)
    meta["split"] = f"train_test_split(test_size={valid_fraction}, random_state={seed}, stratify=y)"
    items = [str(i) for i in range(len(x))]
    kw = dict(name=name, task=task, classes=classes, source=source, format="sklearn", meta=meta)
    return Dataset(**_split(kw, x, y, items, is_valid))


# ---------------------------------------------------------------- dispatch
def _builtin_loader(name: str):
    def loader(source=None, **kw):
        from shared.builtin import builtin_dataset  # builtin imports this module

        return builtin_dataset(name, data_dir=source, **kw)

    return loader


_LOADERS = {
    "pascal": lambda source, **kw: load_pascal(source, **kw),
    "biwi": lambda source, **kw: load_biwi(source, **kw),
    "csv": lambda source, **kw: load_csv(source, **kw),
    "digits": lambda source=None, **kw: load_sklearn("digits", **kw),
    "breast_cancer": lambda source=None, **kw: load_sklearn("breast_cancer", **kw),
    "builtin-multilabel": _builtin_loader("multilabel"),
    "builtin-regression": _builtin_loader("regression"),
}


def _target_function(format: str):
    if format in ("pascal", "biwi", "csv"):
        return {"pascal": load_pascal, "biwi": load_biwi, "csv": load_csv}[format], 1
    if format in SKLEARN_NAMES:
        return load_sklearn, 1
    from shared.builtin import builtin_dataset

    return builtin_dataset, 2


def load(source, format: str, **kw) -> Dataset:
    """Load any supported format (the CLI's entry point).

    Args:
        source: a folder (pascal, biwi; builtin-*: where to generate/read,
            None for the default), a CSV file (csv), ignored for sklearn sets.
        format: one of FORMATS.
        **kw: options of the format's loader (image_size, vocab, task, ...).

    Returns:
        The Dataset.

    Raises:
        UsageError: unknown format, missing source or an option the format
            does not take.
    """
    if format not in FORMATS:
        raise UsageError(f"format must be one of {FORMATS}; got {format!r}")
    if format in ("pascal", "biwi", "csv") and source is None:
        raise UsageError(f"format {format!r} needs a source path")
    fn, n_fixed = _target_function(format)
    params = list(inspect.signature(fn).parameters)[n_fixed:]
    unknown = sorted(set(kw) - set(params))
    if unknown:
        raise UsageError(f"format {format!r} does not take option(s) {unknown}; it takes {params}")
    return _LOADERS[format](source, **kw)
