"""keras.ops operations that appear as functional-graph nodes ("ops.<Class>").

`x + 3.0` or `x * (1/6)` in a functional model builds an `ops.numpy.Add` /
`ops.numpy.Multiply` node, not a layer (MobileNetV3 and ConvNeXt have them:
PORTING_TRAPS.md, "keras.ops nodes"). Scalars become a `const` attr, arrays a
`const` weight in the tensor's neutral layout.
"""

from __future__ import annotations

import numpy as np

from keras_impl.convert import keras_converter, unsupported

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
    const = np.asarray(args[1] if side == "right" else args[0])
    if const.ndim == 0:
        ctx.emit(op, [x], call.outputs[0], attrs={"const": float(const), "const_side": side})
    else:
        ctx.emit(op, [x], call.outputs[0], attrs={"const_side": side}, weights={"const": ctx.const_to_neutral(const, x)})


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
