"""Layout ops: reshape, permute, flatten, repeat, pad, crop, upsample, resize."""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter

__all__ = []


@torch_emitter("reshape")
def reshape(node, args, module, graph=None):
    shape = ", ".join(str(int(s)) for s in node.attrs["shape"])
    if node.attrs.get("unbatched"):  # a traced layer's variable: the whole shape (shared/graph/ir.py)
        return Emitted(None, f"{args[0]}.reshape({shape})")
    if node.attrs.get("merge_batch"):  # the batch merged with (or split from) another axis
        return Emitted(None, f"{args[0]}.reshape(-1, {shape})")
    return Emitted(None, f"{args[0]}.reshape({args[0]}.shape[0], {shape})")


def _is_reshape(dims, shape) -> bool:
    """A permute that moves only size-1 axes keeps the element order: a reshape."""
    moved = [d for d in dims if shape[d] != 1]  # the batch axis (None) counts as large
    return moved == sorted(moved)


@torch_emitter("permute")
def permute(node, args, module, graph=None):
    dims = tuple(node.attrs["dims"])
    if graph is not None and _is_reshape(dims, graph.tensors[node.inputs[0]].shape):
        # (N, 1, 1, C) -> (N, C, 1, 1) after a squeeze-excite Reshape: a permute
        # there yields a channels_last-strided tensor that makes the following
        # convs and products switch memory format (EfficientNet ran 2x slower).
        out = graph.tensors[node.outputs[0]].shape
        return Emitted(None, f"{args[0]}.reshape({args[0]}.shape[0], {', '.join(str(int(s)) for s in out[1:])})")
    return Emitted(None, f"{args[0]}.permute{fmt(dims)}")


@torch_emitter("flatten")
def flatten(node, args, module, graph=None):
    return Emitted(None, f"torch.flatten({args[0]}, {node.attrs['start_dim']})")


@torch_emitter("repeat")
def repeat(node, args, module, graph=None):
    return Emitted(None, f"{args[0]}.unsqueeze(1).expand(-1, {node.attrs['n']}, -1)")


@torch_emitter("pad")
def pad(node, args, module, graph=None):
    value = node.attrs.get("value", 0.0)
    extra = "" if value == 0 else f", value={fmt(float(value))}"
    return Emitted(None, f"F.pad({args[0]}, {fmt(tuple(node.attrs['pads']))}{extra})")


@torch_emitter("crop")
def crop(node, args, module, graph=None):
    slices = [":", ":"] + [f"{b}:{-a if a else ''}" for b, a in node.attrs["crops"]]
    return Emitted(None, f"{args[0]}[{', '.join(slices)}]")


@torch_emitter("upsample")
def upsample(node, args, module, graph=None):
    a = node.attrs
    if a["mode"] == "bilinear":  # TF's own float32 arithmetic (helpers.py)
        x, (sh, sw) = args[0], a["scale"]
        return Emitted(None, f"resize_bilinear({x}, ({x}.shape[-2] * {sh}, {x}.shape[-1] * {sw}))", ("resize_bilinear",))
    return Emitted(None, f"F.interpolate({args[0]}, scale_factor={fmt(tuple(float(s) for s in a['scale']))})")
@torch_emitter("slice")
def slice_(node, args, module, graph=None):
    parts = []
    for ix in node.attrs["index"]:
        if isinstance(ix, int):
            parts.append(str(ix))
        else:
            start, stop, step = ix
            parts.append(f"{'' if start is None else start}:{'' if stop is None else stop}" + (f":{step}" if step not in (None, 1) else ""))
    while parts and parts[-1] == ":":
        parts.pop()
    if not parts:  # the whole tensor (ops.slice of a table at its full size)
        return Emitted(None, args[0])
    return Emitted(None, f"{args[0]}[{', '.join(parts)}]")


@torch_emitter("matmul")
def matmul(node, args, module, graph=None):
    return Emitted(None, f"torch.matmul({args[0]}, {args[1]})")


@torch_emitter("take")
def take(node, args, module, graph=None):
    return Emitted(None, f"{args[0]}[{args[1]}.long()]")


@torch_emitter("resize")
def resize(node, args, module, graph=None):
    """Keras Resizing / CenterCrop / smart_resize: TF's half-pixel rules, written out (helpers.py)."""
    mode, size = node.attrs["mode"], tuple(int(s) for s in node.attrs["size"])
    helper = {"bilinear": "resize_bilinear", "nearest": "resize_nearest"}[mode]
    return Emitted(None, f"{helper}({args[0]}, {fmt(size)})", (helper,))
