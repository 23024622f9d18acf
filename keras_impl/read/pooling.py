"""Pooling: Max/AveragePooling 1D-3D ("valid" and TF "same"), global pools.

TF "same" pooling pads asymmetrically; max pooling pads with -inf, average
pooling does not count the padded cells (count_include_pad=False), both made
explicit in the attrs (PORTING_TRAPS.md, "AveragePooling2D same").
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter, same_pads, unsupported

__all__ = []


def _tuple(v, n):
    return tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v),) * n


def _pool(ctx, layer, call, op):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise unsupported(layer, "data_format='channels_first'")
    x = ctx.tensor(call.inputs[0], "cf")
    dims = len(call.in_shapes[0]) - 2
    kernel = _tuple(layer.pool_size, dims)
    stride = _tuple(layer.strides if layer.strides is not None else layer.pool_size, dims)
    if layer.padding == "same":
        padding = [same_pads(s, k, st) for s, k, st in zip(call.in_shapes[0][1:-1], kernel, stride)]
    else:
        padding = [(0, 0)] * dims
    attrs = {"dims": dims, "kernel_size": kernel, "stride": stride, "padding": padding}
    if op == "avg_pool":
        attrs["count_include_pad"] = False
    ctx.emit(op, [x], call.outputs[0], layout="cf", attrs=attrs)


@keras_converter("MaxPooling1D", "MaxPooling2D", "MaxPooling3D")
def max_pool(ctx, layer, call):
    _pool(ctx, layer, call, "max_pool")


@keras_converter("AveragePooling1D", "AveragePooling2D", "AveragePooling3D")
def avg_pool(ctx, layer, call):
    _pool(ctx, layer, call, "avg_pool")


def _global(ctx, layer, call, op):
    """Pool over every axis after the channels. channels_last: the neutral
    (channels-first) tensor's axes 2..; data_format="channels_first" (keras.io's
    time-series Transformer pools (batch, steps, features) that way, over the
    features): the Keras tensor as it is, whose axes 2.. are those."""
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    x = ctx.tensor(call.inputs[0], "as_is" if channels_first else "cf")
    rank = ctx.rank(x)
    keep = bool(layer.keepdims)
    ctx.emit(op, [x], call.outputs[0], layout="cf" if keep and not channels_first else "as_is",
             attrs={"axes": list(range(2, rank)), "keepdim": keep})


@keras_converter("GlobalAveragePooling2D", "GlobalAveragePooling3D")  # 1D: convert/sequence.py (masks)
def global_avg_pool(ctx, layer, call):
    if len(call.args) > 1 or call.kwargs.get("mask") is not None:
        raise unsupported(layer, "a mask argument")
    _global(ctx, layer, call, "global_avg_pool")


@keras_converter("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D")
def global_max_pool(ctx, layer, call):
    _global(ctx, layer, call, "global_max_pool")
