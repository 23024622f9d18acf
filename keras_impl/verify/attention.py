"""MultiHeadAttention in `compare.py verify` (Keras side; twin of torch_impl/verify/attention.py).

The neutral graph has one `attention` node per MultiHeadAttention
(keras_impl/read/attention.py) holding four projections' weights
(`query.weight`, ...). verify lists it as four linear records, `<node>[query]`,
`[key]`, `[value]`, `[output]`, which an explicit torch port's four nn.Linear
match by kind and shape; per-record outputs are the EinsumDense projections
(flattened over heads) and the layer's output.
"""

from __future__ import annotations

import keras

from shared.flows.verify import KerasRecord

__all__ = ["ATTENTION_ATTRS", "ATTENTION_ROLES", "attention_records", "by_record", "comparison_mask", "projections",
           "einsum_record", "einsum_output"]

import numpy as np  # noqa: E402

# A MultiHeadAttention node (keras_impl/read/attention.py) is four linear records,
# `<node>[query]`, `[key]`, `[value]`, `[output]`, in the order Keras computes them.
ATTENTION_ROLES = ("query", "key", "value", "output")
ATTENTION_ATTRS = ("num_heads", "key_dim", "value_dim", "scale", "causal", "masks")


def attention_records(n) -> list:
    """A MultiHeadAttention node as its four projections (ATTENTION_ROLES), each a linear record."""
    base = {k: n.attrs[k] for k in ATTENTION_ATTRS if k in n.attrs}
    out = []
    for role in ATTENTION_ROLES:
        ws = {w.split(".", 1)[1]: tuple(v.shape) for w, v in n.weights.items() if w.startswith(f"{role}.")}
        out.append(KerasRecord(f"{n.name}[{role}]", n.source.get("layer", n.name), n.source.get("class", "?"), "linear",
                               ws, {**base, "role": role}))
    return out


def _einsum_split(n) -> int | None:
    """How many leading kernel axes an einsum_dense node contracts (its input's
    features), for the projections of a MultiHeadAttention traced inside a
    custom layer (keras-hub's CachedMultiHeadAttention: EinsumDense
    "abc,cde->abde" into heads, "abcd,cde->abe" out of them); None otherwise."""
    eq = n.attrs.get("equation", "")
    if n.op != "einsum_dense" or "->" not in eq or "," not in eq:
        return None
    x, kernel = eq.split("->")[0].split(",")
    k = sum(1 for c in kernel if c in x)
    return k if kernel[:k] == "".join(c for c in x if c in kernel) and k < len(kernel) else None


def _einsum_role(name: str) -> str | None:
    return next((r for r in ATTENTION_ROLES if name.endswith((f"{r}_dense", f"_{r}"))), None)


def einsum_record(n):
    """A traced attention projection (einsum_dense node) as a linear record, weight
    (out, in) as nn.Linear keeps it, role from its name (query_dense, ...); None otherwise."""
    k = _einsum_split(n)
    if k is None or not n.weights:
        return None
    shape = n.attrs["kernel_shape"]
    fan_in, fan_out = int(np.prod(shape[:k])), int(np.prod(shape[k:]))
    ws = {"weight": (fan_out, fan_in), **({"bias": (fan_out,)} if "bias" in n.weights else {})}
    role = _einsum_role(n.name)
    return KerasRecord(n.name, n.source.get("layer", n.name), "EinsumDense", "linear", ws,
                       {"equation": n.attrs["equation"], **({"role": role} if role else {})})


def einsum_output(v):
    """An einsum_dense projection's output with its heads flattened: (B, T, heads, dim) -> (B, T, heads*dim)."""
    return v if v.ndim <= 3 else v.reshape(*v.shape[:2], -1)


def projections(op, args, kwargs) -> dict:
    """{role: (B, T, heads*dim)}: a MultiHeadAttention's query/key/value projections
    (its EinsumDense sublayers on the call's inputs), the torch Linear outputs."""
    query = args[0] if args else kwargs["query"]
    value = args[1] if len(args) > 1 else kwargs["value"]
    key = args[2] if len(args) > 2 else kwargs.get("key")
    key = value if key is None else key
    out = {}
    for role, dense, x in (("query", op._query_dense, query), ("key", op._key_dense, key), ("value", op._value_dense, value)):
        y = dense(keras.ops.copy(x))  # a copy carries no Keras mask (EinsumDense would warn it drops one)
        out[role] = keras.ops.reshape(y, (*y.shape[:-2], y.shape[-2] * y.shape[-1]))
    return out


def by_record(by_node: dict, graph) -> dict:
    """{node: {name: a}} with a MultiHeadAttention node's `query.weight`, ... regrouped
    as its records': {`node[query]`: {"weight": a, ...}, ...}."""
    attention = {n.name for n in graph.nodes if n.op == "attention"}
    einsum = {n.name: _einsum_split(n) for n in graph.nodes if _einsum_split(n) is not None}
    out = {}
    for node, ws in by_node.items():
        if node in einsum:  # kernel (in..., out...) -> (out, in); bias flat
            k = einsum[node]
            out[node] = {w: (a.reshape(int(np.prod(a.shape[:k])), -1).T if w == "weight" else a.reshape(-1))
                         for w, a in ws.items()}
            continue
        if node not in attention:
            out[node] = ws
            continue
        for name, a in ws.items():
            role, w = name.split(".", 1)
            out.setdefault(f"{node}[{role}]", {})[w] = a
    return out


def comparison_mask(op, call, masks: dict, runtime):
    """The steps a per-pair comparison of this call's output keeps: Keras' own mask
    (`runtime`, the `_keras_mask` it set) where there is one, else the mask the layer
    would compute from its inputs' comparison masks (masks: {tensor name: mask}).

    MultiHeadAttention.call removes the masks of its query, value and key tensors
    (keras/src/layers/attention/multi_head_attention.py: backend.set_keras_mask(query,
    None), ...), so the residual Add reading the same tensor carries no mask at run
    time, nor does what follows it; a masked pooling still drops the padded steps (its
    mask is an argument of the functional graph). Their values at padded steps (Keras'
    fully masked, uniform rows) are then no part of the output. Comparing there would
    fail a port with key_padding_mask for nothing; where padded steps do reach the
    output (a next attention block, unmasked at run time), they change the kept steps
    of a later pair and the model output, which are compared."""
    if runtime is not None or not getattr(op, "supports_masking", False) or type(op).__name__ == "MultiHeadAttention":
        return runtime
    first = call.args[0] if call.args else None
    n = len([t for t in keras.tree.flatten(first) if isinstance(t, keras.KerasTensor)])
    previous = [masks.get(name) for name in call.inputs[:n]]
    if not n or all(m is None for m in previous):
        return None
    if isinstance(first, (list, tuple)) and any(m is None for m in previous):
        return None  # Merge layers: a mask only where every input has one
    try:
        return op.compute_mask(first, previous if isinstance(first, (list, tuple)) else previous[0])
    except (ValueError, TypeError):  # a layer whose compute_mask wants its real inputs
        return None

