"""Readers of torch.export's ATen operations (torch_impl/read/capture.py), keyed
"aten.<name>" (`aten.add.Tensor` and `aten.add.Scalar` are both "aten.add").

What a graph captured by torch.export holds besides the `call_module` nodes of
modules with a reader: the operations of modules the port does not know, read
one by one into neutral ops. The set is the pre-dispatch ATen IR torch.export
produces (torch/_export, `torch.export.export` without run_decompositions:
linear, layer_norm, scaled_dot_product_attention stay whole), listed in
ATEN_COVERED below; layout ops are in read_aten_layout.py. Constants and sizes
(`aten.arange`, a causal mask built from them) never reach a reader: they are
folded from the example run (torch_impl/read/__init__.py `_mark_static`).
"""

from __future__ import annotations

import torch

from torch_impl.read import torch_reader
from torch_impl.read.ops import _layer_norm, act_attrs

__all__ = []

_EVAL_IDENTITY = ("dropout", "clone", "contiguous", "alias", "detach", "lift_fresh_copy", "feature_dropout")


# --------------------------------------------------------------- modules ---
@torch_reader("Embedding")
def embedding_module(ctx, n):
    m = ctx.module()
    if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
        raise ctx.unsupported("Embedding with max_norm, scale_grad_by_freq or sparse")
    _embedding(ctx, n.args[0], m.weight, m.padding_idx, f"{n.target}.weight")


@torch_reader("Conv1D")
def hf_conv1d(ctx, n):
    """transformers.pytorch_utils.Conv1D (GPT-2): y = x @ weight + bias, weight (in, out)."""
    m = ctx.module()
    w = m.weight
    attrs = {"in_features": int(w.shape[0]), "out_features": int(w.shape[1]), "bias": m.bias is not None, "weight_in_out": True}
    weights = {"weight": w} | ({"bias": m.bias} if m.bias is not None else {})
    ctx.emit("linear", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params=ctx.module_params(n.target, weights))


@torch_reader("BatchNormAct2d")
def batch_norm_act(ctx, n):
    """timm's BatchNormAct2d: BatchNorm2d, then its `act` module (drop is identity in eval)."""
    from torch_impl.read.ops import act_module_attrs

    m = ctx.module()
    act = None if type(m.act).__name__ == "Identity" else act_module_attrs(m.act)
    if act is None and type(m.act).__name__ != "Identity" or m.momentum is None or not m.track_running_stats:
        raise ctx.unsupported(f"BatchNormAct2d with act {type(m.act).__name__}, or without momentum / running statistics")
    weights = ({"weight": m.weight, "bias": m.bias} if m.affine else {}) | {"running_mean": m.running_mean, "running_var": m.running_var}
    attrs = {"num_features": m.num_features, "eps": float(m.eps), "momentum": float(m.momentum), "affine": m.affine,
             "scale": m.affine, "center": m.affine, "axis": 1}
    params = ctx.module_params(n.target, weights)
    if act is None:
        return ctx.emit("batch_norm", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params=params)
    bn = ctx.emit("batch_norm", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params=params, out=f"{n.name}_bn", internal=True)
    ctx.emit("activation", [bn], attrs=act)


def _embedding(ctx, ids, weight, padding_idx, param):
    attrs = {"num_embeddings": int(weight.shape[0]), "embedding_dim": int(weight.shape[1])}
    if padding_idx is not None:  # torch gives that row no gradient
        attrs["padding_idx"] = int(padding_idx) % int(weight.shape[0])
    ctx.emit("embedding", [ctx.tensor(ids)], attrs=attrs, weights={"weight": weight}, params={"weight": param})


def _param(ctx, a):
    """(tensor, parameter path) of a get_attr argument, or (None, None)."""
    if a is None:
        return None, None
    if not isinstance(a, torch.fx.Node) or a.op != "get_attr":
        raise ctx.unsupported(f"a weight computed in the graph ({getattr(a, 'name', a)!r}) rather than a parameter")
    return ctx.values[a], a.target


@torch_reader("aten.embedding")
def embedding(ctx, n):
    w, path = _param(ctx, n.args[0])
    pad = ctx.value(ctx.arg(2, "padding_idx", -1))
    _embedding(ctx, n.args[1], w, None if pad is None or pad < 0 else pad, path)


@torch_reader("aten.linear")
def linear(ctx, n):
    (w, wp), (b, bp) = _param(ctx, n.args[1]), _param(ctx, ctx.arg(2, "bias"))
    weights = {"weight": w} | ({"bias": b} if b is not None else {})
    attrs = {"in_features": int(w.shape[1]), "out_features": int(w.shape[0]), "bias": b is not None}
    ctx.emit("linear", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params={"weight": wp} | ({"bias": bp} if bp else {}))


@torch_reader("aten.conv2d", "aten.conv1d")
def conv(ctx, n):
    """aten.conv2d(x, weight, bias, stride, padding, dilation, groups) on a
    module's own weight (timm's Conv2dSame: F.pad with TF's "same" pads, then
    F.conv2d with padding 0); string paddings are nn.Conv2d's, not here."""
    (w, wp), (b, bp) = _param(ctx, n.args[1]), _param(ctx, ctx.arg(2, "bias"))
    dims = w.dim() - 2
    pairs = lambda v, d: tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v),) * d  # noqa: E731
    padding = ctx.value(ctx.arg(4, "padding", 0))
    if isinstance(padding, str):
        raise ctx.unsupported(f"conv padding={padding!r}")
    attrs = {"dims": dims, "in_channels": int(w.shape[1]) * int(ctx.value(ctx.arg(6, "groups", 1))), "out_channels": int(w.shape[0]),
             "kernel_size": tuple(w.shape[2:]), "stride": pairs(ctx.value(ctx.arg(3, "stride", 1)), dims),
             "dilation": pairs(ctx.value(ctx.arg(5, "dilation", 1)), dims), "groups": int(ctx.value(ctx.arg(6, "groups", 1))),
             "bias": b is not None, "padding": [(p, p) for p in pairs(padding, dims)]}
    weights = {"weight": w} | ({"bias": b} if b is not None else {})
    ctx.emit("conv", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params={"weight": wp} | ({"bias": bp} if bp else {}))


@torch_reader("aten.layer_norm")
def layer_norm(ctx, n):
    (w, wp), (b, bp) = _param(ctx, ctx.arg(2, "weight")), _param(ctx, ctx.arg(3, "bias"))
    _layer_norm(ctx, n.args[0], ctx.value(n.args[1]), w, b, ctx.value(ctx.arg(4, "eps", 1e-5)), {"weight": wp, "bias": bp})


@torch_reader("aten.batch_norm")
def batch_norm(ctx, n):
    """F.batch_norm on a module's own state (timm's BatchNormAct2d), eval mode."""
    (w, wp), (b, bp), (rm, rmp), (rv, rvp) = (_param(ctx, ctx.arg(i)) for i in (1, 2, 3, 4))
    if ctx.value(ctx.arg(5, "training")) or rm is None:
        raise ctx.unsupported("batch_norm in training mode or without running statistics")
    owner = rmp.rsplit(".", 1)[0]
    momentum = getattr(ctx.gm.get_submodule(owner) if owner in ctx.modules else None, "momentum", None)
    momentum = float(ctx.value(ctx.arg(6, "momentum")) if momentum is None else momentum)
    weights = ({"weight": w, "bias": b} if w is not None else {}) | {"running_mean": rm, "running_var": rv}
    params = ({"weight": wp, "bias": bp} if w is not None else {}) | {"running_mean": rmp, "running_var": rvp}
    attrs = {"num_features": int(rm.shape[0]), "eps": float(ctx.value(ctx.arg(7, "eps"))), "momentum": momentum,
             "affine": w is not None, "scale": w is not None, "center": b is not None, "axis": 1}
    ctx.emit("batch_norm", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params=params)


# ----------------------------------------------------------- activations ---
_ACT = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu", "hardswish": "hard_silu",
        "hardsigmoid": "hard_sigmoid", "mish": "mish", "elu": "elu", "softplus": "softplus"}


@torch_reader(*(f"aten.{k}" for k in _ACT))
def activation(ctx, n):
    fn = _ACT[n.target._opname]
    if fn == "softplus" and (ctx.value(ctx.arg(1, "beta", 1)) != 1 or ctx.value(ctx.arg(2, "threshold", 20)) != 20):
        raise ctx.unsupported("softplus with beta != 1 or threshold != 20")
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs=act_attrs(fn))


@torch_reader("aten.gelu")
def gelu(ctx, n):
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs={"fn": "gelu", "approximate": n.kwargs.get("approximate", "none") == "tanh"})


@torch_reader("aten.hardtanh")
def hardtanh(ctx, n):
    lo, hi = ctx.value(ctx.arg(1, "min_val", -1.0)), ctx.value(ctx.arg(2, "max_val", 1.0))
    if (lo, hi) != (0.0, 6.0):
        raise ctx.unsupported(f"hardtanh({lo}, {hi}) other than relu6")
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs={"fn": "relu6"})


@torch_reader("aten.leaky_relu")
def leaky_relu(ctx, n):
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs={"fn": "leaky_relu", "negative_slope": float(ctx.value(ctx.arg(1, "negative_slope", 0.01)))})


@torch_reader("aten.softmax", "aten._softmax", "aten.log_softmax", "aten._log_softmax")
def softmax(ctx, n):
    fn = "log_softmax" if "log" in n.target._opname else "softmax"
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs={"fn": fn, "axis": ctx.dim(ctx.value(n.args[1]))})


@torch_reader(*(f"aten.{k}" for k in _EVAL_IDENTITY))
def identity(ctx, n):
    if "dropout" in n.target._opname and ctx.value(ctx.arg(2, "train", False)):
        raise ctx.unsupported("dropout in training mode (the port reads eval-mode modules)")
    ctx.alias(n.args[0])


@torch_reader("aten.to", "aten._to_copy", "aten.type_as")
def cast(ctx, n):
    src, out = ctx.values[n.args[0]], ctx.values[n]
    if src.dtype == out.dtype:
        return ctx.alias(n.args[0])
    ctx.emit("cast", [ctx.tensor(n.args[0])], attrs={"dtype": str(out.dtype).replace("torch.", "")})


# ------------------------------------------------------------ arithmetic ---
_BINARY = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "maximum": "maximum", "minimum": "minimum",
           "pow": "pow", "rsub": "sub"}
_COMPARE = {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal"}
_LOGICAL = {"__and__": "and", "bitwise_and": "and", "logical_and": "and", "__or__": "or", "bitwise_or": "or", "logical_or": "or"}
_MATH = {"sqrt": "sqrt", "rsqrt": "rsqrt", "exp": "exp", "log": "log", "erf": "erf", "neg": "negative", "abs": "abs",
         "reciprocal": "reciprocal", "logical_not": "logical_not", "bitwise_not": "logical_not", "sin": "sin", "cos": "cos"}


def _scalar(ctx, a):
    """A Python number, or a one-element constant tensor as one; None for a graph tensor."""
    v = ctx.value(a)
    if isinstance(v, (int, float, bool)):
        return v
    if isinstance(v, torch.Tensor) and v.numel() == 1 and isinstance(a, torch.fx.Node) and a in ctx.static:
        return v.item()
    return None


def _two(ctx, n, op, a, b):
    """`op` of two operands, at most one a scalar (then attrs const / const_side)."""
    ca, cb = _scalar(ctx, a), _scalar(ctx, b)
    if ca is None and cb is None:
        return ctx.emit(op, [ctx.operand(a), ctx.operand(b)])
    if ca is not None and cb is not None:
        raise ctx.unsupported("arithmetic without a tensor operand")
    side, x, c = ("right", a, cb) if cb is not None else ("left", b, ca)
    return ctx.emit(op, [ctx.tensor(x)], attrs={"const": float(c), "const_side": side})


@torch_reader(*(f"aten.{k}" for k in _BINARY))
def binary(ctx, n):
    name = n.target._opname
    a, b = n.args[0], n.args[1]
    alpha = ctx.value(n.kwargs.get("alpha", n.args[2] if len(n.args) > 2 and name in ("add", "sub", "rsub") else 1))
    if n.kwargs.get("rounding_mode") is not None:
        raise ctx.unsupported("division with rounding_mode")
    if alpha != 1:
        raise ctx.unsupported(f"{name} with alpha={alpha}")
    if name == "rsub":
        a, b = b, a
    _two(ctx, n, _BINARY[name], a, b)


@torch_reader(*(f"aten.{k}" for k in _COMPARE))
def compare(ctx, n):
    op = _COMPARE[n.target._opname]
    a, b = n.args[0], n.args[1]
    c = _scalar(ctx, b)
    if c is not None:
        return ctx.emit("compare", [ctx.tensor(a)], attrs={"fn": op, "const": float(c)})
    ctx.emit("compare", [ctx.tensor(a), ctx.tensor(b)], attrs={"fn": op})


@torch_reader(*(f"aten.{k}" for k in _LOGICAL))
def logical(ctx, n):
    a, b = n.args[0], n.args[1]
    if ctx.values[a].dtype != torch.bool or ctx.values[b].dtype != torch.bool:
        raise ctx.unsupported("bitwise and/or of integers (only booleans)")
    ctx.emit("logical", [ctx.tensor(a), ctx.tensor(b)], attrs={"fn": _LOGICAL[n.target._opname]})


@torch_reader(*(f"aten.{k}" for k in _MATH))
def math(ctx, n):
    ctx.emit("math", [ctx.tensor(n.args[0])], attrs={"fn": _MATH[n.target._opname]})


@torch_reader("aten.where")
def where(ctx, n):
    cond, a, b = n.args[:3]
    ca, cb = _scalar(ctx, a), _scalar(ctx, b)
    inputs = [ctx.tensor(cond)] + [ctx.tensor(t) for t, c in ((a, ca), (b, cb)) if c is None]
    ctx.emit("where", inputs, attrs={"x": ca, "y": cb})


@torch_reader("aten.masked_fill")
def masked_fill(ctx, n):
    x, mask, value = n.args[:3]
    v = _scalar(ctx, value)
    if v is None:
        raise ctx.unsupported("masked_fill with a tensor value")
    ctx.emit("where", [ctx.tensor(mask), ctx.tensor(x)], attrs={"x": float(v), "y": None})


@torch_reader("aten.matmul", "aten.bmm", "function.matmul", "method.matmul", "function.bmm")
def matmul(ctx, n):
    a, b = n.args[:2]
    if ctx.rank(a) != ctx.rank(b) or ctx.rank(a) < 3:
        raise ctx.unsupported(f"matmul of ranks {ctx.rank(a)} and {ctx.rank(b)} (batched, equal ranks only)")
    ctx.emit("matmul", [ctx.tensor(a), ctx.tensor(b)])


@torch_reader("aten.scaled_dot_product_attention", "function.scaled_dot_product_attention")
def sdpa(ctx, n):
    q, k, v = n.args[:3]
    mask = ctx.arg(3, "attn_mask")
    if mask is not None and mask in ctx.static and ctx.values[mask].dtype == torch.bool and bool(ctx.values[mask].all()):
        mask = None  # a constant all-True mask (transformers builds one for ViT) masks nothing
    if ctx.value(ctx.arg(4, "dropout_p", 0.0)):
        raise ctx.unsupported("attention dropout (the port reads eval-mode modules)")
    if ctx.value(n.kwargs.get("enable_gqa", False)):
        raise ctx.unsupported("grouped-query attention (enable_gqa)")
    scale = ctx.value(ctx.arg(6, "scale"))
    e = ctx.shape(q)[-1]
    attrs = {"causal": bool(ctx.value(ctx.arg(5, "is_causal", False))),
             "scale": float(scale) if scale is not None else None, "head_dim": int(e),
             "mask": None if mask is None else ("bool" if ctx.values[mask].dtype == torch.bool else "add")}
    inputs = [ctx.tensor(q), ctx.tensor(k), ctx.tensor(v)] + ([ctx.tensor(mask)] if mask is not None else [])
    ctx.emit("scaled_dot_product_attention", inputs, attrs=attrs)


@torch_reader("aten.mean", "aten.sum", "aten.amax")
def reduce(ctx, n):
    x, dims = n.args[0], ctx.value(ctx.arg(1, "dim"))
    if dims is None or dims == []:
        raise ctx.unsupported("a reduction over every axis, batch included")
    dims = sorted(ctx.dim(d, x) for d in (dims if isinstance(dims, (list, tuple)) else [dims]))
    if 0 in dims:
        raise ctx.unsupported("a reduction over the batch axis")
    keep = bool(ctx.value(ctx.arg(2, "keepdim", False)))
    kind = {"mean": "global_avg_pool", "amax": "global_max_pool", "sum": "reduce_sum"}[n.target._opname]
    ctx.emit(kind, [ctx.tensor(x)], attrs={"axes": dims, "keepdim": keep})
