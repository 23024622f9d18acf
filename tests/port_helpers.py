"""Helpers for the port tests: random weights, port + verdict, assertions.

Importing this module imports torch before TensorFlow (compare.frameworks()).
"""

from __future__ import annotations

import compare

compare.frameworks()  # torch first, then TensorFlow/Keras

import keras  # noqa: E402
import numpy as np  # noqa: E402

from shared.checks import format_check  # noqa: E402
from shared.tolerances import FORWARD  # noqa: E402

F64_REL = FORWARD["float64"].rel  # the float64 target, 1e-12 relative


def randomise(model, seed: int = 0):
    """Every variable of `model` set to seeded values (variances positive), so
    no layer is checked at its trivial initial weights (gamma 1, beta 0...)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if "variance" in v.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        v.assign(value.astype(keras.backend.standardize_dtype(v.dtype)))
    return model


def port_ok(model, inputs=None, *, batch: int = 2, seed: int = 0):
    """Port `model`, run every check (forward per node, loss, gradients, in
    float32 and float64) and assert they pass; returns the PortResult."""
    r = compare.port_checks(model, inputs, batch=batch, seed=seed)
    failed = [c for c in r.checks if not c.passed]
    assert not failed, "\n".join(format_check(c) for c in failed[:8]) + "\n" + r.source
    outs = [c for c in r.checks if c.check.startswith("output") and c.dtype == "float64"]
    assert outs, "no float64 output check ran"
    worst = max(c.max_rel_diff for c in outs)
    assert worst <= F64_REL, f"float64 output differs by {worst:.3g} relative (target {F64_REL})"
    return r


def ops_of(result) -> list:
    return [n.op for n in result.graph.nodes]


def worst(result, prefix: str, dtype: str) -> float:
    """The largest relative difference of the checks named `prefix...` in `dtype`."""
    return max((c.max_rel_diff for c in result.checks if c.check.startswith(prefix) and c.dtype == dtype), default=0.0)
