"""Core ops: linear, activation, batch_norm, layer_norm, dropout, identity,
rescale, normalize, scale, prelu, group_norm, layer_norm_axes."""

from __future__ import annotations

import numpy as np

from torch_impl.write.registry import Emitted, fmt, torch_emitter

__all__ = ["activation_expr", "INPLACE_FNS"]

_SIMPLE = {
    "relu": "F.relu({x})", "relu6": "F.relu6({x})", "sigmoid": "torch.sigmoid({x})", "tanh": "torch.tanh({x})",
    "selu": "F.selu({x})", "silu": "F.silu({x})", "hard_sigmoid": "F.relu6({x} + 3.0) / 6.0",
    "hard_silu": "F.hardswish({x})", "softplus": "F.softplus({x})", "softsign": "F.softsign({x})",
    "exp": "torch.exp({x})", "erf": "torch.erf({x})", "mish": "F.mish({x})", "identity": "{x}", "log_sigmoid": "F.logsigmoid({x})",
    "tanh_shrink": "F.tanhshrink({x})", "hard_tanh": "F.hardtanh({x})", "neg": "-{x}", "sqrt": "torch.sqrt({x})",
    "abs": "torch.abs({x})", "square": "torch.square({x})", "log": "torch.log({x})",
}


# hard_silu: one fused kernel, x * relu6(x + 3) / 6, as Keras' own torch backend
# computes it (keras/src/backend/torch/nn.py: tnn.hardswish); TF's x * (relu6(x + 3) / 6)
# rounds once more (1 ulp apart), and its gradient agrees at the kinks -3 and 3
# (torch 2.13's CPU hardswish_backward is 0 at -3 and the incoming gradient at 3).
# MobileNetV3 at 224x224: 19 of them, 4 kernels each before (BENCHMARKS.md).
# hard_sigmoid stays relu6(x + 3) / 6: F.hardsigmoid's backward multiplies by
# float32(1/6) in float64 too (TRAPS.md).


# The same functions overwriting their input (torch_impl/write/forward_plan.py decides when).
_INPLACE = {"relu": "F.relu({x}, inplace=True)", "relu6": "F.relu6({x}, inplace=True)",
            "hard_silu": "F.hardswish({x}, inplace=True)", "silu": "F.silu({x}, inplace=True)"}
INPLACE_FNS = frozenset(_INPLACE)


def activation_expr(attrs: dict, x: str) -> tuple:
    """(expression, helpers) for a neutral activation (attrs["inplace"]: overwrite x)."""
    fn = attrs["fn"]
    if attrs.get("inplace"):
        return _INPLACE[fn].format(x=x), ()
    if fn in _SIMPLE:
        return _SIMPLE[fn].format(x=x), ()
    if fn in ("softmax", "log_softmax"):
        return f"torch.{fn}({x}, dim={attrs['axis']})", ()
    if fn == "glu":
        return f"F.glu({x}, dim={attrs['axis']})", ()
    if fn == "sparsemax":
        return f"sparsemax({x}, dim={attrs['axis']})", ("sparsemax",)
    if fn == "threshold":
        return f"F.threshold({x}, {fmt(attrs['threshold'])}, {fmt(attrs['default_value'])})", ()
    if fn == "sparse_sigmoid":
        return f"torch.clamp(0.5 * ({x} + 1), 0.0, 1.0)", ()
    if fn == "sparse_plus":
        return f"sparse_plus({x})", ("sparse_plus",)
    if fn == "gelu":
        return f"keras_gelu({x}{', approximate=True' if attrs.get('approximate') else ''})", ("keras_gelu",)
    if fn == "leaky_relu":
        return f"F.leaky_relu({x}, negative_slope={fmt(attrs['negative_slope'])})", ()
    if fn == "celu":  # Keras' formula: F.celu's backward works from the output (1.5e-9 off in float64)
        a = fmt(attrs.get("alpha", 1.0))
        return f"torch.clamp({x}, min=0) + {a} * torch.expm1(torch.clamp({x}, max=0) / {a})", ()
    if fn in ("elu", "celu"):
        return f"F.{fn}({x}, alpha={fmt(attrs.get('alpha', 1.0))})", ()
    if fn in ("soft_shrink", "hard_shrink"):
        name = "softshrink" if fn == "soft_shrink" else "hardshrink"
        return f"F.{name}({x}, {fmt(attrs.get('threshold', 0.5))})", ()
    if fn == "squareplus":
        return f"({x} + torch.sqrt({x} ** 2 + {fmt(attrs.get('b', 4.0))})) / 2", ()
    if fn == "relu_general":
        args = f"negative_slope={fmt(attrs['negative_slope'])}, max_value={fmt(attrs['max_value'])}, threshold={fmt(attrs['threshold'])}"
        return f"keras_relu({x}, {args})", ("keras_relu",)
    raise NotImplementedError(f"activation {fn!r} has no PyTorch expression")


@torch_emitter("activation")
def activation(node, args, module, graph=None):
    expr, helpers = activation_expr(node.attrs, args[0])
    return Emitted(None, expr, helpers)


@torch_emitter("linear")
def linear(node, args, module, graph=None):
    a = node.attrs
    bias = "" if a["bias"] else ", bias=False"
    return Emitted(f"nn.Linear({a['in_features']}, {a['out_features']}{bias})", f"{module}({args[0]})")


@torch_emitter("batch_norm")
def batch_norm(node, args, module, graph=None):
    a = node.attrs
    kind = {4: "2d", 5: "3d"}.get(len(graph.tensors[node.inputs[0]].shape), "1d")
    extra = "" if a["affine"] else ", affine=False"
    ctor = f"nn.BatchNorm{kind}({a['num_features']}, eps={fmt(a['eps'])}, momentum={fmt(a['momentum'])}{extra})"
    setup = []
    if a["affine"] and not a.get("scale", True):
        setup.append("{module}.weight.requires_grad_(False)  # Keras scale=False: gamma fixed at 1")
    if a["affine"] and not a.get("center", True):
        setup.append("{module}.bias.requires_grad_(False)  # Keras center=False: beta fixed at 0")
    return Emitted(ctor, f"{module}({args[0]})", setup=tuple(setup))


@torch_emitter("layer_norm")
def layer_norm(node, args, module, graph=None):
    a = node.attrs
    extra = ""
    if not a["scale"] and not a["center"]:
        extra = ", elementwise_affine=False"
    elif not a["center"]:
        extra = ", bias=False"
    elif not a["scale"]:
        raise NotImplementedError("LayerNormalization with center=True, scale=False has no nn.LayerNorm form")
    return Emitted(f"nn.LayerNorm({fmt(tuple(a['normalized_shape']))}, eps={fmt(a['eps'])}{extra})", f"{module}({args[0]})")


@torch_emitter("scale")
def scale(node, args, module, graph=None):
    return Emitted(f"Scale({fmt(tuple(node.weights['weight'].shape))})", f"{module}({args[0]})", ("Scale",))


@torch_emitter("dropout")
def dropout(node, args, module, graph=None):
    return Emitted(f"nn.Dropout(p={fmt(node.attrs['p'])})", f"{module}({args[0]})")


@torch_emitter("identity")
def identity(node, args, module, graph=None):
    return Emitted(None, args[0])


@torch_emitter("rescale")
def rescale(node, args, module, graph=None):
    if node.weights:
        s, o = node.weights["scale"].shape, node.weights["offset"].shape
        return Emitted(f"Rescale({fmt(tuple(s))}, {fmt(tuple(o))})", f"{module}({args[0]})", ("Rescale",))
    expr = f"{args[0]} * {fmt(node.attrs['scale'])}"
    offset = node.attrs["offset"]
    return Emitted(None, expr if offset == 0 else f"{expr} + {fmt(offset)}" if offset > 0 else f"{expr} - {fmt(-offset)}")


@torch_emitter("normalize")
def normalize(node, args, module, graph=None):
    shape = tuple(node.weights["mean"].shape)
    inv = ", invert=True" if node.attrs.get("invert") else ""
    return Emitted(f"Normalize({fmt(shape)}, floor={fmt(node.attrs['floor'])}{inv})", f"{module}({args[0]})", ("Normalize",))


@torch_emitter("prelu")
def prelu(node, args, module, graph=None):
    w = node.weights["weight"]
    if node.attrs.get("per_channel"):
        return Emitted(f"nn.PReLU({int(w.shape[0])})", f"{module}({args[0]})")
    return Emitted(f"KerasPReLU({fmt(tuple(w.shape))})", f"{module}({args[0]})", ("KerasPReLU",))


@torch_emitter("group_norm")
def group_norm(node, args, module, graph=None):
    a = node.attrs
    if a["scale"] != a["center"]:
        raise NotImplementedError("GroupNormalization with only one of scale/center has no nn.GroupNorm form")
    extra = "" if a["scale"] else ", affine=False"
    return Emitted(f"nn.GroupNorm({a['num_groups']}, {a['num_channels']}, eps={fmt(a['eps'])}{extra})", f"{module}({args[0]})")


@torch_emitter("layer_norm_axes")
def layer_norm_axes(node, args, module, graph=None):
    a = node.attrs
    ctor = (f"LayerNormAxes(dims={fmt(tuple(a['axes']))}, shape={fmt(tuple(a['shape']))}, eps={fmt(a['eps'])}, "
            f"scale={a['scale']}, center={a['center']})")
    return Emitted(ctor, f"{module}({args[0]})", ("LayerNormAxes",))

@torch_emitter("multi_head_attention")
def multi_head_attention(node, args, module, graph=None):
    a = node.attrs
    bias = "" if a["bias"] else ", bias=False"
    return Emitted(f"MultiHeadAttention({a['embed_dim']}, {a['num_heads']}{bias})", f"{module}({', '.join(args)})",
                   ("MultiHeadAttention",))


@torch_emitter("parameter")
def parameter(node, args, module, graph=None):
    wshape = tuple(node.weights["weight"].shape)
    return Emitted(f"Parameter({fmt(wshape)}, {fmt(tuple(node.attrs['shape']))})", f"{module}({args[0]})", ("Parameter",))


@torch_emitter("take_parameter")
def take_parameter(node, args, module, graph=None):
    wshape, ishape = tuple(node.weights["weight"].shape), tuple(node.weights["index"].shape)
    return Emitted(f"TakeParameter({fmt(wshape)}, {fmt(ishape)})", f"{module}()", ("TakeParameter",))


@torch_emitter("variable")
def variable(node, args, module, graph=None):
    if "shares" in node.attrs:  # a later call of the custom layer reads the same parameter
        return Emitted(None, f"{module}()")
    return Emitted(f"Variable({fmt(tuple(node.weights['weight'].shape))})", f"{module}()", ("Variable",))


@torch_emitter("constant")
def constant(node, args, module, graph=None):
    value = node.weights["const"]
    dtype = "" if np.issubdtype(value.dtype, np.floating) else f", dtype=torch.{np.dtype(value.dtype).name}"
    return Emitted(f"Constant({fmt(tuple(value.shape))}{dtype})", f"{module}()", ("Constant",))
