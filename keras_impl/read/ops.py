"""keras.ops operations that appear as functional-graph nodes ("ops.<Class>").

`x + 3.0` or `x * (1/6)` in a functional model builds an `ops.numpy.Add` /
`ops.numpy.Multiply` node, not a layer (MobileNetV3 and ConvNeXt have them:
PORTING_TRAPS.md, "keras.ops nodes"). Scalars become a `const` attr, arrays a
`const` weight in the tensor's neutral layout.
"""

from __future__ import annotations

import numpy as np

from keras_impl.read.registry import keras_converter, unsupported
from keras_impl.read.core import tf_float_attr
from keras_impl.read.ops_shape import unbatched_constant

__all__ = []

_BINARY = {
    "ops.Add": "add", "ops.Subtract": "sub", "ops.Multiply": "mul", "ops.Divide": "div",
    "ops.TrueDivide": "div", "ops.Maximum": "maximum", "ops.Minimum": "minimum", "ops.Power": "pow",
}

_UNARY = {
    "ops.Relu": {"fn": "relu"}, "ops.Relu6": {"fn": "relu6"}, "ops.Sigmoid": {"fn": "sigmoid"},
    "ops.Tanh": {"fn": "tanh"}, "ops.Silu": {"fn": "silu"}, "ops.HardSigmoid": {"fn": "hard_sigmoid"},
    "ops.HardSilu": {"fn": "hard_silu"}, "ops.Selu": {"fn": "selu"}, "ops.Softplus": {"fn": "softplus"},
    "ops.Softsign": {"fn": "softsign"}, "ops.Exp": {"fn": "exp"}, "ops.Negative": {"fn": "neg"},
    "ops.Sqrt": {"fn": "sqrt"}, "ops.Abs": {"fn": "abs"}, "ops.Absolute": {"fn": "abs"},
    "ops.Square": {"fn": "square"}, "ops.Log": {"fn": "log"}, "ops.Mish": {"fn": "mish"},
}


def _is_tensor(a) -> bool:
    return hasattr(a, "_keras_history")


@keras_converter(*_BINARY)
def binary(ctx, layer, call):
    op = _BINARY["ops." + type(layer).__name__]
    args = list(call.args)
    if len(args) != 2 or call.kwargs:
        raise unsupported(layer, f"call arguments {len(args)} positional, {sorted(call.kwargs)} keyword")
    if all(_is_tensor(a) for a in args):
        first = call.inputs[0]
        other = call.inputs[1]
        if ctx.rank(other) == ctx.rank(first):
            other = ctx.tensor(other, ctx.perm_of(first))
        elif ctx.rank(other) < ctx.rank(first) and ctx.perm_of(first) is not None:
            first, other = ctx.tensor(first, "as_is"), other  # broadcasting from the right: Keras' layout
        ctx.emit(op, [first, other], call.outputs[0])
        return
    side = "right" if _is_tensor(args[0]) else "left"
    x = call.inputs[0]
    const = unbatched_constant(layer, args[1] if side == "right" else args[0])
    if const.ndim == 0:
        ctx.emit(op, [x], call.outputs[0], attrs={"const": float(const), "const_side": side})
    else:
        ctx.emit(op, [x], call.outputs[0], attrs={"const_side": side}, weights={"const": ctx.const_to_neutral(const, x)})


# keras.ops.nn operations with parameters (keras/src/ops/nn.py: each keeps
# its arguments as attributes; ops.gelu defaults to approximate=True, the
# activation keras.activations.gelu to False: read, never assume), and
# keras.activations' own ReLU operation (activations.py).
_PARAMETRISED = {
    "ops.LeakyRelu": ("leaky_relu", ("negative_slope",)), "ops.Elu": ("elu", ("alpha",)),
    "ops.Celu": ("celu", ("alpha",)), "ops.Gelu": ("gelu", ("approximate",)),
    "ops.SoftShrink": ("soft_shrink", ("threshold",)), "ops.HardShrink": ("hard_shrink", ("threshold",)),
    "ops.Squareplus": ("squareplus", ("b",)), "ops.Threshold": ("threshold", ("threshold", "default_value")),
    "ops.SparsePlus": ("sparse_plus", ()), "ops.SparseSigmoid": ("sparse_sigmoid", ()),
    "ops.HardTanh": ("hard_tanh", ()), "ops.TanhShrink": ("tanh_shrink", ()), "ops.LogSigmoid": ("log_sigmoid", ()),
    "ops.Glu": ("glu", ("axis",)), "ops.Sparsemax": ("sparsemax", ("axis",)),
    "ops.ReLU": ("relu_general", ("negative_slope", "max_value", "threshold")),
}


@keras_converter(*_PARAMETRISED)
def parametrised(ctx, layer, call):
    if len(call.args) != 1 or call.kwargs:
        raise unsupported(layer, "extra call arguments")
    fn, params = _PARAMETRISED["ops." + type(layer).__name__]
    x = call.inputs[0]
    attrs = {"fn": fn}
    for p in params:
        v = getattr(layer, p)
        attrs[p] = ctx.axis(x, int(v)) if p == "axis" else (v if v is None or isinstance(v, bool) else float(v))
    if fn == "leaky_relu" or (fn == "relu_general" and attrs["negative_slope"] and attrs["threshold"] == 0 and attrs["max_value"] is None):
        attrs = {"fn": "leaky_relu", "negative_slope": tf_float_attr(attrs["negative_slope"])}
    elif fn == "relu_general" and not attrs["negative_slope"] and attrs["threshold"] == 0 and attrs["max_value"] is None:
        attrs = {"fn": "relu"}
    ctx.emit("activation", [x], call.outputs[0], attrs=attrs)


@keras_converter("ops.Concatenate")
def concatenate(ctx, layer, call):
    """keras.ops.concatenate(xs, axis): every input in the first one's layout."""
    first = call.inputs[0]
    xs = [first] + [ctx.tensor(t, ctx.perm_of(first)) for t in call.inputs[1:]]
    ctx.emit("concat", xs, call.outputs[0], attrs={"axis": ctx.axis(first, int(layer.axis))})


@keras_converter(*_UNARY)
def unary(ctx, layer, call):
    if len(call.args) != 1 or call.kwargs:
        raise unsupported(layer, "extra call arguments")
    ctx.emit("activation", [call.inputs[0]], call.outputs[0], attrs=dict(_UNARY["ops." + type(layer).__name__]))


@keras_converter("ops.Softmax", "ops.LogSoftmax")
def softmax(ctx, layer, call):
    x = call.inputs[0]
    axis = call.kwargs.get("axis", call.args[1] if len(call.args) > 1 else getattr(layer, "axis", -1))
    fn = "softmax" if type(layer).__name__ == "Softmax" else "log_softmax"
    ctx.emit("activation", [x], call.outputs[0], attrs={"fn": fn, "axis": ctx.axis(x, int(axis))})


@keras_converter("ops.GetItem")
def get_item(ctx, layer, call):
    """`x[:, -1]`, `x[:, 0, :]`, `x[..., 1:3]` (ops.GetItem): basic indexing with
    ints, slices and Ellipsis becomes a `slice` node on the tensor in Keras'
    layout; axis 0 may be picked when it is not the batch (a traced (3, B, ...)
    stack of q, k, v). Refused: a picked batch row, None (new axes), tensor indices and
    negative steps (torch has no negative-step slicing)."""
    if len(call.args) != 2 or call.kwargs or not _is_tensor(call.args[0]):
        raise unsupported(layer, "indexing other than tensor[key]")
    key = call.args[1] if isinstance(call.args[1], tuple) else (call.args[1],)
    rank = ctx.rank(call.inputs[0])
    if sum(k is Ellipsis for k in key) > 1 or any(not isinstance(k, (int, slice)) and k is not Ellipsis for k in key):
        raise unsupported(layer, f"index {key!r} (only ints, slices and one Ellipsis)")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (rank - len(key) + 1) + key[at + 1:]
    key = key + (slice(None),) * (rank - len(key))
    if len(key) != rank:
        raise unsupported(layer, f"index {key!r} has more entries than the tensor's {rank} axes")
    if not (isinstance(key[0], slice) and key[0] == slice(None)) and call.in_shapes[0][0] is None:
        raise unsupported(layer, f"index {key!r} selects along the batch axis")
    index = []
    for k in key:
        if isinstance(k, slice):
            if k.step is not None and k.step < 0:
                raise unsupported(layer, f"index {key!r}: a negative step")
            index.append([k.start, k.stop, k.step])
        else:
            index.append(int(k))
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("slice", [x], call.outputs[0], layout="as_is", attrs={"index": index})
