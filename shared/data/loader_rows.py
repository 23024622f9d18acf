"""Checks shared by the loaders of shared/data/loaders.py, shared/data/loaders_biwi.py and
shared/data/loaders_csv.py: reading a CSV with row-numbered errors, required and
unknown columns, the is_valid split column, label vocabularies, seeded splits
and standardisation with the training split's statistics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from shared.core.errors import DataError, UsageError

__all__ = ["IS_VALID", "parse_bool", "read_csv", "require_columns", "reject_extra_columns", "parse_split",
           "require_both_splits", "sorted_labels", "check_vocab", "split_dataset", "seeded_split", "standardise"]

# The split column (fastai's convention, also honoured in tabular CSVs).
IS_VALID = "is_valid"
# Text accepted in is_valid (compared lower-cased).
_TRUE_TEXT = ("true", "1")
_FALSE_TEXT = ("false", "0")
# A labels cell holding one of these means "no label" (pandas writes NaN as "").
_NO_LABEL_TEXT = ("", "nan")


def read_csv(csv: Path) -> pd.DataFrame:
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


def require_columns(df: pd.DataFrame, wanted, csv: Path) -> None:
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; columns present: {list(df.columns)}", path=csv)


def reject_extra_columns(df: pd.DataFrame, allowed, csv: Path) -> None:
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


def parse_split(values, csv: Path) -> np.ndarray:
    return np.array([parse_bool(v, IS_VALID, csv, r) for r, v in enumerate(values, start=1)], dtype=bool)


def require_both_splits(is_valid: np.ndarray, source) -> None:
    n_valid = int(is_valid.sum())
    if n_valid == 0 or n_valid == len(is_valid):
        raise DataError(
            f"needs at least one training and one validation item; got {len(is_valid) - n_valid} training "
            f"and {n_valid} validation",
            path=source,
        )


def sorted_labels(values) -> list:
    """Sorted vocabulary: numerically when every label is a number, else as text."""
    values = list(values)
    try:
        keys = [float(v) for v in values]
    except ValueError:
        return sorted(values)
    if any(math.isnan(k) for k in keys):
        return sorted(values)
    return [v for _, v in sorted(zip(keys, values))]


def check_vocab(vocab) -> list:
    vocab = [str(v) for v in vocab]
    if len(set(vocab)) != len(vocab):
        raise UsageError(f"vocab has duplicate entries: {vocab}")
    return vocab


def split_dataset(ds_kwargs: dict, x, y, items, is_valid) -> dict:
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




def seeded_split(n: int, valid_fraction: float, seed: int, source, stratify=None) -> np.ndarray:
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


def standardise(x: np.ndarray, is_valid: np.ndarray):
    """Scale with the TRAIN split's mean/std (population std; 0 -> 1)."""
    mean = x[~is_valid].mean(axis=0)
    std = x[~is_valid].std(axis=0)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32), mean, std


