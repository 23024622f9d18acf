"""Attention in `compare.py verify`: the framework-free part.

Keras' MultiHeadAttention is four linear records (keras_impl/verify/attention.py);
a torch port is four nn.Linear or one nn.MultiheadAttention split the same way
(torch_impl/verify/attention.py). Here: why an nn.MultiheadAttention cannot take
a Keras layer whose num_heads*key_dim is not the model width (`packed_attention`),
and the classic attention bugs read from the ops between the value projection
and the output projection (`attention_notes`): the scale, the causal mask, the
order of the head split. And the projections' names (`by_role`): a port that
computes k before q is matched by its modules' names, not by call order.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["attention_notes", "by_role", "other_role", "packed_attention", "role_of", "swapped_projections"]

# A scale in the torch ops "is" Keras' 1/sqrt(key_dim) within float32 rounding of a
# printed constant (Keras keeps it as float32: keras_impl/read/attention.py).
SCALE_RTOL = 1e-6

# Words of a torch module's name that say which projection it is (q_proj, to_k, w_v, out_proj, ...).
_ROLE_WORDS = {"query": {"q", "query", "queries", "wq"}, "key": {"k", "key", "keys", "wk"},
               "value": {"v", "value", "values", "wv"}, "output": {"o", "out", "output", "wo"}}


def role_of(path: str) -> str | None:
    """The attention projection a torch record's path names: `attn[key]` (a split
    nn.MultiheadAttention), `k_proj`, `to_q`, `w_v`, `out_proj`, ...; None when it names none."""
    if path.endswith("]"):
        role = path.rsplit("[", 1)[1][:-1]
        return role if role in _ROLE_WORDS else None
    words = set(re.split(r"[^a-z]+", path.rsplit(".", 1)[-1].lower())) - {""}
    roles = [r for r, w in _ROLE_WORDS.items() if words & w]
    return roles[0] if len(roles) == 1 else None


def other_role(k, t) -> bool:
    """Keras attention record k and torch record t name different projections (query vs k_proj)."""
    role, named = k.attrs.get("role"), role_of(t.path)
    return role is not None and named is not None and named != role


def by_role(k, remaining: list, fits) -> object | None:
    """For a Keras attention record (attrs["role"]) whose next torch record in call order
    is named as another projection or does not fit: the one remaining record named as
    this role that fits (None otherwise: the order decides). A port may compute k
    before q; all four projections often have the same shape, so order alone would
    swap them silently."""
    role = k.attrs.get("role")
    if role is None or not remaining or role_of(remaining[0].path) in (role, None) and fits(remaining[0]):
        return None
    named = [u for u in remaining if role_of(u.path) == role and fits(u)]
    if len(named) > 1:  # several blocks' fused qkv ([key] in each): the one split from the next record's module
        named = [u for u in named if u.path.rsplit("[", 1)[0] == remaining[0].path.rsplit("[", 1)[0]]
    return named[0] if len(named) == 1 else None


def packed_attention(k, t) -> str:
    """Why nn.MultiheadAttention cannot be this Keras MultiHeadAttention ("" where it is not that pair)."""
    a = k.attrs
    if t.cls != "MultiheadAttention" or "num_heads" not in a:
        return ""
    h, dk, dv = a["num_heads"], a["key_dim"], a["value_dim"]
    return (f": nn.MultiheadAttention projects to embed_dim = {t.attrs.get('embed_dim')} per role, Keras' "
            f"num_heads*key_dim = {h}*{dk} = {h * dk}" + (f", num_heads*value_dim = {h}*{dv} = {h * dv}" if dv != dk else "")
            + ". nn.MultiheadAttention needs num_heads*key_dim == num_heads*value_dim == embed_dim; write the port "
            "with four nn.Linear projections (query, key, value, output) and F.scaled_dot_product_attention "
            f"(scale=1/sqrt({dk}))")


_ATTENTION = re.compile(r"attention\(num_heads=(\d+), key_dim=(\d+), value_dim=\d+, scale=([-+\d.e]+), causal=(\w+), "
                        r"masks=\[([^\]]*)\]")
_NUMBER = r"(-?[\d.]+(?:e[-+]?\d+)?)"
_SCALES = re.compile(rf"(?:scaled_dot_product_attention\([^)]*scale=|\b__mul__\(|\bmul\(|__rmul__\(){_NUMBER}")
_DIVISORS = re.compile(rf"(?:__truediv__\(|\bdiv\(){_NUMBER}")
_SPLITS = re.compile(r"\b(?:view|reshape)\((\d+), (\d+), (\d+), (\d+)\)")
_CAUSAL = ("is_causal=True", "masked_fill", "attn_mask=<", "triu", "tril", "where(")


def attention_notes(k: str, t: str) -> list:
    """Keras MultiHeadAttention (its describe text) against the torch ops around it:
    the scale 1/sqrt(key_dim), the causal mask, the (heads, key_dim) split."""
    m = _ATTENTION.search(k)
    if not m:
        return []
    heads, key_dim, scale, causal = int(m[1]), int(m[2]), float(m[3]), m[4] == "True"
    notes = []
    scales = [float(v) for v in _SCALES.findall(t)] + [1 / float(v) for v in _DIVISORS.findall(t) if float(v)]
    if scales and not any(np.isclose(c, scale, rtol=SCALE_RTOL) for c in scales):
        c = scales[0]
        notes.append(f"attention scale: Keras multiplies the scores by 1/sqrt(key_dim) = 1/sqrt({key_dim}) = {scale:.6g}, "
                     f"torch by {c:.6g} = 1/sqrt({1 / c ** 2:.4g}): Keras' key_dim is the size of one head, "
                     f"not the model width: scale=1/sqrt({key_dim})")
    masked = any(w in t for w in _CAUSAL)
    if causal and not masked:
        notes.append("causal mask: Keras calls MultiHeadAttention with use_causal_mask=True (step t attends to steps <= t), "
                     "torch applies no mask: pass is_causal=True to F.scaled_dot_product_attention (nn.MultiheadAttention: "
                     "attn_mask=torch.ones(T, T, dtype=torch.bool).triu(1), is_causal=True), or "
                     "scores.masked_fill(that mask, float('-inf')) before the softmax")
    elif not causal and "is_causal=True" in t:
        notes.append("causal mask: torch passes is_causal=True, Keras' MultiHeadAttention has no use_causal_mask")
    elif not causal and not m[5] and masked:
        notes.append("padding mask: no mask reaches this Keras MultiHeadAttention at run time (the model has none, or "
                     "an earlier MultiHeadAttention removed it from the tensors it read: keras/src/layers/attention/"
                     "multi_head_attention.py set_keras_mask(query, None)), so it attends to every step, padded ones "
                     "included; torch masks some here")
    for split in _SPLITS.findall(t):
        if key_dim != heads and (int(split[2]), int(split[3])) == (key_dim, heads):
            notes.append(f"attention heads: torch splits the projection as view(B, T, {key_dim}, {heads}) = (B, T, key_dim, "
                         f"heads); Keras' EinsumDense kernel is (features, heads, key_dim): view(B, T, {heads}, {key_dim}), "
                         "then transpose(1, 2)")
            break
    return notes


def swapped_projections(pairs: list, records: dict, keras_w: dict, torch_w: dict, same: dict) -> list:
    """With --weights as-is: a torch projection holding another projection's Keras
    weight (nn.MultiheadAttention's in_proj_weight rows are query, key, value in that
    order; a fused qkv Linear likewise). records: {Keras record name: KerasRecord};
    same: np.allclose tolerances of "the same weight"."""
    roles = {}  # (Keras layer, role) -> Keras weight in torch layout
    for p in pairs:
        k = records[p.keras]
        if k.attrs.get("role") and "weight" in keras_w.get(p.keras, {}):
            roles[(k.layer, k.attrs["role"])] = keras_w[p.keras]["weight"]
    notes = []
    for p in pairs:
        k = records[p.keras]
        t = torch_w.get(p.torch, {}).get("weight")
        if not k.attrs.get("role") or t is None or np.allclose(t, keras_w[p.keras]["weight"], **same):
            continue
        held = [r for (layer, r), w in roles.items() if layer == k.layer and r != k.attrs["role"]
                and w.shape == t.shape and np.allclose(t, w, **same)]
        if held:
            notes.append(f"{p.keras}: torch '{p.torch}' holds Keras' {held[0]} projection, not its {k.attrs['role']}: "
                         "nn.MultiheadAttention's in_proj_weight (and a fused qkv Linear) stacks query, key, value rows "
                         "in that order")
    return notes
