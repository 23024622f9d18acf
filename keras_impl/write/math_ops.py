"""Neutral op -> Keras code for what a torch.export capture adds (torch_impl/read/aten.py):
embeddings, casts, comparisons, boolean logic, `where`, elementwise math,
batched matmul and scaled dot-product attention (keras_impl/write/__init__.py's
registry). Every op here works on the tensors as PyTorch holds them
(`w.arg(t, "as_is")`): their axes are torch's, so no axis is remapped."""

from __future__ import annotations

from keras_impl.write import keras_writer
from keras_impl.write.tensor_ops import _same_layout_args

__all__ = ["SDPA_HELPER"]

# torch.nn.functional.scaled_dot_product_attention (torch/nn/functional.py,
# its documented reference implementation): softmax(q @ k^T * scale + mask) @ v,
# scale = 1 / sqrt(head_dim) unless given; a boolean mask keeps the True cells
# (False -> -inf), a float mask is added. A query row with no cell kept gives
# 0, not NaN: torch's math and CPU flash kernels use a safe softmax there
# (aten/src/ATen/native/transformers/attention.cpp, `_safe_softmax`; GPT-2
# with a padding mask at position 0 meets it). Written out with keras.ops so
# float64 stays float64 (keras.ops.dot_product_attention takes (B, T, H, D)).
SDPA_HELPER = '''
def scaled_dot_product_attention(q, k, v, mask=None, scale=None, causal=False):
    """torch's F.scaled_dot_product_attention on (N, heads, T, head_dim) tensors;
    a query row that may attend to nothing gives 0, as torch's safe softmax."""
    scale = 1.0 / float(q.shape[-1]) ** 0.5 if scale is None else scale
    scores = ops.multiply(ops.matmul(q, ops.swapaxes(k, -1, -2)), scale)  # (N, heads, Tq, Tk)
    keep = mask if mask is not None and mask.dtype == "bool" else None
    if mask is not None and keep is None:
        scores = ops.add(scores, mask)
    if causal:
        lower = ops.tril(ops.ones((scores.shape[-2], scores.shape[-1]), dtype="bool"))
        keep = lower if keep is None else ops.logical_and(keep, lower)
    if keep is None:
        return ops.matmul(ops.softmax(scores, axis=-1), v)
    probs = ops.softmax(ops.where(keep, scores, float("-inf")), axis=-1)
    probs = ops.where(ops.any(keep, axis=-1, keepdims=True), probs, 0.0)
    return ops.matmul(probs, v)
'''


def _helper(w, name: str, text: str) -> None:
    from keras_impl.write.ops import HELPERS

    HELPERS.setdefault(name, text)
    if name not in w.helpers:
        w.helpers.append(name)


@keras_writer("embedding")
def embedding(w, node):
    """layers.Embedding (weight (V, D) as torch's); torch's padding_idx row gets
    no gradient, so its lookups pass through ops.stop_gradient."""
    a, t = node.attrs, node.inputs[0]
    ids = w.arg(t, "as_is")
    name = w.layer_name(node.name)
    expr = f"layers.Embedding({a['num_embeddings']}, {a['embedding_dim']}, name={name!r})({ids})"
    w.weight("weight", name, "embeddings")
    if a.get("padding_idx") is None:
        return w.out(expr, None)
    var = w.out(expr, None)
    pad = int(a["padding_idx"])
    w.lines.append(f"    {var} = ops.where(ops.expand_dims(ops.equal({ids}, {pad}), -1), ops.stop_gradient({var}), {var})"
                   f"  # torch: no gradient for padding_idx={pad}")


@keras_writer("cast")
def cast(w, node):
    t = node.inputs[0]
    dtype = node.attrs["dtype"]
    # "float": the model's float dtype; model_keras.py is built under floatx = that dtype (write._exec_build)
    target = "keras.config.floatx()" if dtype == "float" else repr(dtype)
    w.out(f"ops.cast({w.arg(t)}, {target})", w.perm.get(t))


_MATH = {"sqrt": "ops.sqrt", "rsqrt": "ops.rsqrt", "exp": "ops.exp", "log": "ops.log", "erf": "ops.erf",
         "negative": "ops.negative", "abs": "ops.abs", "reciprocal": "ops.reciprocal", "logical_not": "ops.logical_not",
         "sin": "ops.sin", "cos": "ops.cos"}


@keras_writer("math")
def math(w, node):
    t = node.inputs[0]
    w.out(f"{_MATH[node.attrs['fn']]}({w.arg(t)})", w.perm.get(t))


@keras_writer("compare")
def compare(w, node):
    fn = node.attrs["fn"]
    if "const" in node.attrs:
        t = node.inputs[0]
        return w.out(f"ops.{fn}({w.arg(t)}, {float(node.attrs['const'])!r})", w.perm.get(t))
    args, perm = _same_layout_args(w, node)
    w.out(f"ops.{fn}({args[0]}, {args[1]})", perm)


@keras_writer("logical")
def logical(w, node):
    args, perm = _same_layout_args(w, node)
    w.out(f"ops.logical_{node.attrs['fn']}({args[0]}, {args[1]})", perm)


@keras_writer("where")
def where(w, node):
    """ops.where(cond, x, y); a scalar x or y travels in attrs."""
    args, perm = _same_layout_args(w, node)
    rest = iter(args[1:])
    x, y = (repr(float(node.attrs[k])) if node.attrs.get(k) is not None else next(rest) for k in ("x", "y"))
    w.out(f"ops.where({args[0]}, {x}, {y})", perm)


@keras_writer("reduce_sum")
def reduce_sum(w, node):
    t = node.inputs[0]
    axes = [w.keras_axis(t, i) for i in node.attrs["axes"]]
    if w.perm.get(t) is not None and not node.attrs["keepdim"]:
        raise w.unsupported("a sum that drops axes of a channels-last tensor")
    w.out(f"ops.sum({w.arg(t)}, axis={sorted(axes)}, keepdims={bool(node.attrs['keepdim'])})", w.perm.get(t))


@keras_writer("matmul")
def matmul(w, node):
    a, b = (w.arg(t, "as_is") for t in node.inputs)
    w.out(f"ops.matmul({a}, {b})", None)


@keras_writer("scaled_dot_product_attention")
def sdpa(w, node):
    a = node.attrs
    _helper(w, "scaled_dot_product_attention", SDPA_HELPER)
    args = [w.arg(t, "as_is") for t in node.inputs]
    extra = f", mask={args[3]}" if len(args) > 3 else ""
    extra += f", scale={a['scale']!r}" if a.get("scale") is not None else ""
    extra += ", causal=True" if a.get("causal") else ""
    w.out(f"scaled_dot_product_attention({args[0]}, {args[1]}, {args[2]}{extra})", None)


@keras_writer("merge_time")
def merge_time(w, node):
    """(N, k, ...) -> (N*k, ...) in torch's order: keras.ops.reshape, which may
    change the batch axis (a Reshape layer may not)."""
    t = node.inputs[0]
    rest = tuple(int(s) for s in w.graph.tensors[t].shape[2:])
    w.out(f"ops.reshape({w.arg(t, 'as_is')}, (-1, {', '.join(map(str, rest))}))", None, comment="batch x axis 1 -> batch")


@keras_writer("split_time")
def split_time(w, node):
    """(N*k, ...) -> (N, k, ...) in torch's order (keras.ops.reshape)."""
    t = node.inputs[0]
    rest = tuple(int(s) for s in w.graph.tensors[t].shape[1:])
    w.out(f"ops.reshape({w.arg(t, 'as_is')}, (-1, {int(node.attrs['steps'])}, {', '.join(map(str, rest))}))", None,
          comment="batch -> batch x axis 1")
