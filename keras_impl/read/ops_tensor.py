"""keras.ops tensor operations met when tracing custom layers (keras_impl/read/trace.py):
matmul, reshape / expand_dims / squeeze, transpose / swapaxes, erf, mean, take, unstack /
split, roll, sum, zeros_like.

Each works on the tensor in Keras' own layout (`ctx.tensor(x, "as_is")`):
these ops name Keras axes. Operations keep the batch axis where it is; one
that moves or merges it is refused (the neutral graph keeps axis 0 the batch).
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter, unsupported
from keras_impl.read.ops_shape import record_input_high

__all__ = []


def _known(shape) -> bool:
    return all(s is not None for s in shape)


def unbatched(ctx, tensor: str) -> bool:
    """A tensor computed from a traced layer's variables and constants only
    (no model input upstream): it has no batch axis, so a reshape or transpose
    may move its axis 0 (Perceiver's ops.expand_dims(self.latent_array, 0),
    ReversibleEmbedding's ops.transpose(table))."""
    todo, seen = [tensor], {tensor}
    while todo:
        t = todo.pop()
        node = ctx.graph.producer(t)
        if t in ctx.graph.inputs or node is None:
            return False
        for i in node.inputs:
            if i not in seen:
                seen.add(i)
                todo.append(i)
    return True


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
    if unbatched(ctx, x) and _known(out):  # the whole shape, axis 0 included
        ctx.emit("reshape", [ctx.tensor(x, "as_is")], call.outputs[0], layout="as_is",
                 attrs={"shape": [int(s) for s in out], "unbatched": True})
        return
    if not out or not _known(out[1:]) or call.in_shapes[0][:1] != out[:1]:
        raise unsupported(layer, f"{type(layer).__name__} from {call.in_shapes[0]} to {out} (batch axis moved or unknown sizes)")
    attrs = {"shape": [int(s) for s in out[1:]]}
    if _merges_batch(call):
        attrs["merge_batch"] = True
    ctx.emit("reshape", [ctx.tensor(x, "as_is")], call.outputs[0], layout="as_is", attrs=attrs)


def _merges_batch(call) -> bool:
    """A traced reshape whose axis 0 holds the batch times another size on one
    side only: it merges the batch with an axis or splits it off again
    (keras.io Swin's window_partition, (B, H, W, C) -> (B * windows, w, w, C)).
    The traced (concrete) shapes tell: axis 0 differs before and after."""
    raw = tuple(getattr(call.args[0], "shape", ()) or ())
    if not raw or not _known(raw) or not _known(call.out_shapes[0][1:]):
        return False  # outside a trace the batch is None: it stays axis 0
    rest = 1
    for s in call.out_shapes[0][1:]:
        rest *= int(s)
    total = 1
    for s in raw:
        total *= int(s)
    return total // rest != int(raw[0])


@keras_converter("ops.Transpose", "ops.Swapaxes")
def transpose(ctx, layer, call):
    """ops.transpose(x, axes) / ops.swapaxes(x, a, b) (keras.layers.Attention's key.T) as a permute."""
    rank = len(call.in_shapes[0])
    if type(layer).__name__ == "Swapaxes":
        axes = list(range(rank))
        a, b = int(layer.axis1) % rank, int(layer.axis2) % rank
        axes[a], axes[b] = axes[b], axes[a]
        axes = tuple(axes)
    else:
        axes = tuple(range(rank))[::-1] if layer.axes is None else tuple(int(a) % rank for a in layer.axes)
    # a variable has no batch axis (ReversibleEmbedding's E.T); inside a traced
    # layer an axis of known size may come first (Swin's qkv (3, B * windows,
    # heads, N, d), then picked by [0]); a model's own graph keeps the batch first
    moved_ok = unbatched(ctx, call.inputs[0]) or (call.base and call.out_shapes[0][0] is not None)
    if axes[0] != 0 and not moved_ok:
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


def _split_axis(layer, call, axis) -> int:
    rank = len(call.in_shapes[0])
    a = int(axis) % rank
    if a == 0:
        raise unsupported(layer, f"{type(layer).__name__} along the batch axis")
    return a


@keras_converter("ops.Unstack", "ops.Split")
def unstack_split(ctx, layer, call):
    """ops.unstack(x, axis) / ops.split(x, sections, axis) (core.py Unstack,
    numpy.py Split): one `slice` node per output on Keras' array, its sizes
    read from the outputs' shapes (an unstacked axis is dropped, an int index)."""
    axis = _split_axis(layer, call, layer.axis)
    x = ctx.tensor(call.inputs[0], "as_is")
    rank, start = len(call.in_shapes[0]), 0
    for i, (out, shape) in enumerate(zip(call.outputs, call.out_shapes)):
        index = [[None, None, None]] * rank
        if type(layer).__name__ == "Unstack":
            index[axis] = i
        else:
            size = int(shape[axis])
            index[axis] = [start or None, start + size, None]
            start += size
        ctx.emit("slice", [x], out, layout="as_is", attrs={"index": index}, keras_shape=tuple(shape),
                 node_name=ctx.node_name(f"{call.node_name}_{i}") if i else None)
        ctx.graph.tensors[out].dtype = ctx.graph.tensors[x].dtype


@keras_converter("ops.Roll")
def roll(ctx, layer, call):
    """ops.roll(x, shift, axis) (numpy.py Roll; Swin's shifted windows) as torch.roll on Keras' axes."""
    if layer.axis is None:
        raise unsupported(layer, "ops.roll of the flattened tensor (axis=None)")
    shifts = layer.shift if isinstance(layer.shift, (list, tuple)) else [layer.shift]
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(call.in_shapes[0])
    axes = [int(a) % rank for a in axes]
    if 0 in axes:
        raise unsupported(layer, "ops.roll along the batch axis")
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("roll", [x], call.outputs[0], layout="as_is", attrs={"shifts": [int(v) for v in shifts], "dims": axes})


@keras_converter("ops.Sum")
def sum_(ctx, layer, call):
    """ops.sum(x, axis, keepdims) (numpy.py Sum) over Keras axes, the batch excluded."""
    x = ctx.tensor(call.inputs[0], "as_is")
    rank = ctx.rank(x)
    axis = layer.axis if layer.axis is None or isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axes = list(range(rank)) if axis is None else sorted(int(a) % rank for a in axis)
    if 0 in axes:
        raise unsupported(layer, "ops.sum over the batch axis")
    ctx.emit("reduce_sum", [x], call.outputs[0], layout="as_is", attrs={"axes": axes, "keepdim": bool(layer.keepdims)})


@keras_converter("ops.ZerosLike")
def zeros_like(ctx, layer, call):
    """ops.zeros_like(x) (numpy.py ZerosLike): zeros of x's shape, in x's
    dtype (a float dtype given is the model's: one model.py serves float32 and float64)."""
    if layer.dtype is not None and not str(layer.dtype).startswith("float"):
        raise unsupported(layer, f"ops.zeros_like with dtype={layer.dtype!r}")
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("zeros_like", [x], call.outputs[0], layout="as_is")
