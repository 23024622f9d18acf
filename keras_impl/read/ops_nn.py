"""keras.ops with a kernel of their own, met in keras.io examples' custom
layers (keras_impl/read/trace.py): ops.image.extract_patches (ViT's and
MLP-Mixer's Patches, involution), ops.dot_product_attention (the fused path
of Keras' and keras-hub's attention layers), ops.fft2 (FNet).

Each reads Keras' own arrays (`ctx.tensor(x, "as_is")`) except
extract_patches, which takes the image channels first (its neutral layout)
and returns Keras' (N, H', W', kh*kw*C) array.
"""

from __future__ import annotations

import numpy as np

from keras_impl.read.registry import keras_converter, same_pads, unsupported

__all__ = ["default_attention_scale"]


def _pair(v) -> tuple:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)


@keras_converter("ops.ExtractPatches")
def extract_patches(ctx, layer, call):
    """ops.image.extract_patches (keras/src/ops/image.py _extract_patches_2d):
    a convolution with an identity kernel of shape (kh, kw, C, kh*kw*C), so
    output channel (i*kw + j)*C + c holds pixel (i, j) of channel c of the
    window: exact copies, in that order. strides default to the size; TF
    "same" padding is made explicit (before, after) per axis."""
    if len(call.in_shapes[0]) != 4 or len(layer.size) != 2:
        raise unsupported(layer, "ops.image.extract_patches other than 2-d on a batch of images")
    if layer.data_format != "channels_last":
        raise unsupported(layer, f"data_format={layer.data_format!r}")
    size, strides, dilation = _pair(layer.size), _pair(layer.strides), _pair(layer.dilation_rate)
    if layer.padding.lower() == "same":
        pads = [same_pads(n, k, s, d) for n, k, s, d in zip(call.in_shapes[0][1:3], size, strides, dilation)]
    elif layer.padding.lower() == "valid":
        pads = [(0, 0), (0, 0)]
    else:
        raise unsupported(layer, f"padding={layer.padding!r}")
    x = ctx.tensor(call.inputs[0], "cf")
    ctx.emit("extract_patches", [x], call.outputs[0], layout="as_is",
             attrs={"size": list(size), "stride": list(strides), "dilation": list(dilation),
                    "pads": [p for pair in reversed(pads) for p in pair]})  # F.pad order: last axis first


def default_attention_scale(head_dim: int) -> float:
    """Keras' default scale on the TF backend (keras/src/backend/tensorflow/nn.py
    dot_product_attention): 1.0 / tf.sqrt(tf.cast(H, "float32")), a float32
    value that a float64 model casts up (not 1/sqrt(H) in float64: 1e-8 apart)."""
    return float(np.float32(1.0) / np.sqrt(np.float32(head_dim)))


@keras_converter("ops.DotProductAttention")
def dot_product_attention(ctx, layer, call):
    """ops.dot_product_attention(query, key, value, bias, mask, scale) on
    (B, T, heads, head_dim) tensors, TF backend (_dot_product_attention_xla):
    logits = einsum(q, k) * scale (+ bias); where the boolean mask (and the
    causal triangle) is False the logits are REPLACED by -0.7 * float32 max;
    softmax; einsum with v. A given scale is a Python float that
    tf.cast(scale, float64) makes float32 first: the port rounds it the same."""
    if getattr(layer, "attn_logits_soft_cap", None) is not None or getattr(layer, "flash_attention", None):
        raise unsupported(layer, "ops.dot_product_attention with attn_logits_soft_cap or flash_attention")
    names = ("query", "key", "value", "bias", "mask", "scale")
    given = dict(zip(names, call.args))
    given.update(call.kwargs)
    scale = given.get("scale")
    if scale is not None and hasattr(scale, "_keras_history"):
        raise unsupported(layer, "ops.dot_product_attention with a scale computed from tensors")
    inputs = [ctx.tensor(t, "as_is") for t in call.inputs[:3]]
    extras = []
    for i, extra in enumerate(("bias", "mask")):
        if given.get(extra) is not None:
            if not hasattr(given[extra], "_keras_history"):
                raise unsupported(layer, f"ops.dot_product_attention with a constant {extra}")
            inputs.append(ctx.tensor(call.inputs[3 + len(extras)], "as_is"))
            extras.append(extra)
    head_dim = int(call.in_shapes[1][-1])
    scale = default_attention_scale(head_dim) if scale is None else float(np.float32(scale))
    ctx.emit("dot_product_attention", inputs, call.outputs[0], layout="as_is",
             attrs={"scale": scale, "causal": bool(layer.is_causal), "extras": extras})


@keras_converter("ops.FFT2")
def fft2(ctx, layer, call):
    """ops.fft2((real, imag)) (keras/src/ops/math.py FFT2): the 2-D FFT over
    the last two axes of real + i*imag, returned as (real, imag); one node
    per part, each computing the transform (torch.fft.fft2)."""
    if len(call.inputs) != 2 or len(call.outputs) != 2:
        raise unsupported(layer, "ops.fft2 of anything but a (real, imag) pair of tensors")
    re, im = (ctx.tensor(t, "as_is") for t in call.inputs)
    for part, out in zip(("real", "imag"), call.outputs):
        ctx.emit("fft2", [re, im], out, layout="as_is", attrs={"part": part},
                 node_name=ctx.node_name(f"{call.node_name}_{part}"))
