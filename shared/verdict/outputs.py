"""Compare two models' raw outputs, whatever their nesting: the core of
compare.compare_models (the API for users' own test suites). Framework-free:
tensors are read through their own .detach()/.numpy() methods."""

from __future__ import annotations

import numpy as np

from shared.verdict.checks import Check, compare_arrays
from shared.graph.layout import nhwc_to_nchw
from shared.verdict.tolerances import Tolerance

__all__ = ["leaves", "to_numpy", "compare_outputs"]


def leaves(prefix: str, obj) -> dict:
    """Name every array in a (nested) output, HF-style: outputs.logits, outputs_1."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(leaves(f"{prefix}.{k}", v))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(leaves(f"{prefix}_{i}", v))
        return out
    return {prefix: obj}


def to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def compare_outputs(a_out, b_out, tol: Tolerance, *, dtype: str, name: str = "outputs",
                    a_channels_last: bool = True, a_name: str = "keras", b_name: str = "torch") -> list:
    """One Check per output leaf; a leaf on one side only is a failing Check.

    Args:
        a_channels_last: 4-D outputs of `a` are permuted NHWC -> NCHW first.
    """
    al = {n: to_numpy(v) for n, v in leaves(name, a_out).items()}
    bl = {n: to_numpy(v) for n, v in leaves(name, b_out).items()}
    if a_channels_last:
        al = {n: nhwc_to_nchw(v) for n, v in al.items()}
    checks = []
    for n in list(al) + [m for m in bl if m not in al]:
        if n in al and n in bl:
            checks.append(compare_arrays(n, al[n], bl[n], tol, a_name=a_name, b_name=b_name, dtype=dtype))
        else:
            checks.append(Check(n, a_name, b_name, float("inf"), float("inf"), 0.0, False,
                                f"only in {a_name if n in al else b_name}", dtype=dtype))
    return checks
