"""shared/core/argtypes.py: each bad command-line value refused with a message saying what was expected."""

from __future__ import annotations

import argparse

import pytest

from shared.core import argtypes


def test_good_values():
    assert argtypes.positive_int("3") == 3
    assert argtypes.nonneg_int("0") == 0
    assert argtypes.nonneg_float("1e-6") == 1e-6
    assert argtypes.shape("3,64,64") == (3, 64, 64)


@pytest.mark.parametrize("fn, value, message", [
    (argtypes.positive_int, "0", "must be >= 1, got 0"),
    (argtypes.nonneg_int, "-1", "must be >= 0, got -1"),
    (argtypes.nonneg_float, "-0.5", "must be >= 0, got -0.5"),
    (argtypes.nonneg_float, "nan", "must be >= 0, got nan"),
    (argtypes.shape, "3,x,64", "expected sizes separated by commas"),
    (argtypes.shape, "3,0,64", "sizes must be positive"),
])
def test_bad_values(fn, value, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        fn(value)
