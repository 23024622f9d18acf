"""Readers: one small function per torch module class / function / method,
turning an fx node into neutral nodes (shared/graph/ir.py's op vocabulary).

The twin of keras_impl/convert (Keras layer -> neutral). Registered with
`@torch_reader(key)`: a module's class name ("Conv2d"), "function.<name>"
for call_function nodes (operator.add and torch.add are both
"function.add"), "method.<name>" for tensor methods ("method.view").

Shapes, the integers behind `x.size()` arithmetic and the output of
reshapes are read from the example run (ctx.value, ctx.out_shape), so a
reader never evaluates symbolic sizes itself.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_impl.read import torch_reader

__all__ = []


def _pairs(v, dims) -> tuple:
    return tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v),) * dims


# ---------------------------------------------------------------- layers ---
@torch_reader("Conv1d", "Conv2d", "Conv3d")
def conv(ctx, n):
    m = ctx.module()
    if m.padding_mode != "zeros":
        raise ctx.unsupported(f"padding_mode={m.padding_mode!r}")
    dims = len(m.kernel_size)
    k, d = tuple(m.kernel_size), tuple(m.dilation)
    if m.padding == "same":  # torch: total d*(k-1), the odd extra after (F.conv padding="same")
        padding = [((dd * (kk - 1)) // 2, dd * (kk - 1) - (dd * (kk - 1)) // 2) for kk, dd in zip(k, d)]
    elif m.padding == "valid":
        padding = [(0, 0)] * dims
    else:
        padding = [(p, p) for p in _pairs(m.padding, dims)]
    attrs = {"dims": dims, "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": k,
             "stride": tuple(m.stride), "dilation": d, "groups": m.groups, "bias": m.bias is not None, "padding": padding}
    weights = {"weight": m.weight} | ({"bias": m.bias} if m.bias is not None else {})
    ctx.emit("conv", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params=ctx.module_params(n.target, weights))


@torch_reader("Linear")
def linear(ctx, n):
    m = ctx.module()
    weights = {"weight": m.weight} | ({"bias": m.bias} if m.bias is not None else {})
    attrs = {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    ctx.emit("linear", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params=ctx.module_params(n.target, weights))


@torch_reader("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
def batch_norm(ctx, n):
    m = ctx.module()
    if m.momentum is None or not m.track_running_stats:
        raise ctx.unsupported("BatchNorm with momentum=None (cumulative average) or without running statistics")
    weights = ({"weight": m.weight, "bias": m.bias} if m.affine else {}) | {"running_mean": m.running_mean, "running_var": m.running_var}
    attrs = {"num_features": m.num_features, "eps": float(m.eps), "momentum": float(m.momentum), "affine": m.affine,
             "scale": m.affine, "center": m.affine, "axis": 1}
    ctx.emit("batch_norm", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params=ctx.module_params(n.target, weights))


def _layer_norm(ctx, x, shape, weight, bias, eps, params):
    weights = {k: v for k, v in (("weight", weight), ("bias", bias)) if v is not None}
    attrs = {"normalized_shape": [int(s) for s in shape], "eps": float(eps), "scale": weight is not None, "center": bias is not None}
    if bias is not None and weight is None:
        raise ctx.unsupported("layer norm with a bias but no weight")
    ctx.emit("layer_norm", [ctx.tensor(x)], attrs=attrs, weights=weights, params={k: params[k] for k in weights})


@torch_reader("LayerNorm")
def layer_norm(ctx, n):
    m = ctx.module()
    _layer_norm(ctx, n.args[0], m.normalized_shape, m.weight, m.bias, m.eps, ctx.module_params(n.target, ("weight", "bias")))


@torch_reader("function.layer_norm")
def layer_norm_fn(ctx, n):
    w, b = ctx.arg(2, "weight"), ctx.arg(3, "bias")
    params = {"weight": getattr(w, "target", None), "bias": getattr(b, "target", None)}
    if any(isinstance(a, torch.fx.Node) and a.op != "get_attr" for a in (w, b)):
        raise ctx.unsupported("layer_norm with a computed weight or bias")
    _layer_norm(ctx, n.args[0], ctx.value(ctx.arg(1, "normalized_shape")), ctx.value(w), ctx.value(b),
                ctx.value(ctx.arg(4, "eps", 1e-5)), params)


@torch_reader("GroupNorm", "GroupNorm1", "function.group_norm", "aten.group_norm")
def group_norm(ctx, n):
    """nn.GroupNorm (timm's GroupNorm1: one group, PoolFormer) and
    F.group_norm(x, num_groups, weight, bias, eps) (torch/nn/functional.py)."""
    if n.op == "call_module":
        m = ctx.module()
        groups, w, b, eps = m.num_groups, m.weight, m.bias, m.eps
        params = ctx.module_params(n.target, ("weight", "bias"))
    else:
        wn, bn = ctx.arg(2, "weight"), ctx.arg(3, "bias")
        if any(isinstance(a, torch.fx.Node) and a.op != "get_attr" for a in (wn, bn)):
            raise ctx.unsupported("group_norm with a computed weight or bias")
        groups, w, b, eps = ctx.value(ctx.arg(1, "num_groups")), ctx.value(wn), ctx.value(bn), ctx.value(ctx.arg(4, "eps", 1e-5))
        params = {"weight": getattr(wn, "target", None), "bias": getattr(bn, "target", None)}
    weights = {k: v for k, v in (("weight", w), ("bias", b)) if v is not None}
    attrs = {"num_groups": int(groups), "num_channels": int(ctx.shape(n.args[0])[1]), "eps": float(eps),
             "scale": w is not None, "center": b is not None}
    ctx.emit("group_norm", [ctx.tensor(n.args[0])], attrs=attrs, weights=weights, params={k: params[k] for k in weights})


# ----------------------------------------------------------- activations ---
_ACT_MODULES = {
    "ReLU": "relu", "ReLU6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Hardswish": "hard_silu",
    "Hardsigmoid": "hard_sigmoid", "SiLU": "silu", "Mish": "mish", "SELU": "selu", "Softplus": "softplus",
    "Softsign": "softsign",
}
_ACT_FUNCS = {
    "function.relu": "relu", "method.relu": "relu", "function.relu6": "relu6", "function.sigmoid": "sigmoid",
    "method.sigmoid": "sigmoid", "function.tanh": "tanh", "method.tanh": "tanh", "function.hardswish": "hard_silu",
    "function.hardsigmoid": "hard_sigmoid", "function.silu": "silu", "function.mish": "mish",
}


# torch's hardsigmoid backward multiplies by `one_sixth(1.0f / 6.0f)`, a float32
# constant, in every dtype (aten/src/ATen/native/cpu/Activation.cpp,
# hardsigmoid_backward_kernel): a float64 gradient's slope is 0.1666666716337204,
# 3e-8 relative off 1/6 (MobileNetV3's SE gates: gradients 2e-12 apart). The node
# carries that slope; the Keras writer gives its hard_sigmoid the same gradient.
HARDSIGMOID_GRAD_SLOPE = float(np.float32(1.0) / np.float32(6.0))


def act_attrs(fn: str) -> dict:
    """The `activation` attrs of a torch activation by neutral name."""
    return {"fn": fn} | ({"grad_slope": HARDSIGMOID_GRAD_SLOPE} if fn == "hard_sigmoid" else {})


@torch_reader(*_ACT_MODULES, *_ACT_FUNCS)
def activation(ctx, n):
    key = type(ctx.module()).__name__ if n.op == "call_module" else f"{n.op[5:]}.{getattr(n.target, '__name__', n.target)}"
    fn = _ACT_MODULES.get(key) or _ACT_FUNCS[key]
    if fn == "softplus" and (ctx.module().beta != 1 or ctx.module().threshold != 20):
        raise ctx.unsupported("Softplus with beta != 1 or threshold != 20")
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs=act_attrs(fn))


def act_module_attrs(m):
    """The `activation` attrs of an activation module (its parameters read
    from it: LeakyReLU's negative_slope, ELU's alpha, GELU's approximate), or
    None for a module that is none of those."""
    name = type(m).__name__
    if name in _ACT_MODULES and not (name == "Softplus" and (m.beta != 1 or m.threshold != 20)):
        return act_attrs(_ACT_MODULES[name])
    if name == "LeakyReLU":
        return {"fn": "leaky_relu", "negative_slope": float(m.negative_slope)}
    if name == "ELU":
        return {"fn": "elu", "alpha": float(m.alpha)}
    if name == "GELU":
        return {"fn": "gelu", "approximate": m.approximate == "tanh"}
    return None


@torch_reader("GELU", "function.gelu")
def gelu(ctx, n):
    approx = getattr(ctx.module(), "approximate", "none") if n.op == "call_module" else ctx.value(ctx.arg(1, "approximate", "none"))
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs={"fn": "gelu", "approximate": approx == "tanh"})


@torch_reader("LeakyReLU", "ELU")
def leaky_elu(ctx, n):
    m = ctx.module()
    attrs = {"fn": "leaky_relu", "negative_slope": float(m.negative_slope)} if hasattr(m, "negative_slope") else {"fn": "elu", "alpha": float(m.alpha)}
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs=attrs)


@torch_reader("Softmax", "LogSoftmax", "function.softmax", "method.softmax", "function.log_softmax")
def softmax(ctx, n):
    log = "Log" in op_name(n, ctx) or "log" in op_name(n, ctx)
    dim = ctx.module().dim if n.op == "call_module" else ctx.value(ctx.arg(1, "dim"))
    if dim is None:
        raise ctx.unsupported("softmax without dim")
    ctx.emit("activation", [ctx.tensor(n.args[0])], attrs={"fn": "log_softmax" if log else "softmax", "axis": ctx.dim(dim)})


def op_name(n, ctx) -> str:
    return type(ctx.module()).__name__ if n.op == "call_module" else str(getattr(n.target, "__name__", n.target))


# ---------------------------------------------------- identity in eval ---
@torch_reader("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout")
def dropout(ctx, n):
    ctx.emit("dropout", [ctx.tensor(n.args[0])], attrs={"p": float(ctx.module().p)})


@torch_reader("Identity", "method.contiguous", "function.stochastic_depth", "function.dropout", "method.clone")
def identity(ctx, n):
    if n.target is not None and getattr(n.target, "__name__", "") in ("stochastic_depth", "dropout"):
        training = ctx.value(ctx.arg(3 if n.target.__name__ == "stochastic_depth" else 2, "training", True))
        if training:
            raise ctx.unsupported("dropout/stochastic depth in training mode (the port reads eval-mode modules)")
    ctx.alias(n.args[0])


# ------------------------------------------------------------ attention ---
@torch_reader("MultiheadAttention")
def multi_head_attention(ctx, n):
    """nn.MultiheadAttention (batch_first, one embed size): its (output, weights)
    tuple's output is the `multi_head_attention` node; in_proj_weight's rows
    0:E, E:2E, 2E:3E are the query, key and value projections."""
    m = ctx.module()
    q, k, v = (ctx.arg(i, name) for i, name in enumerate(("query", "key", "value")))
    if not m.batch_first or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise ctx.unsupported("MultiheadAttention other than batch_first=True with one embed size, no bias_k/v, no zero attention")
    if any(ctx.arg(i, name) is not None for i, name in ((4, "key_padding_mask"), (6, "attn_mask"))) or ctx.value(ctx.arg(7, "is_causal", False)):
        raise ctx.unsupported("attention masks")
    e = m.embed_dim
    bias = m.in_proj_bias is not None
    weights, params = {}, {}
    for i, part in enumerate("qkv"):
        weights[f"{part}_weight"] = m.in_proj_weight[i * e:(i + 1) * e]
        params[f"{part}_weight"] = [f"{n.target}.in_proj_weight", i * e, (i + 1) * e]
        if bias:
            weights[f"{part}_bias"] = m.in_proj_bias[i * e:(i + 1) * e]
            params[f"{part}_bias"] = [f"{n.target}.in_proj_bias", i * e, (i + 1) * e]
    weights["out_weight"] = m.out_proj.weight
    params["out_weight"] = f"{n.target}.out_proj.weight"
    if m.out_proj.bias is not None:
        weights["out_bias"] = m.out_proj.bias
        params["out_bias"] = f"{n.target}.out_proj.bias"
    out = ctx.emit("multi_head_attention", [ctx.tensor(q), ctx.tensor(k), ctx.tensor(v)],
                   attrs={"embed_dim": e, "num_heads": m.num_heads, "bias": bias},
                   weights=weights, params=params, shape=(None, *ctx.value(n)[0].shape[1:]), internal=True)
    ctx.tuples[n] = [out, None]
