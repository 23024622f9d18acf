"""MultiHeadAttention and TimeDistributed.

MultiHeadAttention (keras/src/layers/attention/multi_head_attention.py): the
query/key/value projections are EinsumDense kernels (features, heads, key_dim)
with biases (heads, key_dim), the output projection (heads, value_dim,
out_features); key_dim need not be d_model / heads, so they become four
explicit Linear layers (torch layout: (heads*key_dim, features)) instead of
`nn.MultiheadAttention`'s packed (3E, E) weight (PORTING_TRAPS.md). Logits are
q.k * 1/sqrt(key_dim). The boolean attention mask is the AND of the query
mask (B,T,1), the value and key masks (B,1,S) (Keras masks of the inputs:
`mask_zero` embeddings), a causal tril(T,S) and the attention_mask argument
(`_compute_attention_mask`). Two paths in `_compute_attention`:
- "fast" (dropout == 0, the usual inference path): ops.dot_product_attention,
  whose TF version replaces masked logits by -0.7 * 3.38953e38
  (backend/tensorflow/nn.py, `_apply_masks`), so a fully masked row is uniform;
- otherwise: the query is scaled first, the Softmax layer puts -1e9 at masked
  logits and zeroes masked probabilities (layers/activations/softmax.py).
The output carries the query's mask on.

TimeDistributed(layer): the inner layer runs on (N*T, ...) and the result is
split back to (N, T, ...) (layers/rnn/time_distributed.py); the inner
layer's own converter does the work between a `merge_time` and a `split_time`.
"""

from __future__ import annotations

import numpy as np

from keras_impl.read.registry import Call, converter_for, keras_converter, unsupported
from keras_impl.read.sequence import kwarg_input

__all__ = []

# keras/src/backend/tensorflow/nn.py, _get_large_negative: float32 max * -0.7
FAST_MASK_VALUE = -0.7 * 3.38953e38
# keras/src/layers/activations/softmax.py, _large_negative_number (float32/64)
SOFTMAX_MASK_VALUE = -1e9


def _proj(dense, out_first: bool):
    """(weights, in, out) of an EinsumDense projection as a Linear."""
    k = dense.kernel
    shape = tuple(int(s) for s in k.shape)
    if out_first:  # query/key/value: (F, H, d) -> (H*d, F)
        fin, fout = shape[0], shape[1] * shape[2]
    else:  # output: (H, d, F) -> (F, H*d)
        fin, fout = shape[0] * shape[1], shape[2]
    w = {"weight": (k, [("reshape", (fin, fout)), ("transpose", (1, 0))])}
    if dense.bias is not None:
        w["bias"] = (dense.bias, [("reshape", (fout,))])
    return w, fin, fout


@keras_converter("MultiHeadAttention")
def multi_head_attention(ctx, layer, call):
    if getattr(layer, "_use_gate", False) or getattr(layer, "_sliding_window", None) is not None:
        raise unsupported(layer, "use_gate / sliding_window")
    if call.kwargs.get("return_attention_scores"):
        raise unsupported(layer, "return_attention_scores=True")
    if any(len(s) != 3 for s in call.in_shapes[:2]):
        raise unsupported(layer, "query/value of rank other than 3 (attention_axes)")
    if layer._attention_axes not in (None, (1,), [1], 1, (-2,), [-2], -2):
        raise unsupported(layer, f"attention_axes={layer._attention_axes}")
    args = list(call.args) + [None] * 3
    pos = {"query": args[0] if args[0] is not None else call.kwargs.get("query"), "value": args[1] if args[1] is not None else call.kwargs.get("value"),
           "key": args[2] if args[2] is not None else call.kwargs.get("key")}
    names = {}
    for role, t in pos.items():
        names[role] = _name_of(call, t) if t is not None else None
    if names["query"] is None or names["value"] is None:
        raise unsupported(layer, "query and value must be tensors")
    weights, attrs = {}, {}
    for role, dense in (("query", layer._query_dense), ("key", layer._key_dense), ("value", layer._value_dense),
                        ("output", layer._output_dense)):
        w, fin, fout = _proj(dense, role != "output")
        weights.update({f"{role}.{k}": v for k, v in w.items()})
        attrs[f"{role}_in"], attrs[f"{role}_out"] = fin, fout
    masks = []
    for role in ("query", "value", "key", "attention"):
        m = kwarg_input(call, f"{role}_mask")
        if m is not None:
            masks.append((role, _boolean(ctx, ctx.tensor(m, "as_is"))))
    attrs.update({
        "num_heads": int(layer._num_heads), "key_dim": int(layer._key_dim), "value_dim": int(layer._value_dim),
        "bias": bool(layer._use_bias), # tf.cast(python float, float64) makes a float32 tensor first (both
        # paths cast 1/sqrt(key_dim) that way): float64 models scale by
        # float32(1/sqrt(key_dim)) (measured: 1e-8 relative in gradients otherwise)
        "scale": float(np.float32(layer._inverse_sqrt_key_dim)),
        "causal": bool(call.kwargs.get("use_causal_mask", False)), "fast": float(layer._dropout) == 0.0,
        "fast_mask_value": FAST_MASK_VALUE, "softmax_mask_value": SOFTMAX_MASK_VALUE,
        "has_key": names["key"] is not None, "masks": [r for r, _ in masks],
    })
    inputs = [ctx.tensor(names["query"], "as_is"), ctx.tensor(names["value"], "as_is")]
    if names["key"] is not None:
        inputs.append(ctx.tensor(names["key"], "as_is"))
    ctx.emit("attention", inputs + [m for _, m in masks], call.outputs[0], layout="as_is", attrs=attrs, weights=weights)


def _boolean(ctx, mask: str) -> str:
    """The mask as booleans: Keras casts every mask with ops.cast(m, "bool")
    (`_compute_attention_mask`), keras-hub hands int32 padding masks."""
    from keras_impl.read.ops_shape import boolean_input

    if ctx.graph.tensors[mask].dtype == "bool":
        return mask
    boolean_input(ctx, mask)
    out = ctx.fresh_tensor(f"{mask}_bool")
    ctx.emit("cast", [mask], out, layout="as_is", attrs={"dtype": "bool"}, keras_shape=ctx.keras_shape(mask),
             internal=True, node_name=ctx.node_name(f"{ctx.current.node_name}_{mask}_bool"))
    ctx.graph.tensors[out].dtype = "bool"
    return out


def _name_of(call, target):
    import keras

    flat = [t for t in keras.tree.flatten((call.args, call.kwargs)) if isinstance(t, keras.KerasTensor)]
    for t, name in zip(flat, call.inputs):
        if t is target:
            return name
    raise unsupported(call.layer, "an input that is not a tensor of the graph")


@keras_converter("TimeDistributed")
def time_distributed(ctx, layer, call):
    inner = layer.layer
    if kwarg_input(call, "mask") is not None:
        if inner._call_has_mask_arg:
            raise unsupported(layer, "a mask passed on to the wrapped layer")
        call.mask_unused = ("mask",)  # TimeDistributed.call hands it only to layers taking one
    x = ctx.tensor(call.inputs[0], "as_is")
    in_shape, out_shape = tuple(call.in_shapes[0]), tuple(call.out_shapes[0])
    steps = int(in_shape[1])
    merged = ctx.fresh_tensor(f"{call.outputs[0]}_merged")
    ctx.emit("merge_time", [x], merged, layout="as_is", keras_shape=(None, *in_shape[2:]), internal=True,
             node_name=ctx.node_name(f"{call.node_name}_merge_time"))
    inner_out = ctx.fresh_tensor(f"{call.outputs[0]}_inner")
    sub = Call(inner, [merged], [inner_out], (None,), {}, [(None, *in_shape[2:])], [(None, *out_shape[2:])],
               node_name=call.node_name, shares=call.shares)
    before = set(ctx.graph.tensors)
    outer, ctx.current = ctx.current, sub
    try:
        converter_for(inner)(ctx, inner, sub)
    finally:
        ctx.current = outer
    for name in set(ctx.graph.tensors) - before:  # the inner layer's tensors have no Keras twin
        ctx.graph.tensors[name].internal = True
    y = ctx.tensor(inner_out, "as_is")
    ctx.emit("split_time", [y], call.outputs[0], layout="as_is", attrs={"steps": steps}, keras_shape=out_shape,
             node_name=ctx.node_name(f"{call.node_name}_split_time"))
