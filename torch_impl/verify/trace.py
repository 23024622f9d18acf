"""What `compare.py verify` sees of a torch forward pass: a TorchFunctionMode
(torch_impl/verify/__init__.py's trace, pair outputs and training run under it).

It records the functional ops between modules that own parameters (`describe`,
shown in the localisation), the reshapes/permutes that made a Linear's input
(replayed by `flatten_chain`), dropout called with training=True in eval mode,
pack_padded_sequence's padded length and a Linear whose output is split into
q, k, v (torch_impl/verify/attention.py); with no_dropout it makes every
dropout the identity, inside attention kernels too.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from torch_impl.verify.packed import pack_steps
from torch_impl.verify.attention import attention_dropout, splits_qkv

__all__ = ["Mode", "describe", "flatten_chain", "MOVEMENT", "SHOWN"]

# Functions that only move elements: a Linear's input is traced back through them.
MOVEMENT = {"flatten", "view", "reshape", "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "t",
            "movedim", "moveaxis", "swapaxes", "swapdims", "unflatten"}
DROPOUTS = {"dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d"}
ATTENTION_DROPOUTS = {"scaled_dot_product_attention", "multi_head_attention_forward"}  # see attention_dropout
# torch's private packing kernels under the names a port calls them by (torch/nn/utils/rnn.py).
PACKING = {"_pack_padded_sequence": "pack_padded_sequence", "_pad_packed_sequence": "pad_packed_sequence"}
# Tensor-level functions worth showing among the functional ops between two modules
# (everything in torch.nn.functional is shown too).
SHOWN = MOVEMENT - {"contiguous"} | {n for n in dir(F) if not n.startswith("_")} | {"relu", "sigmoid", "tanh", "softmax", "log_softmax", "mean", "amax", "max", "cat",
                                    "add", "mul", "sub", "div", "clamp", "exp", "sqrt", "pow", "__add__", "__mul__",
                                    "__sub__", "__truediv__", "__pow__", "__radd__", "__rmul__", "matmul",
                                    "__matmul__", "masked_fill", "triu", "tril", "where"}
# Tensor arguments shown by their shape in those descriptions (whether a mask was passed at all).
SHOWN_TENSORS = {"attn_mask", "key_padding_mask", "mask"}


def describe(func, args, kwargs) -> str:
    """`leaky_relu(negative_slope=0.01)`: a call with its non-tensor arguments, defaults included where known."""
    name = getattr(func, "__name__", str(func))
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
        bound.apply_defaults()
        items = [f"{k}={v!r}" for k, v in bound.arguments.items()
                 if not isinstance(v, torch.Tensor) and k not in ("inplace", "input", "self") and v is not None]
        items += [f"{k}=<{tuple(v.shape)}>" for k, v in bound.arguments.items() if k in SHOWN_TENSORS and isinstance(v, torch.Tensor)]
    except (TypeError, ValueError):
        items = [repr(a) for a in args[1:] if not isinstance(a, torch.Tensor)]
        items += [f"{k}=<{tuple(v.shape)}>" if isinstance(v, torch.Tensor) else f"{k}={v!r}" for k, v in kwargs.items()
                  if not isinstance(v, torch.Tensor) or k in SHOWN_TENSORS]
    return f"{name}({', '.join(items)})"


class Mode(TorchFunctionMode):
    """Sees every torch function call of a forward pass (see the module docstring)."""

    def __init__(self, record: bool = False, no_dropout: bool = False):
        super().__init__()
        self.record, self.no_dropout = record, no_dropout
        self.prov, self.keep, self.dropouts = {}, [], []
        self.last_module = None
        self.eval_mode = False
        self.inside = 0  # > 0 while a module that owns parameters runs (its internals are its own)
        self.ops = {}  # last module that owns parameters ("" before the first) -> functional calls after it
        self.last_param_module = ""
        self.linear_out, self.fused = {}, set()  # id(output) -> Linear path (kept alive in keep); fused qkv Linears
        self.pack_steps = None  # padded time length of the last pack_padded_sequence

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in DROPOUTS and args:
            if self.no_dropout:
                return args[0]
            training = kwargs.get("training", kwargs.get("train", args[2] if len(args) > 2 else True))
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            if self.record and self.eval_mode and training and p > 0:
                self.dropouts.append(f"{name}(p={p}, training=True) after module '{self.last_module}'")
        if name in ATTENTION_DROPOUTS:
            args, kwargs = attention_dropout(self, name, args, kwargs)
        if name == "_pack_padded_sequence":
            self.pack_steps = pack_steps(args)
        if self.record and not self.inside and name in PACKING:
            self.ops.setdefault(self.last_param_module, []).append(PACKING[name])
        elif self.record and not self.inside and (name in SHOWN or getattr(func, "__module__", "") == "torch.nn.functional"):
            self.ops.setdefault(self.last_param_module, []).append(describe(func, args, kwargs))
        out = func(*args, **kwargs)
        if self.record and args and id(args[0]) in self.linear_out and splits_qkv(name, args, kwargs, out):
            self.fused.add(self.linear_out[id(args[0])])
        # `t.contiguous()` on a contiguous tensor (and reshape to the same shape) returns `t` itself:
        # recording it would make `t` its own source and flatten_chain would never end.
        if (self.record and name in MOVEMENT and args and isinstance(args[0], torch.Tensor)
                and isinstance(out, torch.Tensor) and out is not args[0]):
            self.keep.append(out)
            self.prov[id(out)] = (args[0], func, args[1:], kwargs)
        return out


def flatten_chain(prov: dict, t: torch.Tensor) -> dict | None:
    """Replay the reshapes/permutes that made `t` from a feature map on an index tensor."""
    ops, seen = [], set()
    while id(t) in prov and id(t) not in seen:  # `seen`: a chain is never replayed in a loop
        seen.add(id(t))
        src, func, args, kwargs = prov[id(t)]
        ops.append((func, args, kwargs))
        t = src
    if t.dim() < 3 or not ops:
        return None
    per = int(np.prod(t.shape[1:]))
    idx = torch.arange(per).reshape(1, *t.shape[1:]).expand(*t.shape).contiguous()
    for func, args, kwargs in reversed(ops):
        idx = func(idx, *args, **kwargs)
    if idx.dim() != 2 or idx.shape[1] != per:
        return None
    return {"source_shape": [int(s) for s in t.shape[1:]], "index": idx[0].tolist()}
