"""Tabular CSV files as a Dataset: numeric features, targets of every task
(multiclass, binary, multi-label, regression), a seeded or an is_valid split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.data.config import TASKS
from shared.data.dataset import Dataset
from shared.core.errors import DataError, UsageError
from shared.data.loader_rows import (IS_VALID, check_vocab, read_csv, reject_extra_columns, require_both_splits,
                                require_columns, parse_split, seeded_split, sorted_labels, split_dataset, standardise)

__all__ = ["load_csv"]


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
    classes = check_vocab(vocab) if vocab is not None else sorted_labels(set(values))
    return _encode(values, classes, col, csv), classes


def _binary_targets(df, targets, csv, vocab):
    col = _single_target(targets, "binary")
    values = _label_column(df, col, csv)
    if vocab is not None:
        classes = check_vocab(vocab)
        if len(classes) != 2:
            raise UsageError(f"a binary vocab is [negative, positive]; got {classes}")
    else:
        classes = sorted_labels(set(values))
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
    require_columns(df, targets + feats, csv)
    if features is not None:
        reject_extra_columns(df, feats + targets + [IS_VALID], csv)
    if not feats:
        raise DataError(f"no feature columns besides the target {targets}; columns present: {columns}", path=csv)
    return targets, feats


def load_csv(path, task: str, target=None, features=None, valid_fraction: float = 0.2, seed: int = 0, vocab=None) -> Dataset:
    """A tabular CSV: numeric features, targets per task, optional is_valid column.

    Args:
        path: the CSV file (read with pandas).
        task: one of shared.data.config.TASKS.
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
    df = read_csv(csv)
    targets, feats = _csv_columns(df, target, features, csv)
    x = _numeric_block(df, feats, csv, "feature")
    y, classes = _TARGET_BUILDERS[task](df, targets, csv, vocab)
    if IS_VALID in df.columns:
        is_valid = parse_split(df[IS_VALID], csv)
        split = "is_valid column"
    else:
        is_valid = seeded_split(len(df), valid_fraction, seed, csv)
        split = f"train_test_split(test_size={valid_fraction}, random_state={seed})"
    require_both_splits(is_valid, csv)
    x, mean, std = standardise(x, is_valid)
    meta = {
        "feature_names": feats,
        "target_columns": targets,
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "split": split,
    }
    items = [str(r) for r in range(1, len(df) + 1)]
    kw = dict(name=f"csv:{csv}", task=task, classes=classes, source=str(csv), format="csv", meta=meta)
    return Dataset(**split_dataset(kw, x, y, items, is_valid))


# ---------------------------------------------------------------- sklearn
