"""Convolutions: `conv` (1-3 d, groups, dilation; asymmetric pads as F.pad),
`conv_transpose` (TF output sizes: torch padding, output_padding and a crop)."""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter

__all__ = ["split_padding"]


def split_padding(padding) -> tuple:
    """(symmetric per-axis padding for the module, F.pad pads or None)."""
    if all(b == a for b, a in padding):
        return tuple(b for b, _ in padding), None
    pads = [p for pair in reversed(padding) for p in pair]  # F.pad: last axis first
    return tuple(0 for _ in padding), pads


@torch_emitter("conv")
def conv(node, args, module, graph=None):
    a = node.attrs
    sym, pads = split_padding(a["padding"])
    parts = [str(a["in_channels"]), str(a["out_channels"]), f"kernel_size={fmt(a['kernel_size'])}"]
    if any(s != 1 for s in a["stride"]):
        parts.append(f"stride={fmt(a['stride'])}")
    if any(sym):
        parts.append(f"padding={fmt(sym)}")
    if any(d != 1 for d in a["dilation"]):
        parts.append(f"dilation={fmt(a['dilation'])}")
    if a["groups"] != 1:
        parts.append(f"groups={a['groups']}")
    if not a["bias"]:
        parts.append("bias=False")
    x = args[0] if pads is None else f"F.pad({args[0]}, {fmt(tuple(pads))})"
    return Emitted(f"nn.Conv{a['dims']}d({', '.join(parts)})", f"{module}({x})")


@torch_emitter("conv_transpose")
def conv_transpose(node, args, module, graph=None):
    a = node.attrs
    parts = [str(a["in_channels"]), str(a["out_channels"]), f"kernel_size={fmt(a['kernel_size'])}"]
    if any(s != 1 for s in a["stride"]):
        parts.append(f"stride={fmt(a['stride'])}")
    if any(a["padding"]):
        parts.append(f"padding={fmt(a['padding'])}")
    if any(a["output_padding"]):
        parts.append(f"output_padding={fmt(a['output_padding'])}")
    if any(d != 1 for d in a["dilation"]):
        parts.append(f"dilation={fmt(a['dilation'])}")
    if not a["bias"]:
        parts.append("bias=False")
    expr = f"{module}({args[0]})"
    if any(a["trim"]):  # TF crops more on the right than torch's output_padding can say
        expr += "[:, :, " + ", ".join(f":{t}" if t else ":" for t in a["trim"]) + "]"
    return Emitted(f"nn.ConvTranspose{a['dims']}d({', '.join(parts)})", expr)
