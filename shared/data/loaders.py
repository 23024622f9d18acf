"""Loaders that turn files on disk into one `shared.data.dataset.Dataset`.

Formats: fastai's PASCAL_2007 (multi-label images), fastai's BIWI_HEAD_POSE
(head-centre regression), tabular CSV, and two scikit-learn datasets. Each
loader checks its whole input first and raises `DataError` (naming the file,
the 1-based data row and what was expected) before it writes anything,
the decoded-image cache included.

The BIWI loader lives in shared/data/loaders_biwi.py, the tabular one in
shared/data/loaders_csv.py, the checks they share in shared/data/loader_rows.py; this
module keeps PASCAL, the scikit-learn sets and the `load` dispatcher.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

from shared.data.dataset import Dataset
from shared.core.errors import DataError, UsageError
from shared.data.images import load_images
from shared.data.loader_rows import (IS_VALID, check_vocab, parse_bool, parse_split, read_csv, reject_extra_columns,
                                require_both_splits, require_columns, seeded_split, split_dataset, standardise)
from shared.data.loader_rows import _NO_LABEL_TEXT
from shared.data.loaders_biwi import BIWI_CAL, POINT_SCALING, load_biwi, point_pixels
from shared.data.loaders_csv import load_csv

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
    "BIWI_CAL",
    "POINT_SCALING",
]

# fastai PASCAL_2007 train.csv header, exactly.
PASCAL_COLUMNS = ("fname", "labels", "is_valid")
DIGITS_PIXEL_MAX = 16.0
SKLEARN_NAMES = ("digits", "breast_cancer")
FORMATS = ("pascal", "biwi", "csv", *SKLEARN_NAMES, "builtin-multilabel", "builtin-regression")


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
    classes = check_vocab(vocab)
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
    df = read_csv(csv)
    require_columns(df, PASCAL_COLUMNS, csv)
    reject_extra_columns(df, PASCAL_COLUMNS, csv)
    fnames = [f.strip() for f in df["fname"]]
    for row, fname in enumerate(fnames, start=1):
        if not fname:
            raise DataError("column 'fname' is empty; expected an image file name", path=csv, row=row)
    rows_labels = [_row_labels(cell) for cell in df["labels"]]
    is_valid = parse_split(df[IS_VALID], csv)
    classes = _multilabel_vocab(rows_labels, vocab, csv)
    require_both_splits(is_valid, csv)
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(df), len(classes)), dtype=np.float32)
    for r, labs in enumerate(rows_labels):
        y[r, [index[lab] for lab in labs]] = 1.0
    image_dir = root / "train"
    rows = list(range(1, len(df) + 1))
    x = load_images([image_dir / f for f in fnames], image_size, cache_dir, source=csv, rows=rows)
    meta = {"image_size": image_size, "image_dir": str(image_dir), "csv": str(csv), "layout": "NHWC"}
    kw = dict(name=f"pascal:{root}", task="multilabel", classes=classes, source=str(root), format="pascal", meta=meta)
    return Dataset(**split_dataset(kw, x, y, fnames, is_valid))


# ---------------------------------------------------------------- BIWI


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
    is_valid = seeded_split(len(x), valid_fraction, seed, source, stratify=y)
    if task == "binary":
        x, mean, std = standardise(x, is_valid)
        meta.update(feature_mean=mean.tolist(), feature_std=std.tolist())
        y = y.astype(np.float32).reshape(-1, 1)
    meta["split"] = f"train_test_split(test_size={valid_fraction}, random_state={seed}, stratify=y)"
    items = [str(i) for i in range(len(x))]
    kw = dict(name=name, task=task, classes=classes, source=source, format="sklearn", meta=meta)
    return Dataset(**split_dataset(kw, x, y, items, is_valid))


# ---------------------------------------------------------------- dispatch
def _builtin_loader(name: str):
    def loader(source=None, **kw):
        from shared.data.builtin import builtin_dataset  # builtin imports this module

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
    from shared.data.builtin import builtin_dataset

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
