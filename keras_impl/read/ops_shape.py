"""keras.ops met when tracing custom layers (keras_impl/read/trace.py) that take
sizes or change dtypes: cast, broadcast_to, tile, slice.

A size argument equal to TRACE_BATCH is the batch size a traced call read
with `ops.shape(x)[0]` (keras-hub's PositionEmbedding broadcasts its table to
`ops.shape(inputs)`; ViTPatchingAndEmbedding tiles its class token
`(batch, 1, 1)` times). It becomes None in the node's attrs, "the batch size at
run time", and the node gets one more input, the model's first input, whose
axis 0 is that batch (every tensor of the neutral graph with a batch axis has
it on axis 0): model.py then reads `token_ids.shape[0]`.
"""

from __future__ import annotations

import keras

from keras_impl.read.registry import keras_converter, unsupported
from keras_impl.read.trace import TRACE_BATCH

__all__ = ["batch_sizes", "record_input_high", "unbatched_constant", "boolean_input"]


def batch_sizes(layer, sizes, *, where: str) -> list:
    """`sizes` (ints) with TRACE_BATCH on axis 0 read as None (the run-time batch).
    The batch size anywhere else, or computed from (TRACE_BATCH * 2), is refused."""
    out = []
    for i, s in enumerate(sizes):
        s = int(s)
        if s == TRACE_BATCH and i == 0:
            out.append(None)
        elif s == TRACE_BATCH or (s > TRACE_BATCH and s % TRACE_BATCH == 0):
            raise unsupported(layer, f"{where} {tuple(sizes)} that moves or multiplies the batch size (axis {i})")
        else:
            out.append(s)
    return out


def unbatched_constant(layer, value):
    """A constant a traced call computed eagerly at the traced batch size
    (keras-hub's causal mask: ops.broadcast_to(mask, (batch, T, S)) of
    concrete tensors) is the same for every row: its first row, which
    broadcasts over the run-time batch. Rows that differ are refused."""
    import numpy as np

    a = np.asarray(value)
    if a.ndim == 0 or a.shape[0] != TRACE_BATCH:
        return a
    if not (a == a[:1]).all():
        raise unsupported(layer, f"a constant of shape {a.shape} that differs along the batch axis")
    return np.ascontiguousarray(a[:1])


def _with_batch(ctx, inputs: list, sizes: list) -> list:
    """The node's inputs, plus the model's first input when a size is the batch."""
    return inputs + [ctx.graph.inputs[0]] if None in sizes else inputs


def record_input_high(ctx, ids: str, high: int) -> None:
    """Random test ids of a model input that indexes a table of `high` rows lie in [0, high)."""
    if ids in ctx.graph.inputs:
        highs = ctx.graph.meta.setdefault("input_high", {})
        highs[ids] = min(highs.get(ids, int(high)), int(high))


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


@keras_converter("ops.Cast", "ops.ConvertToTensor")
def cast(ctx, layer, call):
    """ops.cast(x, dtype) (keras/src/ops/core.py Cast). A float target is the
    model's float dtype: float -> float is an identity (one model.py serves
    float32 and float64: `Model().double()`); int/bool -> float casts to the
    dtype the module's parameters have (helper FloatCast). Integer and bool
    targets stay what they say. ops.convert_to_tensor(x, dtype=None) of a
    traced variable is the variable itself."""
    x = ctx.tensor(call.inputs[0], "as_is")
    source = ctx.graph.tensors[x].dtype
    if getattr(layer, "sparse", None) or getattr(layer, "ragged", None):
        raise unsupported(layer, "a sparse or ragged tensor")
    target = source if layer.dtype is None else keras.backend.standardize_dtype(layer.dtype)
    if target == source:
        ctx.emit("identity", [x], call.outputs[0], layout="as_is")
        return
    if _is_float(target) and _is_float(source):
        ctx.emit("identity", [x], call.outputs[0], layout="as_is")
        return
    dtype = "float" if _is_float(target) else target
    if not (dtype == "float" or dtype == "bool" or dtype.startswith(("int", "uint"))):
        raise unsupported(layer, f"ops.cast to {target}")
    ctx.emit("cast", [x], call.outputs[0], layout="as_is", attrs={"dtype": dtype})
    ctx.graph.tensors[call.outputs[0]].dtype = ctx.dtype if dtype == "float" else dtype
    if dtype == "bool":
        boolean_input(ctx, x)


def boolean_input(ctx, tensor: str) -> None:
    """An integer model input read only as a boolean (a padding mask cast to
    bool after reshapes and int casts) gets random test values in {0, 1}."""
    while tensor not in ctx.graph.inputs:
        node = ctx.graph.producer(tensor)
        if node is None or node.op not in ("reshape", "cast", "identity") or len(node.inputs) != 1:
            return
        tensor = node.inputs[0]
    if "int" in ctx.graph.tensors[tensor].dtype:
        record_input_high(ctx, tensor, 2)


@keras_converter("ops.BroadcastTo")
def broadcast_to(ctx, layer, call):
    """ops.broadcast_to(x, shape) (numpy.py BroadcastTo) as torch's expand:
    numpy broadcasting, new axes on the left."""
    sizes = batch_sizes(layer, layer.shape, where="ops.broadcast_to to")
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("broadcast_to", _with_batch(ctx, [x], sizes), call.outputs[0], layout="as_is", attrs={"shape": sizes})
    ctx.graph.tensors[call.outputs[0]].dtype = ctx.graph.tensors[x].dtype


@keras_converter("ops.Tile")
def tile(ctx, layer, call):
    """ops.tile(x, repeats) (numpy.py Tile, np.tile semantics: repeats shorter
    than x's rank are padded with 1s on the left, longer ones add axes) as
    torch's Tensor.repeat (which needs len(repeats) >= rank: padded here)."""
    reps = list(layer.repeats) if isinstance(layer.repeats, (list, tuple)) else [layer.repeats]
    x = ctx.tensor(call.inputs[0], "as_is")
    reps = [1] * max(0, ctx.rank(x) - len(reps)) + reps
    sizes = batch_sizes(layer, reps, where="ops.tile by")
    if None in sizes and ctx.keras_shape(x)[:1] != (1,) and len(reps) == ctx.rank(x):
        raise unsupported(layer, "ops.tile by the batch size of an axis longer than 1")
    ctx.emit("tile", _with_batch(ctx, [x], sizes), call.outputs[0], layout="as_is", attrs={"repeats": sizes})


@keras_converter("ops.Slice")
def slice_(ctx, layer, call):
    """ops.slice(x, start_indices, shape) (core.py Slice) with start indices
    known while tracing: a `slice` node. A batched axis is sliced whole only."""
    starts = call.args[1] if len(call.args) > 1 else call.kwargs.get("start_indices")
    if isinstance(starts, keras.KerasTensor) or any(isinstance(s, keras.KerasTensor) for s in starts):
        raise unsupported(layer, "ops.slice at start indices computed from tensors")
    x = ctx.tensor(call.inputs[0], "as_is")
    in_shape = ctx.keras_shape(x)
    sizes = batch_sizes(layer, layer.shape, where="ops.slice of shape")
    index = []
    for axis, (start, size, dim) in enumerate(zip(starts, sizes, in_shape)):
        start = int(start)
        if size is None or (size == -1 and start == 0):  # the batch, or to the end
            if start != 0:
                raise unsupported(layer, f"ops.slice from {start} on axis {axis} of the batch")
            index.append([None, None, None])
        else:
            stop = None if size == -1 else start + size
            index.append([start or None, None if stop == dim else stop, None])
    ctx.emit("slice", [x], call.outputs[0], layout="as_is", attrs={"index": index})
    ctx.graph.tensors[call.outputs[0]].dtype = ctx.graph.tensors[x].dtype
