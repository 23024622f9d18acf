"""nn.MultiheadAttention in `compare.py verify` (torch side; twin of keras_impl/verify/attention.py).

Keras' MultiHeadAttention is four linear records (query, key, value, output:
keras_impl/verify/attention.py). An explicit port (four nn.Linear) matches them
as it is; an nn.MultiheadAttention is split into the same four parts
(torch_impl/verify/__init__.py `_parts`): rows of its packed in_proj_weight / in_proj_bias
and its out_proj, whose forward never runs (F.multi_head_attention_forward reads
its weight), so out_proj is no record of its own (`absorbed`). Its calls'
masks and flags are shown among the traced ops (`call_hook`), and dropout inside
the attention kernels is switched off for training (`attention_dropout`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FUSED", "ROLES", "absorbed", "attention_dropout", "attention_parts", "call_hook", "fused_parts", "splits_qkv"]

ROLES = ("query", "key", "value")
# Set (True) on an nn.Linear whose output the trace saw split three ways on its last
# axis (a fused qkv projection: chunk(3, -1), split(E, -1), view(B, T, 3, H, dk)); its
# rows are then Keras' query, key and value projections (fused_parts).
FUSED = "_verify_fused_qkv"


def attention_parts(path: str, m: nn.MultiheadAttention) -> list:
    """nn.MultiheadAttention as Keras' four projections (query, key, value, output).

    F.multi_head_attention_forward reads in_proj_weight (3E, E) as the query,
    key and value rows [0:E], [E:2E], [2E:3E] (q/k/v_proj_weight where kdim or
    vdim differ from embed_dim), in_proj_bias likewise, and out_proj's weight
    and bias directly: out_proj's forward never runs, so it is the owner of
    the output part, not a record of its own (absorbed)."""
    e = m.embed_dim
    out = []
    for i, role in enumerate(ROLES):
        rows = (i * e, (i + 1) * e)
        names = ({"weight": (m, "in_proj_weight", rows)} if m._qkv_same_embed_dim
                 else {"weight": (m, f"{role[0]}_proj_weight", None)})
        if m.in_proj_bias is not None:
            names["bias"] = (m, "in_proj_bias", rows)
        out.append((f"{path}[{role}]", names))
    names = {n: (m.out_proj, n, None) for n in ("weight", "bias") if getattr(m.out_proj, n, None) is not None}
    out.append((f"{path}[output]", names))
    return out


def fused_parts(path: str, m: nn.Linear) -> list:
    """A fused qkv nn.Linear (FUSED) as three projections: rows [0:E], [E:2E], [2E:3E]."""
    conv1d = not isinstance(m, nn.Linear)  # HF Conv1D (GPT-2's c_attn): weight (in, 3E), seen transposed
    e = (m.nf if conv1d else m.out_features) // 3
    out = []
    for i, role in enumerate(ROLES):
        rows = (i * e, (i + 1) * e)
        out.append((f"{path}[{role}]", {n: (m, n, rows, conv1d and n == "weight") for n in ("weight", "bias")
                                        if getattr(m, n, None) is not None}))
    return out


def splits_qkv(name: str, args: tuple, kwargs: dict, out) -> bool:
    """Whether this call splits its first argument (a Linear's (B, T, 3E) output) into
    three equal blocks of its last axis, in order: chunk(3, dim=-1), split(E, dim=-1) or
    split([E, E, E], -1), or a view/reshape/unflatten to (..., 3, ...) there."""
    src = args[0]
    if not isinstance(src, torch.Tensor) or src.dim() < 3:  # q, k, v are sequences (B, T, 3E): not a (B, 3*H*W) decoder
        return False
    last, width = src.dim() - 1, src.shape[-1]
    if name in ("view", "reshape", "unflatten"):
        shape = tuple((out[0] if isinstance(out, (tuple, list)) else out).shape)
        return len(shape) > src.dim() and shape[:last] == tuple(src.shape[:last]) and shape[last] == 3
    if name not in ("chunk", "split"):
        return False
    first = args[1] if len(args) > 1 else kwargs.get("chunks", kwargs.get("split_size_or_sections", kwargs.get("split_size")))
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if not isinstance(dim, int) or dim % src.dim() != last:
        return False
    if name == "chunk":
        return first == 3
    sizes = list(first) if isinstance(first, (list, tuple)) else [first] * 3
    return len(sizes) == 3 and len(set(sizes)) == 1 and 3 * sizes[0] == width


def absorbed(model: nn.Module) -> set:
    """Paths of modules whose parameters are a part of another module's records
    (an nn.MultiheadAttention's out_proj)."""
    return {f"{p}.out_proj" if p else "out_proj" for p, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}


def _call(key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False):
    """The arguments of an nn.MultiheadAttention call, as _describe shows them."""


_call.__name__ = "MultiheadAttention"


def call_hook(mode, describe):
    """A forward pre-hook (with_kwargs) that shows an nn.MultiheadAttention call's masks
    and flags among the functional ops of the trace (its internals are hidden)."""
    def hook(m, args, kwargs):
        if not mode.inside:
            names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
            call = {**dict(zip(names, args)), **kwargs}
            mode.ops.setdefault(mode.last_param_module, []).append(
                describe(_call, (), {k: v for k, v in call.items() if k not in names[:3]}))
    return hook


def attention_dropout(mode, name, args, kwargs) -> tuple:
    """Dropout inside an attention kernel: F.scaled_dot_product_attention's dropout_p
    applies whatever the mode (a port must pass 0.0 in eval: recorded like F.dropout
    with training=True); F.multi_head_attention_forward drops only with training=True.
    With no_dropout both are switched off."""
    if name == "multi_head_attention_forward":
        return (args, {**kwargs, "training": False}) if mode.no_dropout else (args, kwargs)
    p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
    if p and mode.no_dropout:
        rest = dict(zip(("is_causal", "scale", "enable_gqa"), args[5:]))
        return args[:4], {**kwargs, **rest, "dropout_p": 0.0}
    if p and mode.record and mode.eval_mode:
        mode.dropouts.append(f"{name}(dropout_p={p}) after module '{mode.last_module}': dropout_p applies in eval mode "
                             "too (pass dropout_p=p if self.training else 0.0)")
    return args, kwargs
