"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

Every input is brought to the first input's layout (a permute only when they
differ); Concatenate's axis is remapped through that layout.
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter

__all__ = []

_ELEMENTWISE = {"Add": "add", "Subtract": "sub", "Multiply": "mul", "Average": "mean", "Maximum": "maximum", "Minimum": "minimum"}


def _aligned(ctx, call):
    first = call.inputs[0]
    perm = ctx.perm_of(first)
    return [first] + [ctx.tensor(t, perm if ctx.rank(t) == ctx.rank(first) else None) for t in call.inputs[1:]]


@keras_converter(*_ELEMENTWISE)
def elementwise(ctx, layer, call):
    ctx.emit(_ELEMENTWISE[type(layer).__name__], _aligned(ctx, call), call.outputs[0])


@keras_converter("Concatenate")
def concatenate(ctx, layer, call):
    xs = _aligned(ctx, call)
    ctx.emit("concat", xs, call.outputs[0], attrs={"axis": ctx.axis(xs[0], layer.axis)})
