"""Small helpers shared by the test modules: readable parametrize ids, random
data in the shared conventions, and weight porting in memory.

Only numpy and the project's own modules are used here; the test modules import
torch before keras themselves (Keras' own test suite does the same).
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.config import ModelConfig, parameter_spec
from shared.data.registry import PAIRS

__all__ = [
    "DTYPES",
    "pair_dtype_params",
    "random_inputs",
    "random_targets",
    "randomise_bn",
    "max_record",
]

DTYPES = ("float32", "float64")


def pair_dtype_params():
    """pytest.param(pair, dtype) for every built-in pair x dtype, id "digits/mlp-float32"."""
    return [pytest.param(p, dt, id=f"{p.name}-{dt}") for p in PAIRS for dt in DTYPES]


def random_inputs(config: ModelConfig, n: int = 16, seed: int = 0) -> np.ndarray:
    """A batch in the data layer's convention: (n, features) or (n, H, W, C) NHWC
    in [0, 1] for images, standard normal for tabular data; config dtype."""
    rng = np.random.default_rng(seed)
    shape = (n, *config.input_shape)
    x = rng.random(shape) if config.model == "cnn" else rng.standard_normal(shape)
    return x.astype(config.dtype)


def random_targets(config: ModelConfig, n: int = 16, seed: int = 1) -> np.ndarray:
    """Targets as shared.data.dataset.Dataset documents them: multiclass int64 (n,);
    multilabel/binary {0,1} (n, C); regression standard normal (n, T)."""
    rng = np.random.default_rng(seed)
    if config.task == "multiclass":
        return rng.integers(0, config.num_outputs, size=n).astype(np.int64)
    if config.task in ("multilabel", "binary"):
        return (rng.random((n, config.num_outputs)) < 0.5).astype(config.dtype)
    return rng.standard_normal((n, config.num_outputs)).astype(config.dtype)


def randomise_bn(tensors: dict, config: ModelConfig, seed: int = 2) -> dict:
    """Portable tensors with BatchNorm gamma/beta/running stats made non-trivial.

    A fresh BatchNorm has gamma=1, beta=0, mean=0, var=1 on both sides, so a port
    that dropped or swapped them would still look right. running_var stays > 0.
    """
    rng = np.random.default_rng(seed)
    out = dict(tensors)
    spec = parameter_spec(config)
    for name, shape in spec.items():
        if not name.startswith("bn"):
            continue
        if name.endswith(".weight"):
            v = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(".bias") or name.endswith(".running_mean"):
            v = rng.uniform(-0.5, 0.5, shape)
        else:  # running_var
            v = rng.uniform(0.2, 2.0, shape)
        out[name] = v.astype(config.dtype)
    return out


def max_record(record: dict, key: tuple, value: float) -> None:
    """record[key] = max(record.get(key), value): the largest difference seen."""
    record[key] = max(record.get(key, 0.0), float(value))


# =============================================================================
# The command line in this process (a subprocess pays ~10 s of imports each).
# =============================================================================
def run_cli(*args) -> tuple:
    """compare.main(args) in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    import compare

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = compare.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def written_models(folder, filename: str, source: str) -> tuple:
    """`source` (model builders) written to folder/filename, for `compare.py port FILE:NAME`,
    and executed under that file name: (path, its namespace)."""
    path = folder / filename
    path.write_text(source)
    ns: dict = {}
    exec(compile(source, str(path), "exec"), ns)
    return path, ns
