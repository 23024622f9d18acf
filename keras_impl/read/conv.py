"""Convolutions: Conv1D/2D/3D, DepthwiseConv2D, SeparableConv2D, Conv1D/2D/3DTranspose.

Kernels: Keras (*k, I/groups, O) -> torch (O, I/groups, *k); depthwise
(kh, kw, C, M) -> (C*M, 1, kh, kw) with groups=C, output channel c*M+m in both
(PORTING_TRAPS.md). TF "same" padding is made explicit per axis, asymmetric
where TF pads the odd extra row after.
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter, same_pads, unsupported
from keras_impl.read.core import emit_with_activation

__all__ = ["conv_padding", "conv_kernel_steps"]


def _tuple(v, n):
    return tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v),) * n


def conv_padding(layer, in_shape, kernel, stride, dilation):
    """[(before, after)] per spatial axis for "valid", "same" and "causal"."""
    dims = len(kernel)
    spatial = in_shape[1:-1]
    if layer.padding == "valid":
        return [(0, 0)] * dims
    if layer.padding == "same":
        return [same_pads(s, k, st, d) for s, k, st, d in zip(spatial, kernel, stride, dilation)]
    if layer.padding == "causal":  # Conv1D: all of (k-1)*d before
        return [((kernel[0] - 1) * dilation[0], 0)]
    raise unsupported(layer, f"padding={layer.padding!r}")


def conv_kernel_steps(dims: int):
    """(*k, I, O) -> (O, I, *k)."""
    return [("transpose", (dims + 1, dims, *range(dims)))]


def _check_channels_last(layer):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise unsupported(layer, "data_format='channels_first'")


@keras_converter("Conv1D", "Conv2D", "Conv3D")
def conv(ctx, layer, call):
    _check_channels_last(layer)
    x = ctx.tensor(call.inputs[0], "cf")
    kshape = tuple(int(s) for s in layer.kernel.shape)
    dims = len(kshape) - 2
    kernel, stride, dilation = kshape[:dims], _tuple(layer.strides, dims), _tuple(layer.dilation_rate, dims)
    groups = int(getattr(layer, "groups", 1))
    weights = {"weight": (layer.kernel, conv_kernel_steps(dims))}
    if layer.use_bias:
        weights["bias"] = (layer.bias, [])
    attrs = {
        "dims": dims, "in_channels": kshape[-2] * groups, "out_channels": kshape[-1], "kernel_size": kernel,
        "stride": stride, "dilation": dilation, "groups": groups, "bias": bool(layer.use_bias),
        "padding": conv_padding(layer, call.in_shapes[0], kernel, stride, dilation),
    }
    emit_with_activation(ctx, call, "conv", [x], activation=layer.activation, layout="cf", attrs=attrs, weights=weights)


def _depthwise(layer, call, kernel_var, *, bias):
    """attrs and weights of a depthwise conv with `kernel_var` (kh, kw, C, M)."""
    kh, kw, c, m = (int(s) for s in kernel_var.shape)
    stride, dilation = _tuple(layer.strides, 2), _tuple(layer.dilation_rate, 2)
    weights = {"weight": (kernel_var, [("transpose", (2, 3, 0, 1)), ("reshape", (c * m, 1, kh, kw))])}
    if bias:
        weights["bias"] = (layer.bias, [])
    attrs = {
        "dims": 2, "in_channels": c, "out_channels": c * m, "kernel_size": (kh, kw), "stride": stride,
        "dilation": dilation, "groups": c, "bias": bias,
        "padding": conv_padding(layer, call.in_shapes[0], (kh, kw), stride, dilation),
    }
    return attrs, weights


@keras_converter("DepthwiseConv2D")
def depthwise_conv(ctx, layer, call):
    _check_channels_last(layer)
    x = ctx.tensor(call.inputs[0], "cf")
    attrs, weights = _depthwise(layer, call, layer.kernel, bias=layer.use_bias)
    emit_with_activation(ctx, call, "conv", [x], activation=layer.activation, layout="cf", attrs=attrs, weights=weights)


@keras_converter("SeparableConv2D")
def separable_conv(ctx, layer, call):
    """Depthwise (no bias) then pointwise 1x1 with the bias: two torch convs."""
    _check_channels_last(layer)
    x = ctx.tensor(call.inputs[0], "cf")
    attrs, weights = _depthwise(layer, call, layer.depthwise_kernel, bias=False)
    kh, kw, c, m = (int(s) for s in layer.depthwise_kernel.shape)
    in_shape = call.in_shapes[0]
    mid_shape = (in_shape[0], *call.out_shapes[0][1:-1], c * m)
    mid = ctx.fresh_tensor(f"{call.outputs[0]}_depthwise")
    ctx.emit("conv", [x], mid, layout="cf", attrs=attrs, weights=weights, internal=True,
             keras_shape=mid_shape, node_name=ctx.node_name(f"{call.node_name}_depthwise"))
    pw = {"weight": (layer.pointwise_kernel, conv_kernel_steps(2))}
    if layer.use_bias:
        pw["bias"] = (layer.bias, [])
    out_c = int(layer.pointwise_kernel.shape[-1])
    pattrs = {
        "dims": 2, "in_channels": c * m, "out_channels": out_c, "kernel_size": (1, 1), "stride": (1, 1),
        "dilation": (1, 1), "groups": 1, "bias": bool(layer.use_bias), "padding": [(0, 0), (0, 0)],
    }
    call.node_name = ctx.node_name(f"{call.node_name}_pointwise")
    emit_with_activation(ctx, call, "conv", [mid], activation=layer.activation, layout="cf", attrs=pattrs, weights=pw)


def transpose_padding(layer, in_size, out_size, kernel, stride, dilation):
    """(torch padding, torch output_padding, trim after) for one spatial axis.

    TF's conv transpose is the gradient of a conv whose input has Keras'
    output size O (layers read `call.out_shapes`): the full transposed conv,
    of length (i-1)*s + (k-1)*d + 1, cropped from `before` (TF "same":
    same_pads(O, k, s, d)[0]; "valid": 0) to O cells. torch's ConvTranspose
    crops `padding` from both ends and then computes `output_padding` more
    cells on the right; what it cannot express (output_padding < 0) is a
    crop after it.
    """
    eff = (kernel - 1) * dilation + 1
    full = (in_size - 1) * stride + eff
    before = same_pads(out_size, kernel, stride, dilation)[0] if layer.padding == "same" else 0
    extra = out_size - full + 2 * before
    if extra >= max(stride, dilation):
        raise unsupported(layer, f"an output {out_size} longer than torch's ConvTranspose can make ({full - 2 * before} + < {max(stride, dilation)})")
    return before, max(extra, 0), min(extra, 0)


@keras_converter("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
def conv_transpose(ctx, layer, call):
    """Kernel (*k, out, in) -> torch ConvTranspose weight (in, out, *k), no flip."""
    _check_channels_last(layer)
    x = ctx.tensor(call.inputs[0], "cf")
    kshape = tuple(int(s) for s in layer.kernel.shape)
    dims = len(kshape) - 2
    kernel, stride, dilation = kshape[:dims], _tuple(layer.strides, dims), _tuple(layer.dilation_rate, dims)
    if layer.padding not in ("valid", "same"):
        raise unsupported(layer, f"padding={layer.padding!r}")
    sizes = zip(call.in_shapes[0][1:-1], call.out_shapes[0][1:-1], kernel, stride, dilation)
    pads = [transpose_padding(layer, *a) for a in sizes]
    weights = {"weight": (layer.kernel, [("transpose", (dims + 1, dims, *range(dims)))])}
    if layer.use_bias:
        weights["bias"] = (layer.bias, [])
    attrs = {
        "dims": dims, "in_channels": kshape[-1], "out_channels": kshape[-2], "kernel_size": kernel, "stride": stride,
        "dilation": dilation, "bias": bool(layer.use_bias), "padding": [p[0] for p in pads],
        "output_padding": [p[1] for p in pads], "trim": [p[2] for p in pads],
    }
    emit_with_activation(ctx, call, "conv_transpose", [x], activation=layer.activation, layout="cf", attrs=attrs, weights=weights)
