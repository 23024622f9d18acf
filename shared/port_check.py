"""Framework-free pieces of `compare.py port`: inputs, targets and the checks.

compare.py runs the Keras model and the generated PyTorch module on the same
inputs (numpy, neutral layout) and hands the values here; this module turns
them into report rows (shared/checks.py Check), one per mirrored tensor in
graph order, and names the first node whose output differs.
"""

from __future__ import annotations

import numpy as np

from shared.checks import Check, compare_arrays, compare_named
from shared.errors import UsageError
from shared.graph import Graph
from shared.tolerances import Tolerance

__all__ = ["random_inputs", "random_targets", "node_checks", "first_differing", "layouts", "DEFAULT_BATCH", "INT_INPUT_HIGH"]

DEFAULT_BATCH = 4
# Integer inputs (token ids) are drawn from [0, INT_INPUT_HIGH) unless the
# graph says otherwise (meta["input_high"][name], e.g. an Embedding's input_dim).
INT_INPUT_HIGH = 10


def _concrete(graph: Graph, name: str, batch: int) -> tuple:
    shape = graph.tensors[name].shape
    if any(s is None for s in shape[1:]):
        raise UsageError(f"input {name!r} has shape {shape} with unknown sizes; the port needs a fixed input shape")
    return (batch, *(int(s) for s in shape[1:]))


def random_inputs(graph: Graph, batch: int = DEFAULT_BATCH, seed: int = 0) -> list:
    """Seeded inputs of the graph's input shapes (neutral layout): N(0, 1) for
    floats, integers in [0, high) for integer inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for name in graph.inputs:
        spec = graph.tensors[name]
        shape = _concrete(graph, name, batch)
        if "int" in spec.dtype:
            high = int(graph.meta.get("input_high", {}).get(name, INT_INPUT_HIGH))
            out.append(rng.integers(0, high, size=shape).astype(spec.dtype))
        else:
            out.append(rng.standard_normal(shape).astype(spec.dtype))
    return out


def random_targets(graph: Graph, loss: dict, batch: int, seed: int = 0) -> np.ndarray:
    """Seeded targets fitting the loss: class ids, one-hot, {0, 1} or N(0, 1)."""
    rng = np.random.default_rng(seed + 1)
    shape = (batch, *(int(s) for s in graph.tensors[graph.outputs[0]].shape[1:]))
    kind = loss["kind"]
    if kind == "sparse_ce":
        return rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64)
    if kind == "ce":
        return np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    if kind == "bce":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


def node_checks(graph: Graph, a: dict, b: dict, tol, *, dtype: str, a_name="keras", b_name="torch") -> list:
    """One Check per mirrored tensor of the graph, in graph order (missing on a side: a failure).

    tol: a Tolerance, or a function tensor name -> Tolerance."""
    order = [t for t in graph.inputs] + [o for n in graph.nodes for o in n.outputs]
    out = []
    for name in order:
        spec = graph.tensors[name]
        if spec.internal:
            continue
        if name not in a or name not in b:
            missing = " and ".join(n for n, d in ((a_name, a), (b_name, b)) if name not in d)
            out.append(Check(f"node {name}", a_name, b_name, float("inf"), float("inf"), 0.0, False,
                             f"not computed by {missing}", model=graph.name, dtype=dtype))
            continue
        out.append(compare_arrays(f"node {name}", a[name], b[name], tol(name) if callable(tol) else tol, a_name=a_name, b_name=b_name,
                                  model=graph.name, dtype=dtype))
    return out


def first_differing(graph: Graph, checks: list) -> Check | None:
    """The first failing per-node check, with the source layer named in `where`."""
    for c in checks:
        if not c.passed:
            name = c.check.split(" ", 1)[1]
            node = graph.producer(name)
            src = node.source if node is not None else {}
            return Check("first differing node", c.a, c.b, c.max_abs_diff, c.max_rel_diff, c.tolerance, False,
                         f"{name} (layer {src.get('layer', name)!r}, class {src.get('class', '?')}): {c.where}",
                         model=c.model, dtype=c.dtype)
    return None


def gradient_checks(graph: Graph, a: dict, b: dict, tol: Tolerance, *, dtype: str) -> list:
    return compare_named("grad", a, b, tol, model=graph.name, dtype=dtype)


def layouts(graph: Graph) -> dict:
    """Each input's and output's layout, for the report."""
    def one(name):
        spec = graph.tensors[name]
        return {"shape": [None if s is None else int(s) for s in spec.shape], "dtype": spec.dtype,
                "layout": "channels_first" if spec.keras_perm else "as_keras",
                "from_keras_axes": list(spec.keras_perm) if spec.keras_perm else None}
    return {"inputs": {n: one(n) for n in graph.inputs}, "outputs": {n: one(n) for n in graph.outputs}}
