"""keras.ops tensor operations met when tracing custom layers (keras_impl/trace.py):
matmul, reshape / expand_dims / squeeze, transpose, erf, mean, take.

Each works on the tensor in Keras' own layout (`ctx.tensor(x, "as_is")`):
these ops name Keras axes. Operations keep the batch axis where it is; one
that moves or merges it is refused (the neutral graph keeps axis 0 the batch).
"""

from __future__ import annotations

from keras_impl.convert import keras_converter, unsupported
from keras_impl.convert.ops_shape import record_input_high

__all__ = []


def _known(shape) -> bool:
    return all(s is not None for s in shape)


@keras_converter("ops.Matmul")
def matmul(ctx, layer, call):
    """ops.matmul(a, b) (keras/src/ops/numpy.py Matmul): numpy semantics, as torch.matmul."""
    if len(call.inputs) != 2:
        raise unsupported(layer, "ops.matmul with a constant operand")
    a, b = (ctx.tensor(t, "as_is") for t in call.inputs)
    ctx.emit("matmul", [a, b], call.outputs[0], layout="as_is")


@keras_converter("ops.Reshape", "ops.ExpandDims", "ops.Squeeze")
def reshape(ctx, layer, call):
    """Shape-only ops: the output's Keras shape (batch aside) must be known,
    and the batch axis must stay axis 0 with the same size."""
    out = call.out_shapes[0]
    x = call.inputs[0]
    if not out or not _known(out[1:]) or call.in_shapes[0][:1] != out[:1]:
        raise unsupported(layer, f"{type(layer).__name__} from {call.in_shapes[0]} to {out} (batch axis moved or unknown sizes)")
    ctx.emit("reshape", [ctx.tensor(x, "as_is")], call.outputs[0], layout="as_is", attrs={"shape": [int(s) for s in out[1:]]})


@keras_converter("ops.Transpose")
def transpose(ctx, layer, call):
    rank = len(call.in_shapes[0])
    axes = tuple(range(rank))[::-1] if layer.axes is None else tuple(int(a) % rank for a in layer.axes)
    src = ctx.graph.producer(call.inputs[0])
    if axes[0] != 0 and (src is None or src.op != "variable"):  # a variable has no batch axis (ReversibleEmbedding's E.T)
        raise unsupported(layer, f"ops.transpose with axes {axes} (moves the batch axis)")
    ctx.emit("permute", [ctx.tensor(call.inputs[0], "as_is")], call.outputs[0], layout="as_is", attrs={"dims": axes})


@keras_converter("ops.Erf")
def erf(ctx, layer, call):
    ctx.emit("activation", [call.inputs[0]], call.outputs[0], attrs={"fn": "erf"})


@keras_converter("ops.Mean")
def mean(ctx, layer, call):
    """ops.mean(x, axis, keepdims) (numpy.py Mean): a reduction over Keras axes, batch excluded."""
    x = ctx.tensor(call.inputs[0], "as_is")
    rank = ctx.rank(x)
    axis = layer.axis if layer.axis is None or isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axes = list(range(rank)) if axis is None else [int(a) % rank for a in axis]
    if 0 in axes:
        raise unsupported(layer, "ops.mean over the batch axis")
    ctx.emit("global_avg_pool", [x], call.outputs[0], layout="as_is", attrs={"axes": axes, "keepdim": bool(layer.keepdims)})


@keras_converter("ops.Take")
def take(ctx, layer, call):
    """ops.take(table, ids, axis=0) with a table read from a variable (keras-hub's
    ReversibleEmbedding): torch indexing `table[ids]` keeps the table trainable."""
    if len(call.inputs) != 2 or layer.axis not in (0, None) or ctx.rank(call.inputs[0]) < 1:
        raise unsupported(layer, "ops.take other than table rows by tensor ids (axis 0)")
    table, ids = call.inputs
    if layer.axis is None and ctx.rank(table) != 1:
        raise unsupported(layer, "ops.take on a flattened table (axis=None)")
    ids = ctx.tensor(ids, "as_is")
    record_input_high(ctx, ids, ctx.keras_shape(table)[0])  # random test ids index the table's rows
    ctx.emit("take", [ctx.tensor(table, "as_is"), ids], call.outputs[0], layout="as_is")
