"""Pooling: max_pool, avg_pool (TF "same": asymmetric pads, padded cells not
counted), global_avg_pool, global_max_pool."""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter
from torch_impl.write.conv import split_padding

__all__ = []


def _fits(sym, kernel) -> bool:
    """torch pools accept a symmetric padding of at most half the kernel."""
    return all(p <= k // 2 for p, k in zip(sym, kernel))


@torch_emitter("max_pool")
def max_pool(node, args, module, graph=None):
    a = node.attrs
    sym, pads = split_padding(a["padding"])
    d, k, s = a["dims"], fmt(a["kernel_size"]), fmt(a["stride"])
    if pads is None and _fits(sym, a["kernel_size"]):
        extra = f", padding={fmt(sym)}" if any(sym) else ""
        return Emitted(f"nn.MaxPool{d}d({k}, stride={s}{extra})", f"{module}({args[0]})")
    pads = pads or [p for pair in reversed(a["padding"]) for p in pair]
    return Emitted(f"nn.MaxPool{d}d({k}, stride={s})", f'{module}(F.pad({args[0]}, {fmt(tuple(pads))}, value=float("-inf")))')


@torch_emitter("avg_pool")
def avg_pool(node, args, module, graph=None):
    a = node.attrs
    sym, pads = split_padding(a["padding"])
    d, k, s = a["dims"], fmt(a["kernel_size"]), fmt(a["stride"])
    if not any(sym) and pads is None:
        return Emitted(f"nn.AvgPool{d}d({k}, stride={s})", f"{module}({args[0]})")
    if pads is None and _fits(sym, a["kernel_size"]):
        cip = "" if a["count_include_pad"] else ", count_include_pad=False"
        return Emitted(f"nn.AvgPool{d}d({k}, stride={s}, padding={fmt(sym)}{cip})", f"{module}({args[0]})")
    if d == 1 or a["count_include_pad"]:
        raise NotImplementedError("asymmetric 1-d or count-including average pooling")
    pads = pads or [p for pair in reversed(a["padding"]) for p in pair]
    return Emitted(f"AvgPoolSame({k}, stride={s}, pads={fmt(tuple(pads))})", f"{module}({args[0]})", ("AvgPoolSame",))


@torch_emitter("global_avg_pool", "global_max_pool")
def global_pool(node, args, module, graph=None):
    fn = "mean" if node.op == "global_avg_pool" else "amax"
    keep = ", keepdim=True" if node.attrs["keepdim"] else ""
    return Emitted(None, f"{args[0]}.{fn}(dim={fmt(tuple(node.attrs['axes']))}{keep})")


@torch_emitter("adaptive_avg_pool")
def adaptive_avg_pool(node, args, module, graph=None):
    return Emitted(None, f"F.adaptive_avg_pool2d({args[0]}, {fmt(tuple(node.attrs['output_size']))})")
