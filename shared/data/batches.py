"""One batch order for both frameworks.

The plan is made once, in numpy, and both adapters (keras_impl.data,
torch_impl.data) replay it verbatim; `batch_fingerprints` is what they must
reproduce from what they actually hand to the model.
"""

from __future__ import annotations

import numpy as np

from shared.data.config import DTYPES
from shared.data.dataset import array_fingerprint

__all__ = ["batch_plan", "make_batches", "batch_fingerprints", "cast_batch", "cast_batches"]


def batch_plan(n_items: int, batch_size: int, steps: int, seed: int) -> list:
    """Index arrays of `steps` full batches, epoch after epoch.

    Each epoch is one permutation from a single `np.random.default_rng(seed)`,
    cut into consecutive batches; the incomplete tail of each epoch is dropped.

    Args:
        n_items: dataset size.
        batch_size: items per batch.
        steps: number of batches.
        seed: the Generator's seed.

    Returns:
        `steps` int64 arrays of length `batch_size`.

    Raises:
        ValueError: n_items < batch_size, batch_size < 1 or steps < 0.
    """
    if batch_size < 1 or steps < 0:
        raise ValueError(f"batch_size must be >= 1 and steps >= 0; got batch_size={batch_size}, steps={steps}")
    if n_items < batch_size:
        raise ValueError(
            f"batch_size={batch_size} is larger than the dataset ({n_items} items); every batch must be full"
        )
    rng = np.random.default_rng(seed)
    per_epoch = n_items // batch_size
    plan = []
    while len(plan) < steps:
        perm = rng.permutation(n_items)
        for b in range(min(per_epoch, steps - len(plan))):
            plan.append(perm[b * batch_size : (b + 1) * batch_size].astype(np.int64))
    return plan


def make_batches(x: np.ndarray, y: np.ndarray, plan: list) -> list:
    """(x, y) copies for each index array of `plan`, C-contiguous.

    Args:
        x: inputs, first axis = items.
        y: targets, first axis = items.
        plan: index arrays from `batch_plan`.

    Returns:
        A list of (x_batch, y_batch) tuples.
    """
    return [(np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx])) for idx in plan]


def batch_fingerprints(batches: list) -> list:
    """`array_fingerprint(x, y)` of each batch.

    Args:
        batches: (x, y) tuples.

    Returns:
        One 16-hex-digit string per batch.
    """
    return [array_fingerprint(x, y) for x, y in batches]


def cast_batch(x: np.ndarray, y: np.ndarray, dtype: str = "float32") -> tuple:
    """The dtype rule both adapters apply: x and float targets become `dtype`.

    Integer targets (class indices, int64) keep their dtype. Always copies.

    Args:
        x: inputs.
        y: targets.
        dtype: "float32" or "float64".

    Returns:
        (x, y) as new C-contiguous arrays.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}; got {dtype!r}")
    y_dtype = dtype if y.dtype.kind == "f" else y.dtype
    return np.array(x, dtype=dtype, order="C"), np.array(y, dtype=y_dtype, order="C")


def cast_batches(batches: list, dtype: str = "float32") -> list:
    """`cast_batch` over a list of (x, y) batches."""
    return [cast_batch(x, y, dtype) for x, y in batches]
