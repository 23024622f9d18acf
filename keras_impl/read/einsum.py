"""Einsum layers and ops met in keras-hub's attention (traced
CachedMultiHeadAttention: keras/src/layers/attention/multi_head_attention.py
projects with EinsumDense and scores with ops.einsum).

Both keep Keras' own equation and arrays: torch.einsum reads the same
subscripts (numpy's), and the EinsumDense kernel is a parameter in Keras'
shape, so no transform is needed and the weights travel back unchanged.
"""

from __future__ import annotations

import keras

from keras_impl.read.registry import keras_converter, unsupported
from keras_impl.read.core import emit_with_activation

__all__ = []


@keras_converter("EinsumDense")
def einsum_dense(ctx, layer, call):
    """EinsumDense.call (keras/src/layers/core/einsum_dense.py):
    einsum(equation, x, kernel) + bias (bias already in the output's trailing
    shape), then the activation."""
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        raise unsupported(layer, "a quantized or LoRA EinsumDense")
    x = ctx.tensor(call.inputs[0], "as_is")
    weights = {"weight": (layer._kernel, [])}
    if layer.bias is not None:
        weights["bias"] = (layer.bias, [])
    attrs = {"equation": layer.equation, "kernel_shape": [int(s) for s in layer._kernel.shape],
             "bias_shape": None if layer.bias is None else [int(s) for s in layer.bias.shape]}
    emit_with_activation(ctx, call, "einsum_dense", [x], activation=layer.activation, layout="as_is",
                         attrs=attrs, weights=weights)


@keras_converter("ops.Einsum")
def einsum(ctx, layer, call):
    """ops.einsum(subscripts, *operands) (keras/src/ops/numpy.py Einsum) on tensors."""
    operands = call.args[1:]
    if call.kwargs or not operands or not all(isinstance(a, keras.KerasTensor) for a in operands):
        raise unsupported(layer, "ops.einsum with constant operands")
    xs = [ctx.tensor(t, "as_is") for t in call.inputs]
    ctx.emit("einsum", xs, call.outputs[0], layout="as_is", attrs={"equation": str(layer.subscripts)})
