"""Custom layers of keras.applications: LayerScale and StochasticDepth
(ConvNeXt), CustomScaleLayer (InceptionResNetV2).

Their classes live inside keras/src/applications/*.py (Keras 3.15); the
formulas below are their `call` methods:
- LayerScale: `x * gamma`, gamma a trainable (projection_dim,) vector on the
  last Keras axis (convnext.py, LayerScale.call);
- CustomScaleLayer: `inputs[0] + inputs[1] * scale`, scale a python float
  (inception_resnet_v2.py, CustomScaleLayer.call);
- StochasticDepth: identity unless training (convnext.py, StochasticDepth.call),
  so it ports as an identity, as Dropout does.
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter, unsupported

__all__ = []


@keras_converter("LayerScale")
def layer_scale(ctx, layer, call):
    x = call.inputs[0]
    rank, channels = ctx.rank(x), int(layer.gamma.shape[0])
    # gamma scales the last Keras axis: as a (C,) vector on a channels-last
    # tensor, as (C, 1, ..., 1) on a channels-first one.
    axis = ctx.axis(x, -1)
    steps = [] if axis == rank - 1 else [("reshape", (channels, *(1,) * (rank - 1 - axis)))]
    ctx.emit("scale", [x], call.outputs[0], weights={"weight": (layer.gamma, steps)})


@keras_converter("CustomScaleLayer")
def custom_scale(ctx, layer, call):
    if len(call.inputs) != 2:
        raise unsupported(layer, f"{len(call.inputs)} inputs (expected [x, residual])")
    x, residual = call.inputs[0], ctx.tensor(call.inputs[1], ctx.perm_of(call.inputs[0]))
    mid = ctx.fresh_tensor(f"{call.outputs[0]}_scaled")
    ctx.emit("mul", [residual], mid, attrs={"const": float(layer.scale), "const_side": "right"}, internal=True,
             node_name=ctx.node_name(f"{call.node_name}_residual"))
    ctx.emit("add", [x, mid], call.outputs[0])


@keras_converter("StochasticDepth")
def stochastic_depth(ctx, layer, call):
    ctx.emit("identity", [call.inputs[0]], call.outputs[0])
