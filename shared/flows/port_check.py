"""Framework-free pieces of `compare.py port`: inputs, targets and the checks.

compare.py runs the Keras model and the generated PyTorch module on the same
inputs (numpy, neutral layout) and hands the values here; this module turns
them into report rows (shared/verdict/checks.py Check), one per mirrored tensor in
graph order, and names the first node whose output differs.
"""

from __future__ import annotations

import numpy as np

from shared.verdict import policy as verdict
from shared.verdict.checks import Check
from shared.core.errors import UsageError
from shared.graph.ir import Graph

__all__ = ["random_inputs", "random_targets", "note_lengths", "node_checks", "first_differing", "layouts", "kink_straddles",
           "summary_rows", "DEFAULT_BATCH", "INT_INPUT_HIGH"]

DEFAULT_BATCH = 4
# Integer inputs (token ids) are drawn from [0, INT_INPUT_HIGH) unless the
# graph says otherwise (meta["input_high"][name], e.g. an Embedding's input_dim).
INT_INPUT_HIGH = 10


# An input of unknown length (keras.Input((None,)) token ids, (None, features)
# series: keras.io's IMDB BiLSTM; (None, None, 3) images) gets random inputs of
# this many steps on every unknown axis, or more where a layer would otherwise
# be empty (keras_impl/read/probe.py: graph.meta["probe_steps"]); the written
# model.py takes any length.
UNKNOWN_SEQUENCE_STEPS = 16


def _concrete(graph: Graph, name: str, batch: int) -> tuple:
    shape = graph.tensors[name].shape
    dims = list(shape[1:])
    if any(s is None for s in dims):
        if graph.meta.get("probe_error"):  # keras_impl/read/probe.py: no length up to its limit fits every layer
            raise UsageError(graph.meta["probe_error"])
        steps = int(graph.meta.get("probe_steps", UNKNOWN_SEQUENCE_STEPS))
        dims = [steps if s is None else s for s in dims]
        graph.meta.setdefault("assumed_steps", {})[name] = steps
    return (batch, *(int(s) for s in dims))


def note_lengths(graph: Graph, xs: list) -> dict:
    """Record, for each input of unknown size, the length its arrays have on
    those axes (graph.meta["assumed_steps"]: the console note and the report)."""
    for name, x in zip(graph.inputs, xs):
        unknown = [np.shape(x)[i] for i, s in enumerate(graph.tensors[name].shape) if i and s is None]
        if unknown:
            graph.meta.setdefault("assumed_steps", {})[name] = int(unknown[0]) if len(set(unknown)) == 1 else list(unknown)
    return graph.meta.get("assumed_steps", {})


def random_inputs(graph: Graph, batch: int = DEFAULT_BATCH, seed: int = 0) -> list:
    """Seeded inputs of the graph's input shapes (neutral layout): N(0, 1) for
    floats, integers in [0, high) for integer inputs.

    Where the graph masks an integer input (Embedding(mask_zero=True):
    Graph.mask_value), the mask value stays anywhere in a row (the port
    reproduces Keras' gap semantics exactly, interior pads included), but a row
    of nothing but the mask value gets one other id at its first position:
    Keras' masked average over no steps is 0/0 = NaN, which agrees with
    nothing (shared/verdict/checks.py rule 2)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in graph.inputs:
        spec = graph.tensors[name]
        shape = _concrete(graph, name, batch)
        if "int" in spec.dtype or name in graph.meta.get("input_high", {}):  # ids (a float input an Embedding reads too)
            high = int(graph.meta.get("input_high", {}).get(name, INT_INPUT_HIGH))
            ids = rng.integers(0, high, size=shape)
            pad = graph.mask_value(name)
            rows = ids.reshape(shape[0], -1)  # a view
            empty = (rows == pad).all(axis=1) if pad is not None and high > 1 else np.zeros(0, bool)
            if empty.any():
                rows[empty, 0] = (int(pad) + 1 + rng.integers(0, high - 1, int(empty.sum()))) % high  # != pad
            out.append(ids.astype(spec.dtype))
        else:
            out.append(rng.standard_normal(shape).astype(spec.dtype))
    return out


def random_targets(graph: Graph, loss: dict, batch: int, seed: int = 0, shape: tuple | None = None) -> np.ndarray:
    """Seeded targets fitting the loss: class ids, one-hot, {0, 1} or N(0, 1).

    shape: the first output's shape as the model computed it on the checked
    inputs (an unknown output length follows the input's); default the graph's,
    which then must be known."""
    rng = np.random.default_rng(seed + 1)
    if shape is None:
        spec = graph.tensors[graph.outputs[0]]
        if any(s is None for s in spec.shape[1:]):
            raise UsageError(f"output {graph.outputs[0]!r} has unknown sizes {spec.shape}: "
                             "the port cannot make targets for it without running the model")
        shape = (batch, *spec.shape[1:])
    shape = tuple(int(s) for s in shape)
    kind = loss["kind"]
    if kind == "sparse_ce":
        return rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64)
    if kind == "ce":
        return np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    if kind == "bce":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


def node_checks(graph: Graph, a: dict, b: dict, judge, *, dtype: str, a_name="keras", b_name="torch") -> list:
    """One Check per mirrored tensor of the graph, in graph order (missing on a side: a failure).

    judge: (row name, tensor name, a value, b value) -> Check (shared/verdict/policy.py)."""
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
        out.append(judge(f"node {name}", name, a[name], b[name]))
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


def layouts(graph: Graph) -> dict:
    """Each input's and output's layout, for the report."""
    def one(name):
        spec = graph.tensors[name]
        return {"shape": [None if s is None else int(s) for s in spec.shape], "dtype": spec.dtype,
                "layout": "channels_first" if spec.keras_perm else "as_keras",
                "from_keras_axes": list(spec.keras_perm) if spec.keras_perm else None}
    return {"inputs": {n: one(n) for n in graph.inputs}, "outputs": {n: one(n) for n in graph.outputs}}


def kink_straddles(graph: Graph, a: dict, b: dict) -> dict:
    """Inputs of kinked activations (ReLU, ReLU6, ...) that fall on different
    sides of a kink in the two frameworks: {node: (count, "tensor[index]: a vs b")}
    (shared.verdict.policy.kink_straddles over the graph's activation nodes).

    A float32 rounding difference of 1e-7 there flips whether the gradient
    passes; in a deep network some such input is likely. That is arithmetic,
    not a porting bug (the float64 checks stay strict).
    """
    def pairs():
        for node in graph.nodes:
            kinks = verdict.KINKS.get(node.attrs.get("fn")) if node.op == "activation" else None
            src = node.inputs[0] if kinks else None
            if src is not None and src in a and src in b:
                yield node.name, src, a[src], b[src], kinks

    return verdict.kink_straddles(pairs())


_GROUPS = (("output", "output "), ("nodes", "node "), ("loss", "loss "), ("gradients", "grad "),
           ("training", ("training ", "trained ")), ("onnx", "onnx "))


def summary_rows(checks: list) -> list:
    """One row per (dtype, kind of check): how many, how many failed, and the
    worst relative difference with its check and where (for the console).
    Rows of no named kind (the reverse port's reload and BatchNorm rows) are
    grouped as "other"."""
    def kind(c) -> str:
        return next((label for label, prefix in _GROUPS if c.check.startswith(prefix)), "other")

    rows = []
    for dtype in sorted({c.dtype for c in checks}):
        for label in [g[0] for g in _GROUPS] + ["other"]:
            group = [c for c in checks if c.dtype == dtype and kind(c) == label and not c.info]
            if not group:
                continue
            worst = max(group, key=lambda c: (not c.passed, c.max_rel_diff / max(c.tolerance, 1e-300)))
            failed = sum(not c.passed for c in group)
            rows.append(Check(f"{label}: {len(group)} checks, {failed} failed; worst {worst.check}", worst.a, worst.b,
                              worst.max_abs_diff, worst.max_rel_diff, worst.tolerance, failed == 0, worst.where,
                              model=worst.model, dtype=dtype))
    return rows
