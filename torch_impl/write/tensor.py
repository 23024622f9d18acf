"""Tensor ops of traced custom layers: cast, broadcast_to, tile, einsum,
einsum_dense, masked_fill, reduce_sum, zeros_like, roll (keras_impl/read/ops_shape.py,
ops_tensor.py, einsum.py, core.py).

A size None in `shape` / `repeats` is the batch size at run time: the node's
last input is a model input, and model.py reads its `.shape[0]`.
"""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter
from torch_impl.write.helpers import HELPERS

__all__ = []

HELPERS.update({
    "FloatCast": '''
class FloatCast(nn.Module):
    """Casts to the model's float dtype: the dtype its parameters have
    (Model().double() makes it float64), through a buffer outside the state_dict."""

    def __init__(self):
        super().__init__()
        self.register_buffer("like", torch.zeros(()), persistent=False)

    def forward(self, x):
        return x.to(self.like.dtype)
''',
    "EinsumDense": '''
class EinsumDense(nn.Module):
    """Keras EinsumDense: torch.einsum(equation, x, weight) + bias, the kernel in Keras' own shape."""

    def __init__(self, equation, kernel_shape, bias_shape=None):
        super().__init__()
        self.equation = equation
        self.weight = nn.Parameter(torch.zeros(kernel_shape))
        self.bias = nn.Parameter(torch.zeros(bias_shape)) if bias_shape is not None else None

    def forward(self, x):
        y = torch.einsum(self.equation, x, self.weight)
        return y + self.bias if self.bias is not None else y
''',
})

_TORCH_DTYPES = {"bool": "torch.bool", "int8": "torch.int8", "int16": "torch.int16", "int32": "torch.int32",
                 "int64": "torch.int64", "uint8": "torch.uint8"}


def _sizes(sizes, args) -> str:
    """`(token_ids.shape[0], 16, 16)`: None is the batch of the node's last input."""
    return fmt(tuple(f"@{args[-1]}.shape[0]" if s is None else s for s in sizes)).replace("'@", "").replace("]'", "]")


@torch_emitter("cast")
def cast(node, args, module, graph=None):
    dtype = node.attrs["dtype"]
    if dtype == "float":
        return Emitted("FloatCast()", f"{module}({args[0]})", ("FloatCast",))
    if dtype not in _TORCH_DTYPES:
        raise NotImplementedError(f"a cast to {dtype}")
    return Emitted(None, f"{args[0]}.to({_TORCH_DTYPES[dtype]})")


@torch_emitter("broadcast_to")
def broadcast_to(node, args, module, graph=None):
    return Emitted(None, f"{args[0]}.expand{_sizes(node.attrs['shape'], args)}")


@torch_emitter("tile")
def tile(node, args, module, graph=None):
    return Emitted(None, f"{args[0]}.repeat{_sizes(node.attrs['repeats'], args)}")


@torch_emitter("einsum")
def einsum(node, args, module, graph=None):
    return Emitted(None, f"torch.einsum({node.attrs['equation']!r}, {', '.join(args)})")


@torch_emitter("einsum_dense")
def einsum_dense(node, args, module, graph=None):
    a = node.attrs
    bias = "" if a["bias_shape"] is None else f", {fmt(tuple(a['bias_shape']))}"
    return Emitted(f"EinsumDense({a['equation']!r}, {fmt(tuple(a['kernel_shape']))}{bias})", f"{module}({args[0]})",
                   ("EinsumDense",))


@torch_emitter("masked_fill")
def masked_fill(node, args, module, graph=None):
    """Entries where the mask is False (or, for a numeric mask, not > threshold) set to `value`."""
    threshold = node.attrs.get("threshold")
    keep = args[1] if threshold is None else f"({args[1]} > {fmt(float(threshold))})"
    return Emitted(None, f"{args[0]}.masked_fill(~{keep}, {fmt(float(node.attrs['value']))})")


@torch_emitter("reduce_sum")
def reduce_sum(node, args, module, graph=None):
    keep = ", keepdim=True" if node.attrs["keepdim"] else ""
    return Emitted(None, f"{args[0]}.sum(dim={fmt(tuple(node.attrs['axes']))}{keep})")


@torch_emitter("zeros_like")
def zeros_like(node, args, module, graph=None):
    return Emitted(None, f"torch.zeros_like({args[0]})")


@torch_emitter("roll")
def roll(node, args, module, graph=None):
    return Emitted(None, f"torch.roll({args[0]}, {fmt(tuple(node.attrs['shifts']))}, {fmt(tuple(node.attrs['dims']))})")
