"""The nodes a traced custom layer adds (keras_impl/read/trace.py): its own
variables, read as trainable parameters, and concrete arrays computed during
the trace (ops.arange(maxlen)) that a layer reads."""

from __future__ import annotations

import keras
import numpy as np

from keras_impl.read.registry import keras_converter
from keras_impl.read.ops_shape import unbatched_constant

__all__ = []


@keras_converter("ops.TracedVariable")
def traced_variable(ctx, layer, call):
    """A variable the custom layer owns (self.add_weight) and reads in call():
    a trainable parameter named after it, in its own shape (no batch axis);
    a non-trainable one (trainable=False) is a constant of its value."""
    var = layer.variable
    if not var.trainable:  # a buffer (Swin's relative position index, its attention mask): its value, no gradient
        value = np.asarray(keras.ops.convert_to_numpy(var.value))
        value = value.astype(ctx.dtype) if np.issubdtype(value.dtype, np.floating) else value
        ctx.emit("constant", [], call.outputs[0], layout="as_is", weights={"const": value}, keras_shape=value.shape)
        ctx.graph.tensors[call.outputs[0]].dtype = keras.backend.standardize_dtype(value.dtype)
        return
    ctx.emit("variable", [], call.outputs[0], layout="as_is", weights={"weight": (var, [])},
             keras_shape=tuple(var.shape))


@keras_converter("ops.TracedConstant")
def traced_constant(ctx, layer, call):
    value = unbatched_constant(layer, layer.value)
    if np.issubdtype(value.dtype, np.floating):
        value = value.astype(ctx.dtype)
    ctx.emit("constant", [], call.outputs[0], layout="as_is", weights={"const": value}, keras_shape=value.shape)
    ctx.graph.tensors[call.outputs[0]].dtype = keras.backend.standardize_dtype(value.dtype)
