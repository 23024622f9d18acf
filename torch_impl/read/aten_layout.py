"""Readers of torch.export's ATen layout and indexing operations (views,
permutes, slices, concatenation, pooling calls). See torch_impl/read/aten.py."""

from __future__ import annotations

import torch

from torch_impl.read import torch_reader
from torch_impl.read.tensor_ops import _adaptive, _reshape, emit_permute, moved_piece

__all__ = []

_INT_MAX = 2**63 - 1  # aten.slice's open end (x[a:] is slice(x, dim, a, 9223372036854775807))


@torch_reader("aten.view", "aten.reshape", "aten._unsafe_view", "aten.flatten", "aten.unsqueeze", "aten.squeeze",
              "aten.unflatten")
def reshape(ctx, n):
    _reshape(ctx, n, n.args[0])


@torch_reader("aten.expand", "aten.expand_as", "aten.broadcast_to")
def expand(ctx, n):
    if tuple(ctx.value(n).shape[1:]) == tuple(ctx.shape(n.args[0])[1:]):  # a class token over the batch
        return ctx.alias(n.args[0])
    raise ctx.unsupported("expand that broadcasts (only no-op expands, e.g. of a batch-broadcast parameter)")


@torch_reader("aten.permute", "aten.transpose", "aten.t")
def permute(ctx, n):
    x = n.args[0]
    r = ctx.rank(x)
    if n.target._opname == "permute":
        dims = tuple(ctx.dim(d, x) for d in ctx.value(n.args[1]))
    else:
        a, b = (ctx.dim(ctx.value(d), x) for d in (n.args[1:3] if n.target._opname == "transpose" else (0, 1)))
        dims = list(range(r))
        dims[a], dims[b] = dims[b], dims[a]
        dims = tuple(dims)
    emit_permute(ctx, n, x, dims)


@torch_reader("aten.cat", "aten.concat")
def cat(ctx, n):
    xs = [x for x in ctx.value_list(n.args[0]) if ctx.values[x].numel() or ctx.values[x].dim() > 1]
    axis = ctx.dim(ctx.value(ctx.arg(1, "dim", 0)), xs[0])
    if axis == 0:
        raise ctx.unsupported("concatenating along the batch axis")
    ctx.emit("concat", [ctx.tensor(x) for x in xs], attrs={"axis": axis})


def _slice_entry(ctx, x, axis, start, stop, step):
    size = int(ctx.values[x].shape[axis])
    start, stop, step = slice(start, None if stop is None or stop >= _INT_MAX else stop, step).indices(size)
    return [None, None, 1] if (start, stop, step) == (0, size, 1) else [start, stop, step]


@torch_reader("aten.slice")
def slice_(ctx, n):
    x = n.args[0]
    axis = ctx.dim(ctx.value(ctx.arg(1, "dim", 0)), x)
    entry = _slice_entry(ctx, x, axis, ctx.value(ctx.arg(2, "start")), ctx.value(ctx.arg(3, "end")), ctx.value(ctx.arg(4, "step", 1)) or 1)
    if entry == [None, None, 1]:
        return ctx.alias(x)
    if axis == 0:
        raise ctx.unsupported("slicing the batch axis")
    index = [[None, None, 1]] * ctx.rank(x)
    index[axis] = entry
    ctx.emit("slice", [ctx.tensor(x)], attrs={"index": index})


@torch_reader("aten.select")
def select(ctx, n):
    x = n.args[0]
    if x in ctx.moved and int(ctx.value(n.args[1])) == 0:  # qkv[0] of a batch-moving permute
        return moved_piece(ctx, ctx.moved[x], ctx.value(n.args[2]))
    axis = ctx.dim(ctx.value(n.args[1]), x)
    if axis == 0:
        raise ctx.unsupported("selecting along the batch axis")
    index = [[None, None, 1]] * ctx.rank(x)
    index[axis] = int(ctx.value(n.args[2])) % int(ctx.values[x].shape[axis])
    ctx.emit("slice", [ctx.tensor(x)], attrs={"index": index})


@torch_reader("aten.split", "aten.split_with_sizes", "aten.chunk", "aten.unbind")
def split(ctx, n):
    """Pieces along one axis, each a `slice` node picked by the getitem that follows."""
    x = n.args[0]
    unbind = n.target._opname == "unbind"
    if x in ctx.moved and unbind and int(ctx.value(ctx.arg(1, "dim", 0))) == 0:  # q, k, v = qkv.unbind(0)
        ctx.tuples[n] = [{"moved": ctx.moved[x], "item": i} for i in range(len(ctx.values[n]))]
        return
    axis = ctx.dim(ctx.value(ctx.arg(1 if unbind else 2, "dim", 0)), x)
    if axis == 0:
        raise ctx.unsupported("splitting the batch axis")
    pieces, start, rank = [], 0, ctx.rank(x)
    for piece in ctx.value(n):
        stop = start + (1 if unbind else int(piece.shape[axis]))
        index = [[None, None, 1]] * rank
        index[axis] = start if unbind else [start, stop, 1]
        pieces.append({"input": ctx.tensor(x), "index": index})
        start = stop
    ctx.tuples[n] = pieces


@torch_reader("aten.index")
def index(ctx, n):
    """x[idx0, idx1, ...] whose indices are constant aranges, each along its own
    axis of the result (transformers' mask `attention_mask[batch_arange[:, None,
    None, None], kv_arange[None, None, None, :]]`): a reshape of x."""
    x, idx = n.args[0], n.args[1]
    xv, out = ctx.values[x], ctx.values[n]
    if len(idx) != xv.dim() or any(i is None or i not in ctx.static for i in idx):
        raise ctx.unsupported("indexing with tensors computed from the inputs, or with None (only constant aranges)")
    axes = []
    for k, i in enumerate(idx):
        v = ctx.values[i]
        long = [d for d, s in enumerate(v.shape) if s != 1]
        if len(long) != 1 or v.numel() != xv.shape[k] or not torch.equal(v.flatten(), torch.arange(xv.shape[k])):
            raise ctx.unsupported(f"index {k} is not an arange over axis {k} of the indexed tensor")
        axes.append(long[0])
    if axes != sorted(axes) or out.numel() != xv.numel():
        raise ctx.unsupported("an index that reorders or repeats entries")
    _reshape(ctx, n, x)


@torch_reader("aten.adaptive_avg_pool2d", "aten.adaptive_avg_pool1d")
def adaptive_avg_pool(ctx, n):
    _adaptive(ctx, n, n.args[0], ctx.value(n.args[1]), "avg")


@torch_reader("aten.pad", "aten.constant_pad_nd")
def pad(ctx, n):
    from torch_impl.read.tensor_ops import pad as read_pad

    if n.target._opname == "constant_pad_nd":
        pads, value = ctx.value(n.args[1]), ctx.value(ctx.arg(2, "value", 0.0))
        return ctx.emit("pad", [ctx.tensor(n.args[0])], attrs={"pads": [int(p) for p in pads], "value": float(value or 0.0)})
    read_pad(ctx, n)
