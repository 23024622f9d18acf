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
from shared.tolerances import FLOAT32_DRIFT_FACTOR, ZERO_GRADIENT_F64, Tolerance

__all__ = ["random_inputs", "random_targets", "note_lengths", "node_checks", "first_differing", "layouts", "kink_straddles", "excuse_float32_drift",
           "excuse_kinks", "summary_rows", "DEFAULT_BATCH", "INT_INPUT_HIGH"]

# Activations with a kink, and where it is (the README's "ReLU kinks").
_KINKS = {"relu": (0.0,), "relu6": (0.0, 6.0), "leaky_relu": (0.0,), "hard_sigmoid": (-3.0, 3.0), "hard_silu": (-3.0, 3.0)}

DEFAULT_BATCH = 4
# Integer inputs (token ids) are drawn from [0, INT_INPUT_HIGH) unless the
# graph says otherwise (meta["input_high"][name], e.g. an Embedding's input_dim).
INT_INPUT_HIGH = 10


# An input of unknown length (keras.Input((None,)) token ids, (None, features)
# series: keras.io's IMDB BiLSTM; (None, None, 3) images) gets random inputs of
# this many steps on every unknown axis, or more where a layer would otherwise
# be empty (keras_impl/probe.py: graph.meta["probe_steps"]); the written
# model.py takes any length.
UNKNOWN_SEQUENCE_STEPS = 16


def _concrete(graph: Graph, name: str, batch: int) -> tuple:
    shape = graph.tensors[name].shape
    dims = list(shape[1:])
    if any(s is None for s in dims):
        if graph.meta.get("probe_error"):  # keras_impl/probe.py: no length up to its limit fits every layer
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
    nothing (shared/checks.py rule 2)."""
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


def kink_straddles(graph: Graph, a: dict, b: dict) -> dict:
    """Inputs of kinked activations (ReLU, ReLU6, ...) that fall on different
    sides of a kink in the two frameworks: {node: (count, "tensor[index]: a vs b")}.

    A float32 rounding difference of 1e-7 there flips whether the gradient
    passes; in a deep network some such input is likely. That is arithmetic,
    not a porting bug (the float64 checks stay strict).
    """
    out = {}
    for node in graph.nodes:
        kinks = _KINKS.get(node.attrs.get("fn")) if node.op == "activation" else None
        src = node.inputs[0] if kinks else None
        if src is None or src not in a or src not in b:
            continue
        x, y = np.asarray(a[src]), np.asarray(b[src])
        straddle = np.zeros(x.shape, bool)
        for k in kinks:
            straddle |= (x > k) != (y > k)
        if straddle.any():
            idx = tuple(int(i) for i in np.argwhere(straddle)[0])
            out[node.name] = (int(straddle.sum()), f"{src}{list(idx)}: {x[idx]:.3g} vs {y[idx]:.3g}")
    return out


def excuse_kinks(checks: list, straddles: dict, graph: Graph, dtype: str) -> list:
    """With kink straddles, failing float32 gradient rows become informational,
    and one row says how many inputs straddled and where."""
    if not straddles or dtype != "float32":
        return checks
    n = sum(c for c, _ in straddles.values())
    first = next(iter(straddles.items()))
    row = Check("relu kink straddles", "keras", "torch", 0.0, 0.0, 0.0, True,
                f"{n} activation inputs on different sides of a kink, first at {first[0]}: {first[1][1]}; "
                "failing float32 gradient rows below are informational (float64 stays strict)",
                model=graph.name, dtype=dtype, info=True)
    for c in checks:
        if c.check.startswith("grad ") and not c.passed:
            c.info = True
            c.where += " (ReLU-kink straddle, see 'relu kink straddles')"
    return [row] + checks


def excuse_float32_drift(checks: list, keras32: dict, keras64: dict, graph: Graph) -> list:
    """Failing float32 node/output rows become informational where the port is
    proven exact (float64 row of that tensor passed) and the difference is
    float32 rounding: at most FLOAT32_DRIFT_FACTOR times Keras' own float32
    error there (shared/tolerances.py). One row says how many and the worst."""
    passed64 = {c.check for c in checks if c.dtype == "float64" and c.passed and c.check.startswith(("node ", "output "))}
    excused = {}
    for c in checks:
        if c.dtype != "float32" or c.passed or c.info or not c.check.startswith(("node ", "output ")):
            continue
        name = c.check.split(" ", 1)[1]
        if c.check not in passed64 or name not in keras32 or name not in keras64:
            continue
        own = float(np.max(np.abs(np.asarray(keras32[name], np.float64) - keras64[name]))) if np.size(keras64[name]) else 0.0
        if c.max_abs_diff <= FLOAT32_DRIFT_FACTOR * own:
            c.info = True
            c.where += f" (float32 rounding: Keras' own float32 error here is {own:.3g}; float64 agrees)"
            excused[name] = (c.max_abs_diff, own)
    if not excused:
        return checks
    for c in checks:  # the "first differing node" row follows its node
        if c.check == "first differing node" and c.dtype == "float32" and c.where.split(" ", 1)[0] in excused:
            c.info = True
    worst = max(excused.items(), key=lambda kv: kv[1][0] / max(kv[1][1], 1e-300))
    row = Check("float32 rounding drift", "keras", "torch", 0.0, 0.0, 0.0, True,
                f"{len(excused)} float32 node rows above FORWARD are rounding (float64 exact there; each within "
                f"{FLOAT32_DRIFT_FACTOR:g}x Keras' own float32 error); worst {worst[0]}: {worst[1][0]:.3g} vs own {worst[1][1]:.3g}",
                model=graph.name, dtype="float32", info=True)
    return [row] + checks


def excuse_zero_gradients(checks: list, keras64: dict, torch64: dict) -> list:
    """Failing float32 gradient rows become informational where the gradient is
    zero in exact arithmetic: both frameworks' float64 gradients of that tensor
    are within ZERO_GRADIENT_F64 of zero (relative to the model's largest) and
    the float64 row passed, so the float32 values are rounding noise."""
    scale = max([1.0] + [float(np.max(np.abs(g))) for g in keras64.values() if np.size(g)])
    passed64 = {c.check for c in checks if c.dtype == "float64" and c.passed and c.check.startswith("grad ")}
    for c in checks:
        if c.dtype != "float32" or c.passed or c.info or c.check not in passed64:
            continue
        name = c.check.split(" ", 1)[1]
        if name not in keras64 or name not in torch64:
            continue
        largest = max(float(np.max(np.abs(g))) if np.size(g) else 0.0 for g in (keras64[name], torch64[name]))
        if largest <= ZERO_GRADIENT_F64 * scale:
            c.info = True
            c.where += (f" (a zero gradient: float64 gives at most {largest:.3g} on both sides, the model's largest "
                        f"is {scale:.3g}; float32 values are rounding noise)")
    return checks


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
