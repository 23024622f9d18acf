"""ConvLSTM1D / ConvLSTM2D (keras/src/layers/rnn/conv_lstm.py): torch has no
convolutional LSTM, so the neutral `conv_lstm` op becomes a small cell module
in model.py (torch_impl/write/conv_lstm.py, KerasConvLSTM).

Keras' step (ConvLSTMCell.call), gates i, f, c, o in that order along the
kernel's last axis:

    x_g = conv(x_t, kernel_g, strides, padding, dilation_rate) + bias_g
    h_g = conv(h_{t-1}, recurrent_kernel_g, strides 1, "same", no dilation)
    i = rec_act(x_i + h_i); f = rec_act(x_f + h_f); o = rec_act(x_o + h_o)
    c = f * c_{t-1} + i * act(x_c + h_c); h = o * act(c)

Kernels (*k, C, 4F) -> torch (4F, C, *k): the four gate blocks stay
contiguous, so `chunk(4, dim=1)` in torch is Keras' split. Tensors of the
sequence are (N, T, C, *spatial) in the graph (time first, then channels
first: what a torch ConvLSTM takes); the last state h, c (N, F, *spatial)
channels first. Refused by name: data_format="channels_first", stateful,
initial_state, masks (not read, so keras_impl/read/__init__.py refuses them).
"""

from __future__ import annotations

from keras_impl.read.registry import keras_converter, same_pads, unsupported
from keras_impl.read.conv import conv_kernel_steps, conv_padding
from keras_impl.read.core import activation_attrs
from shared.graph.ir import TensorSpec, channels_first_perm

__all__ = ["time_channels_first_perm"]


def time_channels_first_perm(rank: int) -> tuple:
    """(N, T, *spatial, C) -> (N, T, C, *spatial)."""
    return (0, 1, rank - 1, *range(2, rank - 1))


def _activation(ctx, layer, fn, tensor: str, default: str) -> dict | None:
    """Neutral attrs of a cell activation, None for the default (tanh / sigmoid)."""
    if getattr(fn, "__name__", "") == default:
        return None
    attrs = activation_attrs(ctx, layer, fn, tensor) or {"fn": "identity"}
    if "axis" in attrs:
        raise unsupported(layer, "an activation over an axis inside a ConvLSTM cell")
    return attrs


@keras_converter("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
def conv_lstm(ctx, layer, call):
    cell = layer.cell
    if cell.data_format != "channels_last":
        raise unsupported(layer, "data_format='channels_first'")
    if layer.stateful:
        raise unsupported(layer, "stateful=True")
    if len(call.inputs) > 1 or call.kwargs.get("initial_state") is not None:
        raise unsupported(layer, "initial_state")
    rank = len(call.in_shapes[0])
    x = ctx.tensor(call.inputs[0], time_channels_first_perm(rank))
    dims = rank - 3
    kernel, stride, dilation = tuple(cell.kernel_size), tuple(cell.strides), tuple(cell.dilation_rate)
    frame = (call.in_shapes[0][0], *call.in_shapes[0][2:])  # one step's (N, *spatial, C)
    out_spatial = call.out_shapes[0][2:-1] if layer.return_sequences else call.out_shapes[0][1:-1]
    attrs = {
        "dims": dims, "in_channels": int(cell.input_dim), "filters": int(cell.filters), "kernel_size": kernel,
        "stride": stride, "dilation": dilation, "bias": bool(cell.use_bias),
        "padding": conv_padding(cell, frame, kernel, stride, dilation),
        # recurrent_conv: strides 1, padding "same", dilation 1, on a state of the output's size
        "recurrent_padding": [same_pads(s, k, 1, 1) for s, k in zip(out_spatial, kernel)],
        "return_sequences": bool(layer.return_sequences), "return_state": bool(layer.return_state),
        "go_backwards": bool(layer.go_backwards),
    }
    for key, default in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        fn = _activation(ctx, layer, getattr(cell, key), call.inputs[0], default)
        if fn is not None:
            attrs[key] = fn
    weights = {"weight_ih": (cell.kernel, conv_kernel_steps(dims)),
               "weight_hh": (cell.recurrent_kernel, conv_kernel_steps(dims))}
    if cell.use_bias:
        weights["bias"] = (cell.bias, [])
    seq_layout = time_channels_first_perm(rank) if layer.return_sequences else "cf"
    node = ctx.emit("conv_lstm", [x], call.outputs[0], layout=seq_layout, attrs=attrs, weights=weights)
    for out, shape in zip(call.outputs[1:], call.out_shapes[1:]):  # return_state: h, c (N, *spatial, F) -> (N, F, *spatial)
        perm = channels_first_perm(len(shape))
        ctx.graph.tensors[out] = TensorSpec(out, tuple(shape[i] for i in perm), ctx.dtype, perm)
        node.outputs.append(out)
