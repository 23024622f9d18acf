"""Normalisations beyond BatchNormalization: GroupNormalization, and
LayerNormalization over axes nn.LayerNorm cannot take (not the trailing Keras
axes, or center without scale).

Epsilons are copied per layer (Keras' LayerNormalization/GroupNormalization
default 1e-3, torch's 1e-5: PORTING_TRAPS.md). Keras' GroupNormalization
splits the channel axis into `groups` consecutive blocks
(group_normalization.py, _reshape_into_groups), as nn.GroupNorm does.
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter, unsupported

__all__ = ["layer_norm_axes"]


def _axes(layer, rank: int) -> list:
    """The normalised Keras axes in the order gamma's shape lists them."""
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return [int(a) % rank for a in axis]


def layer_norm_axes(ctx, layer, call):
    """LayerNormalization over any Keras axes: normalise over the same axes
    of the tensor as it is, gamma/beta broadcast to it (batch axis excluded)."""
    x = call.inputs[0]
    rank = ctx.rank(x)
    keras_axes = _axes(layer, rank)
    if 0 in keras_axes:
        raise unsupported(layer, "normalising over the batch axis")
    axes = sorted(ctx.axis(x, a) for a in keras_axes)
    neutral_shape = ctx.graph.tensors[x].shape
    bshape = tuple(int(neutral_shape[d]) if d in axes else 1 for d in range(1, rank))
    # Keras' gamma has the normalised sizes in Keras axis order; in the
    # neutral layout those axes may come in another order.
    order = sorted(range(len(keras_axes)), key=lambda i: ctx.axis(x, keras_axes[i]))
    steps = [("transpose", tuple(order)), ("reshape", bshape)]
    weights = {}
    if layer.scale:
        weights["weight"] = (layer.gamma, steps)
    if layer.center:
        weights["bias"] = (layer.beta, steps)
    attrs = {"axes": axes, "shape": list(bshape), "eps": float(layer.epsilon), "scale": bool(layer.scale), "center": bool(layer.center)}
    ctx.emit("layer_norm_axes", [x], call.outputs[0], attrs=attrs, weights=weights)


@keras_converter("GroupNormalization")
def group_norm(ctx, layer, call):
    x = call.inputs[0]
    if ctx.rank(x) < 3 and layer.axis not in (-1, 1):
        raise unsupported(layer, f"axis={layer.axis}")
    x = ctx.tensor(x, "cf")
    if ctx.axis(x, layer.axis) != 1:
        raise unsupported(layer, f"grouping axis {layer.axis} (only the channel axis)")
    channels = int(call.in_shapes[0][layer.axis])
    weights = {}
    if layer.scale:
        weights["weight"] = (layer.gamma, [])
    if layer.center:
        weights["bias"] = (layer.beta, [])
    attrs = {"num_groups": int(layer.groups), "num_channels": channels, "eps": float(layer.epsilon),
             "scale": bool(layer.scale), "center": bool(layer.center)}
    ctx.emit("group_norm", [x], call.outputs[0], layout="cf", attrs=attrs, weights=weights)
