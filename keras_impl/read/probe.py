"""The length a model with unknown input sizes is checked at (issue 20).

A Keras input with unknown sizes besides the batch (`keras.Input((None, C))`,
`keras.Input((None, None, 3))`) needs concrete ones for the random inputs and
for tracing custom layers. `probe_steps(model)` picks the smallest length, from
UNKNOWN_SEQUENCE_STEPS up, at which every layer's output is non-empty: it
computes every node's output shape symbolically (`Operation.compute_output_spec`,
keras/src/ops/operation.py: shapes only, no arrays), walking the functional
graph and nested models as keras_impl/read/__init__.py does. Two stride-3 valid Conv1D
and a pool of 3 need 27 steps; a length no probe up to MAX_PROBE_STEPS fits is
a UsageError (exit 2) naming the layer that needs more steps and asking for
`--data`.
"""

from __future__ import annotations

import keras
from keras import tree

from shared.core.errors import UsageError
from shared.flows.port_check import UNKNOWN_SEQUENCE_STEPS

__all__ = ["probe_steps", "unknown_inputs", "MAX_PROBE_STEPS"]

# The longest probe: beyond it the checks would run on inputs too large for a
# quick proof (a 2-d unknown size is MAX_PROBE_STEPS^2 pixels per channel), and
# the user's own --data is the better probe.
MAX_PROBE_STEPS = 1024
# Shapes only are computed, so a far longer length costs nothing: a model that
# fails there too fails for another reason than its length.
_HUGE_STEPS = 1 << 20


def unknown_inputs(model) -> list:
    """The model inputs (KerasTensors) with an unknown size besides the batch."""
    return [t for t in model.inputs if any(s is None for s in t.shape[1:])]


def _nodes(fn):
    for depth in sorted(fn._nodes_by_depth, reverse=True):
        for node in fn._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def _nested(op):
    if isinstance(op, keras.Sequential):
        return op._functional
    if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth"):
        return op
    return None


def _walk(fn, values: dict) -> tuple | None:
    """Fill `values` (id(KerasTensor) -> KerasTensor) over fn's nodes; the first
    layer whose output is empty or cannot be computed, (layer, sentence), or None."""
    for node in _nodes(fn):
        op = node.operation
        inner = _nested(op)
        if inner is not None and len(node.input_tensors) == len(inner.inputs):
            for t, it in zip(node.input_tensors, inner.inputs):
                values[id(it)] = values[id(t)]
            failed = _walk(inner, values)
            if failed:
                return failed
            outs = [values[id(t)] for t in inner.outputs]
        else:
            args, kwargs = node.arguments.fill_in(values)
            try:
                outs = tree.flatten(op.compute_output_spec(*args, **kwargs))
            except Exception as e:  # noqa: BLE001  (any failure names the layer; read_graph reports other causes)
                first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(" Received", 1)[0]
                return op, f"layer {op.name!r} ({type(op).__name__}) cannot compute its output ({first[:160]})"
        for t, y in zip(node.outputs, outs):
            values[id(t)] = y
            shape = tuple(getattr(y, "shape", ()) or ())
            if any(s == 0 for s in shape):
                return op, f"layer {op.name!r} ({type(op).__name__}) gives an empty output {shape}"
    return None


def _fails(fn, steps: int) -> tuple | None:
    values = {}
    for t in fn.inputs:
        shape = (2, *(steps if s is None else s for s in t.shape[1:]))
        values[id(t)] = keras.KerasTensor(shape, dtype=t.dtype, sparse=t.sparse)
    return _walk(fn, values)


def probe_steps(model, fn=None) -> int | None:
    """The length every unknown input size is checked at (None: no unknown size).

    UNKNOWN_SEQUENCE_STEPS when every layer's output is non-empty there, else
    the smallest longer length that makes them all non-empty (doubling, then
    bisecting). UsageError when none up to MAX_PROBE_STEPS does.
    """
    fn = fn if fn is not None else (_nested(model) or model)
    if not unknown_inputs(fn):
        return None
    first = _fails(fn, UNKNOWN_SEQUENCE_STEPS)
    if first is None:
        return UNKNOWN_SEQUENCE_STEPS
    lo, hi, failed = UNKNOWN_SEQUENCE_STEPS, UNKNOWN_SEQUENCE_STEPS * 2, first
    while hi <= MAX_PROBE_STEPS and (failed := _fails(fn, hi)) is not None:
        lo, hi = hi, hi * 2
    if hi > MAX_PROBE_STEPS:
        if _fails(fn, _HUGE_STEPS) is not None:
            # fails even at a huge length: not a matter of steps (read_graph and the checks name the real cause)
            return UNKNOWN_SEQUENCE_STEPS
        names = ", ".join(repr(t.name) for t in unknown_inputs(fn))
        raise UsageError(f"input(s) {names} have an unknown length and no probe length from {UNKNOWN_SEQUENCE_STEPS} "
                         f"to {MAX_PROBE_STEPS} steps keeps every layer non-empty: at {MAX_PROBE_STEPS} steps "
                         f"{failed[1]}; that layer needs more steps: give inputs long enough with --data FILE")
    while hi - lo > 1:  # lo fails, hi fits
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _fails(fn, mid) is None else (mid, hi)
    return hi
