"""Helpers for the port tests: random weights, port + verdict, assertions.

Importing this module imports torch before TensorFlow (compare.frameworks()).
"""

from __future__ import annotations

import compare

compare.frameworks()  # torch first, then TensorFlow/Keras

import keras  # noqa: E402
import numpy as np  # noqa: E402

from shared.verdict.checks import format_check  # noqa: E402
from shared.verdict.tolerances import FORWARD  # noqa: E402

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


def standalone_outputs(out_dir, x, tmp_path) -> np.ndarray:
    """Run out_dir/model.py with weights.safetensors in a process that has
    torch and numpy only (this project off sys.path); its output on x."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    repo = str(Path(compare.__file__).resolve().parent)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f'''
        import sys
        sys.path = [p for p in sys.path if p not in ("", ".", {repo!r})]
        sys.path.insert(0, {str(out_dir)!r})
        import numpy as np, torch
        from safetensors.torch import load_file
        from model import Model
        assert "keras" not in sys.modules and "tensorflow" not in sys.modules and "compare" not in sys.modules
        m = Model(); m.load_state_dict(load_file({str(Path(out_dir) / "weights.safetensors")!r}), strict=True); m.eval()
        with torch.no_grad():
            y = m(torch.from_numpy(np.load({str(tmp_path / "x.npy")!r})))
        np.save({str(tmp_path / "y.npy")!r}, y.numpy())
    ''')
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return np.load(tmp_path / "y.npy")
