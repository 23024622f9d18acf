"""argparse value types shared by every `compare.py` command: one message per kind of bad value.

argparse turns an `ArgumentTypeError` into compare.py's one-line usage error (exit 2).
"""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "nonneg_int", "nonneg_float", "shape", "input_shape"]


def positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def nonneg_int(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def nonneg_float(s: str) -> float:
    v = float(s)
    if not v >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def shape(s: str) -> tuple:
    """"3,64,64" -> (3, 64, 64): positive sizes separated by commas."""
    try:
        dims = tuple(int(a) for a in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected sizes separated by commas, e.g. 3,64,64") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{s!r}: sizes must be positive")
    return dims


def input_shape(s: str):
    """`--input-shape`: "3,64,64", or named inputs "input_ids=16:int64,attention_mask=16:int64" (shared/core/inputs.py)."""
    from shared.core.inputs import parse_input_shape

    try:
        return parse_input_shape(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
