"""Neutral op -> Keras code: one writer per op (keras_impl/write/__init__.py's registry).

The twin of torch_impl/emit. Each writer asks for its inputs in the layout it
needs (`w.arg(t, "cf")`: channels last in Keras), writes one statement with
`w.out(expr, perm)` and records its weights with `w.weight(name, layer,
attribute, steps)`, steps being the copy-only transform from Keras' array to
the neutral (torch) one. Padding Keras lacks is made explicit: torch's
symmetric pads become ZeroPadding + "valid" unless they equal TF "same"
(PORTING_TRAPS.md: TF puts the odd extra after), max pooling pads with -inf.
"""

from __future__ import annotations

import numpy as np

from keras_impl.read.registry import same_pads
from keras_impl.read.conv import conv_kernel_steps
from keras_impl.write import keras_writer

__all__ = ["HELPERS"]

# Small functions model_keras.py defines when its model needs them (plain
# keras.ops at build time: the saved model holds only built-in operations).
HELPERS = {
    "gelu": '''
def gelu(x):
    """torch's exact GELU, x * 0.5 * (1 + erf(x / sqrt(2))). TensorFlow's fused
    gelu kernel (layers.Activation("gelu")) is off by up to 5e-9 in float64."""
    return ops.multiply(ops.multiply(x, 0.5), ops.add(ops.erf(ops.multiply(x, 0.7071067811865476)), 1.0))
''',
    "hard_sigmoid_torch": '''
def hard_sigmoid_torch(x, grad_slope):
    """relu6(x + 3) / 6 exactly (Keras' hard_sigmoid), with torch's gradient:
    torch's hardsigmoid backward multiplies by float32(1/6) = grad_slope in
    every dtype (aten/src/ATen/native/cpu/Activation.cpp); r * s - r * s is 0."""
    r = ops.relu6(ops.add(x, 3.0))
    slope = ops.multiply(r, grad_slope)
    return ops.add(ops.stop_gradient(ops.divide(r, 6.0)), ops.subtract(slope, ops.stop_gradient(slope)))
''',
    "adaptive_average_pooling_2d": '''
def adaptive_average_pooling_2d(x, output_size):
    """torch's AdaptiveAvgPool2d on channels-last x: output cell i of an axis of
    n cells averages cells floor(i * n / size) .. ceil((i + 1) * n / size) - 1."""
    for axis, size in zip((1, 2), output_size):
        n = x.shape[axis]
        cells = []
        for i in range(size):
            start, stop = i * n // size, -(-(i + 1) * n // size)
            part = x[:, start:stop] if axis == 1 else x[:, :, start:stop]
            cells.append(ops.mean(part, axis=axis, keepdims=True))
        x = ops.concatenate(cells, axis=axis)
    return x
''',
}


def _t(v) -> str:
    v = tuple(int(a) for a in v)
    return f"({v[0]},)" if len(v) == 1 else str(v)


def _is_same(padding, sizes, kernel, stride, dilation) -> bool:
    """Do these explicit pads equal TF "same" for this input size?"""
    return all(s is not None and tuple(p) == same_pads(s, k, st, d)
               for p, s, k, st, d in zip(padding, sizes, kernel, stride, dilation))


def _zero_pad(w, x, padding, dims, name) -> str:
    pairs = tuple(tuple(int(a) for a in p) for p in padding)
    arg = pairs[0] if dims == 1 else pairs
    layer = w.layer_name(f"{name}_pad")
    var = layer
    w.lines.append(f"    {var} = layers.ZeroPadding{dims}D({arg}, name={layer!r})({x})")
    w._vars.add(var)
    return var


# ---------------------------------------------------------------- layers ---
@keras_writer("conv")
def conv(w, node):
    a, d = node.attrs, node.attrs["dims"]
    x = w.arg(node.inputs[0], "cf")
    sizes = w.graph.tensors[node.inputs[0]].shape[2:]
    pad = "valid"
    if any(p != (0, 0) for p in map(tuple, a["padding"])):
        if all(s == 1 for s in a["stride"]) and _is_same(a["padding"], sizes, a["kernel_size"], a["stride"], a["dilation"]):
            pad = "same"
        else:
            x = _zero_pad(w, x, a["padding"], d, node.name)
    opts = f"strides={_t(a['stride'])}, " if any(s != 1 for s in a["stride"]) else ""
    opts += f"padding={pad!r}, " if pad != "valid" else ""
    opts += f"dilation_rate={_t(a['dilation'])}, " if any(s != 1 for s in a["dilation"]) else ""
    opts += "" if a["bias"] else "use_bias=False, "
    name = w.layer_name(node.name)
    c_in, c_out, k = a["in_channels"], a["out_channels"], tuple(a["kernel_size"])
    if a["groups"] == c_in and c_in > 1 and d == 2:
        m = c_out // c_in
        opts += f"depth_multiplier={m}, " if m != 1 else ""
        w.out(f"layers.DepthwiseConv2D({_t(k)}, {opts}name={name!r})({x})", "cf")
        w.weight("weight", name, "kernel", [("transpose", (2, 3, 0, 1)), ("reshape", (c_out, 1, *k))])
    else:
        opts += f"groups={a['groups']}, " if a["groups"] != 1 else ""
        w.out(f"layers.Conv{d}D({c_out}, {_t(k)}, {opts}name={name!r})({x})", "cf")
        w.weight("weight", name, "kernel", conv_kernel_steps(d))
    if a["bias"]:
        w.weight("bias", name, "bias")


@keras_writer("linear")
def linear(w, node):
    a = node.attrs
    x = w.arg(node.inputs[0], "as_is")
    name = w.layer_name(node.name)
    bias = "" if a["bias"] else "use_bias=False, "
    w.out(f"layers.Dense({a['out_features']}, {bias}name={name!r})({x})", None)
    # torch Linear: weight (out, in); transformers' Conv1D (GPT-2): weight (in, out), Keras' own layout
    w.weight("weight", name, "kernel", [] if a.get("weight_in_out") else [("transpose", (1, 0))])
    if a["bias"]:
        w.weight("bias", name, "bias")


@keras_writer("batch_norm")
def batch_norm(w, node):
    a = node.attrs
    t = node.inputs[0]
    layout = "cf" if w.rank(t) >= 3 else "as_is"
    x = w.arg(t, layout)
    perm = w.want(t, layout)
    axis = (perm or tuple(range(w.rank(t))))[1]
    name = w.layer_name(node.name)
    scale, center = a.get("scale", a["affine"]), a.get("center", a["affine"])
    # Keras: moving = m*moving + (1-m)*batch; torch: running = (1-m)*running + m*batch.
    momentum = float(f"{1.0 - float(a['momentum']):.12g}")
    opts = "" if scale else "scale=False, "
    opts += "" if center else "center=False, "
    w.out(f"layers.BatchNormalization(axis={-1 if axis == w.rank(t) - 1 else axis}, momentum={momentum!r}, "
          f"epsilon={float(a['eps'])!r}, {opts}name={name!r})({x})", perm)
    for wname, attr in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
        if wname in node.weights:
            w.weight(wname, name, attr)


@keras_writer("layer_norm")
def layer_norm(w, node):
    a = node.attrs
    t = node.inputs[0]
    x = w.arg(t, "as_is")
    k = len(a["normalized_shape"])
    axis = -1 if k == 1 else list(range(w.rank(t) - k, w.rank(t)))
    name = w.layer_name(node.name)
    opts = ("" if a["scale"] else "scale=False, ") + ("" if a["center"] else "center=False, ")
    w.out(f"layers.LayerNormalization(axis={axis}, epsilon={float(a['eps'])!r}, {opts}name={name!r})({x})", None)
    steps = [("reshape", tuple(a["normalized_shape"]))] if k > 1 else []
    if a["scale"]:
        w.weight("weight", name, "gamma", steps)
    if a["center"]:
        w.weight("bias", name, "beta", steps)


@keras_writer("group_norm")
def group_norm(w, node):
    """layers.GroupNormalization over the channel axis (Keras' groups are
    consecutive channels, as nn.GroupNorm's: group_normalization.py
    _reshape_into_groups); epsilon copied (Keras' default 1e-3, torch's 1e-5)."""
    a, t = node.attrs, node.inputs[0]
    x = w.arg(t, "cf")
    perm = w.want(t, "cf")
    axis = (perm or tuple(range(w.rank(t))))[1]
    name = w.layer_name(node.name)
    opts = ("" if a["scale"] else "scale=False, ") + ("" if a["center"] else "center=False, ")
    w.out(f"layers.GroupNormalization(groups={int(a['num_groups'])}, axis={-1 if axis == w.rank(t) - 1 else axis}, "
          f"epsilon={float(a['eps'])!r}, {opts}name={name!r})({x})", perm)
    if a["scale"]:
        w.weight("weight", name, "gamma")
    if a["center"]:
        w.weight("bias", name, "beta")


@keras_writer("parameter")
def parameter(w, node):
    """A trainable array broadcast over the batch: Dense(prod, no bias) on ones (N, 1), reshaped."""
    out = node.outputs[0]
    rank = w.rank(out)
    perm = w.want(out, "cf" if rank >= 4 else "as_is")
    w.perm[out] = perm
    kshape = tuple(int(s) for s in w.keras_shape(out, perm)[1:])
    size = int(np.prod(kshape))
    name = w.layer_name(node.name)
    ones = w.batch_ones()
    trainable = node.attrs.get("trainable", True)
    expr = (f"layers.Reshape({_t(kshape)}, name={w.layer_name(name + '_reshape')!r})(layers.Dense({size}, use_bias=False, "
            f"{'' if trainable else 'trainable=False, '}name={name!r})({ones}))")
    dtype = str(node.weights["weight"].dtype)
    if dtype not in ("float32", "float64"):  # integer or boolean constants (position ids, masks): exact below 2**24
        expr = f"ops.cast({expr}, {dtype!r})"
    w.out(expr, perm, comment="a trainable torch parameter" if trainable else "a torch buffer or constant")
    neutral = tuple(int(s) for s in node.attrs["shape"])
    steps = [("reshape", (1, *kshape))] + ([("transpose", perm)] if perm else []) + [("reshape", tuple(node.weights["weight"].shape))]
    assert int(np.prod(neutral)) == size
    w.weight("weight", name, "kernel", steps)


@keras_writer("take_parameter")
def take_parameter(w, node):
    """A parameter picked by constant indices (relative position bias tables),
    one row that broadcasts over any batch (Swin's windows folded into it): the
    flat table is a trainable Dense kernel on ones (1, 1), the index a frozen
    one (exact below 2**24), picked with ops.take_along_axis (gradient: a
    scatter-add, as torch's index backward)."""
    out = node.outputs[0]
    w.perm[out] = None
    table, index = node.weights["weight"], node.weights["index"]
    name, index_name = w.layer_name(node.name), w.layer_name(node.name + "_index")
    row = w.one_row()
    picked = (f"ops.take_along_axis(layers.Dense({table.size}, use_bias=False, name={name!r})({row}), "
              f"ops.cast(layers.Dense({index.size}, use_bias=False, trainable=False, name={index_name!r})"
              f"({row}), 'int32'), axis=1)")
    kshape = tuple(int(s) for s in node.attrs["shape"][1:])
    w.out(f"layers.Reshape({_t(kshape)}, name={w.layer_name(name + '_reshape')!r})({picked})", None,
          comment="a torch parameter picked by constant indices (one row, broadcast over the batch)")
    w.weight("weight", name, "kernel", [("reshape", tuple(table.shape))])
    w.weight("index", index_name, "kernel", [("reshape", tuple(index.shape))])


@keras_writer("multi_head_attention")
def multi_head_attention(w, node):
    """keras.layers.MultiHeadAttention: per-head kernels (E, H, E/H) <- torch's
    (E, E) projections; the output kernel (H, E/H, E) <- out_proj.weight.T."""
    a = node.attrs
    e, h = a["embed_dim"], a["num_heads"]
    q, k, v = (w.arg(t, "as_is") for t in node.inputs)
    name = w.layer_name(node.name)
    bias = "" if a["bias"] else ", use_bias=False"
    key = "" if k == v else f", key={k}"
    w.out(f"layers.MultiHeadAttention({h}, {e // h}{bias}, name={name!r})({q}, {v}{key})", None)
    for part, dense in (("q", "query_dense"), ("k", "key_dense"), ("v", "value_dense")):
        w.weight(f"{part}_weight", name, f"{dense}.kernel", [("transpose", (1, 2, 0)), ("reshape", (e, e))])
        if a["bias"]:
            w.weight(f"{part}_bias", name, f"{dense}.bias", [("reshape", (e,))])
    w.weight("out_weight", name, "output_dense.kernel", [("reshape", (e, e)), ("transpose", (1, 0))])
    if "out_bias" in node.weights:
        w.weight("out_bias", name, "output_dense.bias")
