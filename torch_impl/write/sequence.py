"""Sequence ops: embedding, not_equal (the padding mask), rnn, flip,
masked_mean, attention, merge_time / split_time.

Recurrent layers become torch's fused nn.RNN / nn.LSTM / nn.GRU subclasses
(KerasSimpleRNN, KerasLSTM, KerasGRU in seq_helpers.py) carrying Keras' flags;
GRU(reset_after=False) has no torch counterpart and gets its own cell
(KerasGRUResetBefore, whose docstring in model.py says why). A cell whose
activations are not the fused kernel's (LSTM(activation="relu"), a
hard_sigmoid recurrent activation) gets them as constructor arguments and runs
its step written out (KerasRecurrence.set_flags says why in model.py).
"""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter
from torch_impl.write.core import activation_expr

__all__ = []

_RNN_CLASS = {"simple": "KerasSimpleRNN", "lstm": "KerasLSTM", "gru": "KerasGRU", "gru_reset_before": "KerasGRUResetBefore"}


@torch_emitter("embedding")
def embedding(node, args, module, graph=None):
    a = node.attrs
    return Emitted(f"nn.Embedding({a['num_embeddings']}, {a['embedding_dim']})", f"{module}({args[0]})")


@torch_emitter("not_equal")
def not_equal(node, args, module, graph=None):
    c = node.attrs["const"]
    return Emitted(None, f"{args[0]} != {fmt(int(c) if float(c).is_integer() else c)}")


@torch_emitter("rnn")
def rnn(node, args, module, graph=None):
    a = node.attrs
    cls = _RNN_CLASS[a["kind"]]
    extra = "" if a["bias"] else ", bias=False"
    if a["kind"] == "simple" and a.get("nonlinearity", "tanh") != "tanh":
        extra += f", nonlinearity={a['nonlinearity']!r}"
    flags = ", ".join(f"{k}={a[k]}" for k in ("return_sequences", "return_state", "go_backwards"))
    if a.get("zero_output_for_mask"):
        flags += ", zero_output_for_mask=True"
    helpers = ["KerasRecurrence", cls]
    for key in ("activation", "recurrent_activation"):  # not tanh/sigmoid: the cell runs step by step
        if key in a:
            fn, more = _callable(a[key])
            flags += f", {key}={fn}"
            helpers += more
    ctor = f"{cls}({a['input_size']}, {a['hidden_size']}{extra}, {flags})"
    call_args = [args[0]] + ([f"mask={args[1]}"] if a.get("masked") else [])
    states = args[1 + bool(a.get("masked")):]
    if states:  # Keras' initial_state=[h] / [h, c]
        call_args.append(f"initial_state=({', '.join(states)},)" if len(states) == 1 else f"initial_state=({', '.join(states)})")
    call = f"{module}({', '.join(call_args)})"
    return Emitted(ctor, call, tuple(helpers))


def _callable(attrs: dict) -> tuple:
    """(source of a callable, helpers) computing a neutral activation: the torch
    function itself where the expression is one call (`torch.sigmoid`), else a lambda."""
    expr, helpers = activation_expr(attrs, "x")
    if expr.endswith("(x)") and expr.count("(") == 1:
        return expr[:-3], helpers
    return f"lambda x: {expr}", helpers


@torch_emitter("flip")
def flip(node, args, module, graph=None):
    return Emitted(None, f"{args[0]}.flip({node.attrs['axis']})")


@torch_emitter("masked_mean")
def masked_mean(node, args, module, graph=None):
    x, mask = args
    ax, keep = node.attrs["axis"], ", keepdim=True" if node.attrs["keepdim"] else ""
    m = f"{mask}.unsqueeze(-1).to({x}.dtype)"
    return Emitted(None, f"({x} * {m}).sum({ax}{keep}) / {m}.sum({ax}{keep})")


@torch_emitter("attention")
def attention(node, args, module, graph=None):
    a = node.attrs
    ctor = (f"KerasMultiHeadAttention({a['num_heads']}, key_dim={a['key_dim']}, value_dim={a['value_dim']}, "
            f"query_in={a['query_in']}, key_in={a['key_in']}, value_in={a['value_in']}, out_features={a['output_out']}"
            + ("" if a["bias"] else ", bias=False") + f", scale={fmt(a['scale'])}" + ("" if a["fast"] else ", fast=False") + ")")
    n_in = 3 if a["has_key"] else 2
    call = list(args[:n_in])
    call += [f"{role}_mask={m}" for role, m in zip(a["masks"], args[n_in:])]
    if a["causal"]:
        call.append("causal=True")
    return Emitted(ctor, f"{module}({', '.join(call)})", ("KerasMultiHeadAttention",))


@torch_emitter("merge_time")
def merge_time(node, args, module, graph=None):
    return Emitted(None, f"{args[0]}.flatten(0, 1)")


@torch_emitter("split_time")
def split_time(node, args, module, graph=None):
    return Emitted(None, f"{args[0]}.unflatten(0, (-1, {node.attrs['steps']}))")


@torch_emitter("logical")
def logical(node, args, module, graph=None):
    return Emitted(None, f" {'|' if node.attrs['fn'] == 'or' else '&'} ".join(args))


@torch_emitter("reduce_bool")
def reduce_bool(node, args, module, graph=None):
    a = node.attrs
    expr = args[0]
    for axis in sorted(a["axes"], reverse=True):  # torch's any/all take one dim at a time
        expr = f"{expr}.{a['fn']}(dim={axis}{', keepdim=True' if a['keepdims'] else ''})"
    return Emitted(None, expr)


@torch_emitter("masking")
def masking(node, args, module, graph=None):
    v = fmt(node.attrs["mask_value"])
    return Emitted(None, f"torch.where(({args[0]} != {v}).any(dim=-1, keepdim=True), {args[0]}, 0.0)")
