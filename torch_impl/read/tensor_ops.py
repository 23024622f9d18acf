"""Readers for pooling, arithmetic and layout ops (fx call_function /
call_method nodes and the pooling modules). See torch_impl/read/ops.py."""

from __future__ import annotations

import torch
import torch.fx as fx

from torch_impl.read import torch_reader

__all__ = []


def _pairs(v, dims) -> tuple:
    return tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v),) * dims


# ------------------------------------------------------------- pooling ---
def _pool_padding(ctx, n, kernel, stride, pad):
    """[(before, after)] per spatial axis; ceil_mode's extra window becomes pad after."""
    in_sp, out_sp = ctx.shape(n.args[0])[2:], ctx.out_shape()[2:]
    return [(p, p + max(0, (o - 1) * s + k - (i + 2 * p))) for i, o, k, s, p in zip(in_sp, out_sp, kernel, stride, pad)]


@torch_reader("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d")
def pool(ctx, n):
    m = ctx.module()
    _pool(ctx, n, "Avg" in type(m).__name__, m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1),
          getattr(m, "return_indices", False), getattr(m, "count_include_pad", True), getattr(m, "divisor_override", None))


@torch_reader("function.avg_pool2d", "function.max_pool2d", "function.avg_pool1d", "function.max_pool1d")
def pool_fn(ctx, n):
    """F.avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode, count_include_pad=True, divisor_override)
    and F.max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode, return_indices)
    (torch/nn/functional.py); ceil_mode is read from the output size."""
    avg = n.target.__name__.startswith("avg")
    k = ctx.value(ctx.arg(1, "kernel_size"))
    stride = ctx.value(ctx.arg(2, "stride")) or k
    pad = ctx.value(ctx.arg(3, "padding", 0))
    if avg:
        _pool(ctx, n, True, k, stride, pad, 1, False, ctx.value(ctx.arg(5, "count_include_pad", True)),
              ctx.value(ctx.arg(6, "divisor_override")))
    else:
        _pool(ctx, n, False, k, stride, pad, ctx.value(ctx.arg(4, "dilation", 1)), ctx.value(ctx.arg(6, "return_indices", False)),
              True, None)


def _pool(ctx, n, avg, kernel, stride, pad, dilation, return_indices, count_include_pad, divisor_override):
    dims = len(ctx.shape(n.args[0])) - 2
    kernel = _pairs(kernel, dims)
    stride = _pairs(stride if stride is not None else kernel, dims)
    pad = _pairs(pad, dims)
    if return_indices or any(d != 1 for d in _pairs(dilation, dims)):
        raise ctx.unsupported("pooling with dilation or return_indices")
    padding = _pool_padding(ctx, n, kernel, stride, pad)
    attrs = {"dims": dims, "kernel_size": kernel, "stride": stride, "padding": padding}
    if avg:
        if divisor_override is not None:
            raise ctx.unsupported("divisor_override")
        extra = any(b != a for b, a in padding)
        if extra and count_include_pad and any(pad):
            raise ctx.unsupported("ceil_mode average pooling that counts padding and hangs over the edge")
        attrs["count_include_pad"] = bool(count_include_pad) and not extra
        ctx.emit("avg_pool", [ctx.tensor(n.args[0])], attrs=attrs)
    else:
        ctx.emit("max_pool", [ctx.tensor(n.args[0])], attrs=attrs)


def _adaptive(ctx, n, x, size, kind):
    in_sp = ctx.shape(x)[2:]
    size = _pairs(size, len(in_sp))
    size = tuple(i if s is None else s for s, i in zip(size, in_sp))
    if all(s == 1 for s in size):
        ctx.emit(f"global_{kind}_pool", [ctx.tensor(x)], attrs={"axes": list(range(2, 2 + len(in_sp))), "keepdim": True})
    elif size == tuple(in_sp):
        ctx.alias(x)
    elif all(i % s == 0 for i, s in zip(in_sp, size)):
        k = tuple(i // s for i, s in zip(in_sp, size))
        attrs = {"dims": len(k), "kernel_size": k, "stride": k, "padding": [(0, 0)] * len(k)}
        ctx.emit(f"{kind}_pool", [ctx.tensor(x)], attrs=attrs | ({"count_include_pad": True} if kind == "avg" else {}))
    elif kind == "avg" and len(size) == 2:  # windows of unequal sizes (VGG's 2x2 -> 7x7 at small inputs)
        ctx.emit("adaptive_avg_pool", [ctx.tensor(x)], attrs={"output_size": list(size)})
    else:
        raise ctx.unsupported(f"adaptive {kind} pooling from {tuple(in_sp)} to {size} (not a whole multiple)")


@torch_reader("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")
def adaptive_pool(ctx, n):
    m = ctx.module()
    _adaptive(ctx, n, n.args[0], m.output_size, "avg" if "Avg" in type(m).__name__ else "max")


@torch_reader("function.adaptive_avg_pool2d", "function.adaptive_avg_pool1d")
def adaptive_pool_fn(ctx, n):
    _adaptive(ctx, n, n.args[0], ctx.value(ctx.arg(1, "output_size")), "avg")


@torch_reader("function.mean", "method.mean", "function.amax", "method.amax")
def mean(ctx, n):
    x = n.args[0]
    dims = ctx.value(ctx.arg(1, "dim"))
    if dims is None:
        raise ctx.unsupported("a mean over every axis, batch included")
    dims = sorted(ctx.dim(d, x) for d in (dims if isinstance(dims, (list, tuple)) else [dims]))
    if 0 in dims:
        raise ctx.unsupported("a reduction over the batch axis")
    kind = "max" if "amax" in str(getattr(n.target, "__name__", n.target)) else "avg"
    ctx.emit(f"global_{kind}_pool", [ctx.tensor(x)], attrs={"axes": dims, "keepdim": bool(ctx.value(ctx.arg(2, "keepdim", False)))})


# ---------------------------------------------------------- arithmetic ---
_BINARY = {"add": "add", "iadd": "add", "sub": "sub", "isub": "sub", "mul": "mul", "imul": "mul",
           "truediv": "div", "div": "div", "itruediv": "div", "maximum": "maximum", "minimum": "minimum"}


@torch_reader(*(f"function.{k}" for k in _BINARY), *(f"method.{k}" for k in ("add", "sub", "mul", "div")))
def binary(ctx, n):
    name = str(getattr(n.target, "__name__", n.target))
    op = _BINARY[name]
    if n.kwargs.get("alpha", 1) != 1 or n.kwargs.get("rounding_mode") is not None:
        raise ctx.unsupported("alpha or rounding_mode")
    a, b = n.args[0], n.args[1]
    ta, tb = ctx.is_tensor(a), ctx.is_tensor(b)
    if ta and tb:
        ctx.emit(op, [ctx.operand(a), ctx.operand(b)])
    elif ta or tb:
        const = ctx.value(b if ta else a)
        if isinstance(const, torch.Tensor):
            raise ctx.unsupported("a tensor operand the port has not read")
        ctx.emit(op, [ctx.tensor(a if ta else b)], attrs={"const": float(const), "const_side": "right" if ta else "left"})
    else:
        raise ctx.unsupported("arithmetic without a tensor operand")


@torch_reader("function.cat", "function.concat", "function.concatenate")
def cat(ctx, n):
    xs = list(ctx.arg(0, "tensors"))
    axis = ctx.dim(ctx.value(ctx.arg(1, "dim", 0)), xs[0])
    if axis == 0:
        raise ctx.unsupported("concatenating along the batch axis")
    ctx.emit("concat", [ctx.tensor(x) for x in xs], attrs={"axis": axis})


@torch_reader("function.pad")
def pad(ctx, n):
    mode = ctx.value(ctx.arg(2, "mode", "constant"))
    if mode != "constant":
        raise ctx.unsupported(f"padding mode {mode!r}")
    pads = [int(p) for p in ctx.value(ctx.arg(1, "pad"))]
    value = ctx.value(ctx.arg(3, "value", 0.0))
    ctx.emit("pad", [ctx.tensor(n.args[0])], attrs={"pads": pads, "value": float(value or 0.0)})


# -------------------------------------------------------------- layout ---
def _reshape(ctx, n, x):
    in_v, out_v = ctx.value(x), ctx.value(n)
    if ctx.is_parameter(x) and out_v.numel() == in_v.numel():
        return ctx.parameter_view(x)
    if out_v.shape[0] != in_v.shape[0]:
        return _batch_reshape(ctx, n, x, tuple(in_v.shape), tuple(out_v.shape))
    if out_v.shape[1:] == in_v.shape[1:]:
        return ctx.alias(x)
    if out_v.dim() == 2:
        return ctx.emit("flatten", [ctx.tensor(x)], attrs={"start_dim": 1})
    ctx.emit("reshape", [ctx.tensor(x)], attrs={"shape": [int(s) for s in out_v.shape[1:]]})


def _batch_reshape(ctx, n, x, a, b):
    """A reshape that folds leading axes into the batch, (N, k, ...) -> (N*k, ...)
    (MobileViT's unfold `reshape(B * C * nh, ph, nw, pw)`), or back: a row-major
    reshape to (N, k, *b[1:]) then `merge_time`, or `split_time` into
    (N, k, *a[1:]) then a reshape. k is read from the example's sizes."""
    what = f"a reshape that changes the batch axis ({a} -> {b})"
    if b[0] > a[0] and b[0] % a[0] == 0:
        k = b[0] // a[0]
        inner = x if a[1:] == (k, *b[1:]) else ctx.emit("reshape", [ctx.tensor(x)], attrs={"shape": [k, *b[1:]]},
                                                          out=f"{n.name}_unmerged", internal=True, shape=(None, k, *b[1:]))
        return ctx.emit("merge_time", [ctx.tensor(inner) if inner is x else inner])
    if a[0] > b[0] and a[0] % b[0] == 0:
        k = a[0] // b[0]
        if (k, *a[1:]) == b[1:]:
            return ctx.emit("split_time", [ctx.tensor(x)], attrs={"steps": k})
        split = ctx.emit("split_time", [ctx.tensor(x)], attrs={"steps": k}, out=f"{n.name}_split", internal=True,
                         shape=(None, k, *a[1:]))
        return ctx.emit("reshape", [split], attrs={"shape": list(b[1:])})
    raise ctx.unsupported(what)


@torch_reader("method.view", "method.reshape", "function.reshape", "method.flatten", "function.flatten", "Flatten",
              "method.expand", "method.expand_as", "method.squeeze", "function.squeeze", "method.unsqueeze", "function.unsqueeze",
              "method.reshape_as", "method.view_as")
def reshape(ctx, n):
    name = str(getattr(n.target, "__name__", n.target))
    if name in ("expand", "expand_as"):
        if tuple(ctx.value(n).shape[1:]) == tuple(ctx.shape(n.args[0])[1:]):  # e.g. a class token over the batch
            return ctx.alias(n.args[0])
        raise ctx.unsupported("expand that broadcasts (only no-op expands, e.g. of a batch-broadcast parameter)")
    _reshape(ctx, n, n.args[0])


@torch_reader("method.permute", "function.permute")
def permute(ctx, n):
    x = n.args[0]
    dims = n.args[1:] if len(n.args) > 2 else ctx.value(ctx.arg(1, "dims"))
    emit_permute(ctx, n, x, tuple(ctx.dim(d, x) for d in ctx.value(tuple(dims))))


def emit_permute(ctx, n, x, dims):
    """A `permute` node; one that moves the batch axis (timm's qkv
    `.permute(2, 0, 3, 1, 4)`) is kept aside (ctx.moved) for the unbind(0) /
    x[i] that takes its first axis apart: piece i is x's axis dims[0] at i,
    then the rest of the perm, whose first axis must be the batch again."""
    if dims[0] != 0:
        a, rest = dims[0], [d - (d > dims[0]) for d in dims[1:]]
        if rest[0] != 0:
            raise ctx.unsupported("a permute that moves the batch axis other than to the second place")
        ctx.moved[n] = (x, a, tuple(rest))
        return
    ctx.alias(x) if dims == tuple(range(len(dims))) else ctx.emit("permute", [ctx.tensor(x)], attrs={"dims": dims})


def moved_piece(ctx, moved, i: int) -> None:
    """Item i along axis 0 of a permute kept aside by emit_permute: a `slice`
    of its input at i on the moved axis, then a `permute` (named after the node)."""
    x, a, rest = moved
    index = [[None, None, 1]] * ctx.rank(x)
    index[a] = int(i) % int(ctx.values[x].shape[a])
    if rest == tuple(range(len(rest))):
        return ctx.emit("slice", [ctx.tensor(x)], attrs={"index": index})
    shape = ctx.values[x].select(a, 0).shape
    part = ctx.emit("slice", [ctx.tensor(x)], attrs={"index": index}, out=f"{ctx.node.name}_pick", internal=True,
                    shape=(None, *shape[1:]))
    ctx.emit("permute", [part], attrs={"dims": rest})


@torch_reader("method.transpose", "function.transpose")
def transpose(ctx, n):
    x = n.args[0]
    a, b = ctx.dim(ctx.value(ctx.arg(1, "dim0")), x), ctx.dim(ctx.value(ctx.arg(2, "dim1")), x)
    dims = list(range(ctx.rank(x)))
    dims[a], dims[b] = dims[b], dims[a]
    emit_permute(ctx, n, x, tuple(dims))


@torch_reader("method.unbind", "function.unbind")
def unbind(ctx, n):
    """x.unbind(dim): pieces picked by the getitems that follow (a `slice` each)."""
    x = n.args[0]
    axis = ctx.dim(ctx.value(ctx.arg(1, "dim", 0)), x) if x not in ctx.moved else int(ctx.value(ctx.arg(1, "dim", 0)))
    if x in ctx.moved:
        if axis != 0:
            raise ctx.unsupported("unbind of a batch-moving permute along an axis other than 0")
        ctx.tuples[n] = [{"moved": ctx.moved[x], "item": i} for i in range(len(ctx.values[n]))]
        return
    if axis == 0:
        raise ctx.unsupported("unbinding the batch axis")
    pieces = []
    for i in range(len(ctx.values[n])):
        index = [[None, None, 1]] * ctx.rank(x)
        index[axis] = i
        pieces.append({"input": ctx.tensor(x), "index": index})
    ctx.tuples[n] = pieces


@torch_reader("method.chunk", "function.chunk", "method.split", "function.split")
def chunk(ctx, n):
    """Pieces along one axis: each a `slice` node, picked by the getitem that follows."""
    x = n.args[0]
    axis = ctx.dim(ctx.value(ctx.arg(2, "dim", 0)), x)
    if axis == 0:
        raise ctx.unsupported("splitting the batch axis")
    pieces, start = [], 0
    rank = ctx.rank(x)
    for piece in ctx.value(n):
        stop = start + int(piece.shape[axis])
        index = [[None, None, 1]] * rank
        index[axis] = [start, stop, 1]
        pieces.append({"input": ctx.tensor(x), "index": index})
        start = stop
    ctx.tuples[n] = pieces  # each becomes a `slice` node named after the getitem that picks it


def _index_list(ctx, x, idx) -> list:
    idx = idx if isinstance(idx, tuple) else (idx,)
    rank = ctx.rank(x)
    if any(i is None or i is Ellipsis or isinstance(i, (fx.Node, torch.Tensor, list)) for i in idx):
        raise ctx.unsupported("indexing with None, ..., tensors or lists (only ints and slices)")
    out = []
    shape = ctx.value(x).shape
    for axis in range(rank):
        i = idx[axis] if axis < len(idx) else slice(None)
        if isinstance(i, slice):
            start, stop, step = i.indices(int(shape[axis]))
            out.append([None, None, 1] if (start, stop, step) == (0, int(shape[axis]), 1) else [start, stop, step])
        else:
            out.append(int(i) % int(shape[axis]))
    if out[0] != [None, None, 1]:
        raise ctx.unsupported("indexing the batch axis")
    return out


@torch_reader("function.getitem")
def getitem(ctx, n):
    x, idx = n.args
    if x in ctx.tuples:  # a piece of chunk/split, or an (output, weights) pair
        item = ctx.tuples[x][idx]
        if item is None:
            raise ctx.unsupported(f"item {idx} of {x.name} is not a tensor the port has read")
        if isinstance(item, str):
            ctx.tensor_of[n] = item
        elif "moved" in item:
            moved_piece(ctx, item["moved"], item["item"])
        else:
            ctx.emit("slice", [item["input"]], attrs={"index": item["index"]})
        return
    if x in ctx.moved and isinstance(ctx.value(idx), int):  # qkv[0] of a batch-moving permute
        return moved_piece(ctx, ctx.moved[x], ctx.value(idx))
    index = _index_list(ctx, x, ctx.value(idx))
    if all(i == [None, None, 1] for i in index):  # x[:, :C] of a C-channel x (GhostNet): the tensor itself
        return ctx.alias(x)
    ctx.emit("slice", [ctx.tensor(x)], attrs={"index": index})
