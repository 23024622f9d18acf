"""`conv_lstm` (Keras' ConvLSTM1D/2D/3D) -> KerasConvLSTM, a cell module written
into model.py: torch has no convolutional LSTM (keras_impl/read/conv_lstm.py
has Keras' step)."""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter
from torch_impl.write.conv import split_padding
from torch_impl.write.core import activation_expr
from torch_impl.write.helpers import HELPERS

__all__ = []

HELPERS["KerasConvLSTM"] = '''
class KerasConvLSTM(nn.Module):
    """Keras' ConvLSTM (keras/src/layers/rnn/conv_lstm.py); torch has none.

    x: (N, T, C, *spatial). At each step, gates i, f, c, o in Keras' order:
        z = conv(x_t, weight_ih, stride, dilation) + bias + conv(h, weight_hh)
        i, f, g, o = z.chunk(4, dim=1)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g);  h = sigmoid(o) * tanh(c)
    (tanh/sigmoid unless `activation`/`recurrent_activation` say otherwise).
    The input convolution of every step runs at once, on N*T frames; the
    recurrent one keeps the state's size (stride 1, TF "same" padding).
    `pad`/`recurrent_pad`: F.pad amounts where TF pads asymmetrically.
    Returns the sequence (return_sequences) or the last h, then h and c
    (return_state); go_backwards reads the steps last to first and, as Keras,
    returns them in that order.
    """

    def __init__(self, in_channels, filters, kernel_size, stride=1, dilation=1, padding=0, pad=None,
                 recurrent_padding=0, recurrent_pad=None, bias=True, return_sequences=False, return_state=False,
                 go_backwards=False, activation=torch.tanh, recurrent_activation=torch.sigmoid):
        super().__init__()
        self.conv = (F.conv1d, F.conv2d, F.conv3d)[len(kernel_size) - 1]
        self.weight_ih = nn.Parameter(torch.empty(4 * filters, in_channels, *kernel_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * filters, filters, *kernel_size))
        self.bias = nn.Parameter(torch.zeros(4 * filters)) if bias else None
        self.stride, self.dilation, self.padding, self.pad = stride, dilation, padding, pad
        self.recurrent_padding, self.recurrent_pad = recurrent_padding, recurrent_pad
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.activation, self.recurrent_activation = activation, recurrent_activation

    def forward(self, x):
        n, steps = x.shape[:2]
        if self.go_backwards:
            x = x.flip(1)
        frames = x.flatten(0, 1)  # (N*T, C, *spatial)
        if self.pad is not None:
            frames = F.pad(frames, self.pad)
        xz = self.conv(frames, self.weight_ih, self.bias, self.stride, self.padding, self.dilation)
        xz = xz.unflatten(0, (n, steps))  # (N, T, 4F, *out)
        h = xz.new_zeros((n, self.weight_hh.shape[1], *xz.shape[3:]))
        c = torch.zeros_like(h)
        outputs = []
        for t in range(steps):
            hp = h if self.recurrent_pad is None else F.pad(h, self.recurrent_pad)
            i, f, g, o = (xz[:, t] + self.conv(hp, self.weight_hh, None, 1, self.recurrent_padding)).chunk(4, dim=1)
            c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
            h = self.recurrent_activation(o) * self.activation(c)
            outputs.append(h)
        out = torch.stack(outputs, dim=1) if self.return_sequences else h
        return (out, h, c) if self.return_state else out
'''


def _callable(attrs: dict) -> tuple:
    expr, helpers = activation_expr(attrs, "x")
    if expr.endswith("(x)") and expr.count("(") == 1:
        return expr[:-3], helpers
    return f"lambda x: {expr}", helpers


@torch_emitter("conv_lstm")
def conv_lstm(node, args, module, graph=None):
    a = node.attrs
    parts = [str(a["in_channels"]), str(a["filters"]), f"kernel_size={fmt(a['kernel_size'])}"]
    if any(s != 1 for s in a["stride"]):
        parts.append(f"stride={fmt(a['stride'])}")
    if any(d != 1 for d in a["dilation"]):
        parts.append(f"dilation={fmt(a['dilation'])}")
    for key, pad_key, padding in (("padding", "pad", a["padding"]), ("recurrent_padding", "recurrent_pad", a["recurrent_padding"])):
        sym, pads = split_padding(padding)
        if any(sym):
            parts.append(f"{key}={fmt(sym)}")
        if pads is not None:
            parts.append(f"{pad_key}={fmt(tuple(pads))}")
    if not a["bias"]:
        parts.append("bias=False")
    parts += [f"{k}=True" for k in ("return_sequences", "return_state", "go_backwards") if a[k]]
    helpers = ["KerasConvLSTM"]
    for key in ("activation", "recurrent_activation"):
        if key in a:
            fn, more = _callable(a[key])
            parts.append(f"{key}={fn}")
            helpers += more
    return Emitted(f"KerasConvLSTM({', '.join(parts)})", f"{module}({args[0]})", tuple(helpers))
