"""Reshaping layers: Flatten, Reshape, Permute, RepeatVector, ZeroPadding, Cropping, UpSampling.

Flatten and Reshape work on Keras' own element order (H, W, C): their input is
brought to Keras' layout first (a permute to channels last after a conv), so
the next Dense needs no weight reordering (PORTING_TRAPS.md, "Flatten -> Dense").
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter, unsupported

__all__ = []


@keras_converter("Flatten")
def flatten(ctx, layer, call):
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("flatten", [x], call.outputs[0], layout="as_is", attrs={"start_dim": 1})


@keras_converter("Reshape")
def reshape(ctx, layer, call):
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("reshape", [x], call.outputs[0], layout="as_is", attrs={"shape": [int(s) for s in call.out_shapes[0][1:]]})


@keras_converter("Permute")
def permute(ctx, layer, call):
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("permute", [x], call.outputs[0], layout="as_is", attrs={"dims": (0, *(int(d) for d in layer.dims))})


@keras_converter("RepeatVector")
def repeat_vector(ctx, layer, call):
    ctx.emit("repeat", [call.inputs[0]], call.outputs[0], layout="as_is", attrs={"n": int(layer.n)})


def _pairs(layer, attr, dims):
    v = getattr(layer, attr)
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise unsupported(layer, "data_format='channels_first'")
    if dims == 1:
        return [tuple(int(a) for a in v)]
    return [tuple(int(a) for a in p) for p in v]


@keras_converter("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def zero_padding(ctx, layer, call):
    x = ctx.tensor(call.inputs[0], "cf")
    pairs = _pairs(layer, "padding", len(call.in_shapes[0]) - 2)
    pads = [p for pair in reversed(pairs) for p in pair]  # F.pad order: last axis first
    ctx.emit("pad", [x], call.outputs[0], layout="cf", attrs={"pads": pads, "value": 0.0})


@keras_converter("Cropping1D", "Cropping2D", "Cropping3D")
def cropping(ctx, layer, call):
    x = ctx.tensor(call.inputs[0], "cf")
    ctx.emit("crop", [x], call.outputs[0], layout="cf", attrs={"crops": _pairs(layer, "cropping", len(call.in_shapes[0]) - 2)})


# UpSampling2D interpolations torch reproduces: "nearest" is a repeat of rows
# and columns in Keras (ops.repeat, up_sampling2d.py) and in F.interpolate for
# integer factors; "bilinear" is tf.image.resize with half-pixel centres and no
# antialiasing, computed in float32 even for float64 input (the writer mirrors
# it; F.interpolate(align_corners=False) is 6e-7 off in float32). TF's bicubic
# uses a = -0.5, torch's a = -0.75: not the same function.
_INTERPOLATIONS = ("nearest", "bilinear")


@keras_converter("UpSampling1D", "UpSampling2D", "UpSampling3D")
def up_sampling(ctx, layer, call):
    x = ctx.tensor(call.inputs[0], "cf")
    dims = len(call.in_shapes[0]) - 2
    size = layer.size if isinstance(layer.size, (list, tuple)) else (layer.size,) * dims
    mode = getattr(layer, "interpolation", "nearest")
    if mode not in _INTERPOLATIONS:
        raise unsupported(layer, f"interpolation={mode!r} (supported: {', '.join(_INTERPOLATIONS)})")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise unsupported(layer, "data_format='channels_first'")
    ctx.emit("upsample", [x], call.outputs[0], layout="cf", attrs={"scale": [int(s) for s in size], "mode": mode})
