"""Neutral op -> Keras code for activations, arithmetic, pooling and layout ops
(keras_impl/write/__init__.py's registry; layers are in write_ops.py)."""

from __future__ import annotations

from keras_impl.write import keras_writer
from keras_impl.write.ops import _is_same, _t, _zero_pad

__all__ = []

_ACT = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu", "hard_silu": "hard_silu",
        "hard_sigmoid": "hard_sigmoid", "selu": "selu", "softplus": "softplus", "softsign": "softsign", "mish": "mish",
        "exp": "exponential"}


def _name(w, node) -> str:
    return w.layer_name(node.name)


@keras_writer("activation")
def activation(w, node):
    a, t = node.attrs, node.inputs[0]
    x, perm = w.arg(t), w.perm.get(t)
    fn = a["fn"]
    if fn == "identity":
        return w.alias(x, perm)
    if fn == "hard_sigmoid" and a.get("grad_slope") is not None:
        if "hard_sigmoid_torch" not in w.helpers:
            w.helpers.append("hard_sigmoid_torch")
        return w.out(f"hard_sigmoid_torch({x}, {float(a['grad_slope'])!r})", perm)
    if fn in _ACT:
        return w.out(f"layers.Activation({_ACT[fn]!r}, name={_name(w, node)!r})({x})", perm)
    if fn == "gelu":
        if a.get("approximate"):
            return w.out(f"ops.gelu({x}, approximate=True)", perm)
        if "gelu" not in w.helpers:
            w.helpers.append("gelu")
        return w.out(f"gelu({x})", perm)
    if fn == "softmax":
        return w.out(f"layers.Softmax(axis={w.keras_axis(t, a['axis'])}, name={_name(w, node)!r})({x})", perm)
    if fn == "log_softmax":
        return w.out(f"ops.log_softmax({x}, axis={w.keras_axis(t, a['axis'])})", perm)
    if fn == "leaky_relu" and w.graph.meta.get("source") == "torch":
        # TF's LeakyRelu kernel takes alpha as a float32 attribute in every dtype: slope 0.01 is
        # 0.009999999776 in float64 (5e-10 on CSPDarkNet's stem); torch's is the double. Written out:
        # torch's gradient convention too (slope at x <= 0).
        return w.out(f"ops.where(ops.greater({x}, 0.0), {x}, ops.multiply({x}, {float(a['negative_slope'])!r}))", perm)
    if fn == "leaky_relu":
        return w.out(f"layers.LeakyReLU(negative_slope={float(a['negative_slope'])!r}, name={_name(w, node)!r})({x})", perm)
    if fn == "elu":
        return w.out(f"layers.ELU(alpha={float(a.get('alpha', 1.0))!r}, name={_name(w, node)!r})({x})", perm)
    raise w.unsupported(f"activation {fn!r}")


@keras_writer("dropout")
def dropout(w, node):
    t = node.inputs[0]
    w.out(f"layers.Dropout({float(node.attrs['p'])!r}, name={_name(w, node)!r})({w.arg(t)})", w.perm.get(t))


@keras_writer("identity")
def identity(w, node):
    w.alias(w.arg(node.inputs[0]), w.perm.get(node.inputs[0]))


_LAYER = {"add": "Add", "sub": "Subtract", "mul": "Multiply", "maximum": "Maximum", "minimum": "Minimum"}
_OPS = {"add": "ops.add", "sub": "ops.subtract", "mul": "ops.multiply", "div": "ops.divide",
        "maximum": "ops.maximum", "minimum": "ops.minimum", "pow": "ops.power"}


def _same_layout_args(w, node) -> tuple:
    """Every input in the first input's layout (ranks equal), and that perm."""
    first = node.inputs[0]
    perm = w.perm.get(first)
    args = [w.arg(first)]
    for t in node.inputs[1:]:
        if w.rank(t) != w.rank(first):
            raise w.unsupported("broadcasting between tensors of different ranks")
        args.append(w.arg(t, perm if perm is not None else "as_is"))
    return args, perm


@keras_writer(*_OPS)
def binary(w, node):
    if "const" in node.weights:
        raise w.unsupported("an array constant operand")
    args, perm = _same_layout_args(w, node)
    if "const" in node.attrs:
        c = repr(float(node.attrs["const"]))
        a, b = (args[0], c) if node.attrs.get("const_side", "right") == "right" else (c, args[0])
        return w.out(f"{_OPS[node.op]}({a}, {b})", perm)
    shapes = {tuple(w.graph.tensors[t].shape[1:]) for t in node.inputs}
    if node.op in _LAYER and len(shapes) == 1:
        return w.out(f"layers.{_LAYER[node.op]}(name={_name(w, node)!r})([{', '.join(args)}])", perm)
    expr = args[0]
    for b in args[1:]:
        expr = f"{_OPS[node.op]}({expr}, {b})"
    w.out(expr, perm)


@keras_writer("mean")
def mean(w, node):
    args, perm = _same_layout_args(w, node)
    w.out(f"layers.Average(name={_name(w, node)!r})([{', '.join(args)}])", perm)


@keras_writer("concat")
def concat(w, node):
    args, perm = _same_layout_args(w, node)
    axis = w.keras_axis(node.inputs[0], node.attrs["axis"])
    axis = -1 if axis == w.rank(node.inputs[0]) - 1 else axis
    w.out(f"layers.Concatenate(axis={axis}, name={_name(w, node)!r})([{', '.join(args)}])", perm)


# ---------------------------------------------------------------- layout ---
@keras_writer("reshape")
def reshape(w, node):
    x = w.arg_flat(node.inputs[0])
    w.out(f"layers.Reshape({_t(node.attrs['shape'])}, name={_name(w, node)!r})({x})", None)


@keras_writer("flatten")
def flatten(w, node):
    x = w.arg_flat(node.inputs[0])  # torch's (C, H, W) element order for the layer after it
    if node.attrs["start_dim"] != 1:
        shape = w.graph.tensors[node.outputs[0]].shape[1:]
        return w.out(f"layers.Reshape({_t(shape)}, name={_name(w, node)!r})({x})", None)
    w.out(f"layers.Flatten(name={_name(w, node)!r})({x})", None)


@keras_writer("permute")
def permute(w, node):
    """Free: Keras keeps its array, the output is described with a composed perm."""
    t = node.inputs[0]
    have = w.perm.get(t) or tuple(range(w.rank(t)))
    w.alias(w.arg(t), tuple(have[d] for d in node.attrs["dims"]))


@keras_writer("pad")
def pad(w, node):
    t = node.inputs[0]
    x = w.arg(t, "cf")
    flat = list(node.attrs["pads"])
    pairs = [tuple(flat[i:i + 2]) for i in range(0, len(flat), 2)][::-1]  # F.pad: last axis first
    dims = w.rank(t) - 2
    value = float(node.attrs.get("value", 0.0))
    if not any(flat):  # F.pad by sizes that are 0 here (Swin pads to a multiple of the window)
        return w.alias(w.var[t], w.perm.get(t))
    if len(pairs) != dims:  # not the spatial axes of a channels-first map: keras.ops.pad on the neutral axes
        if len(pairs) >= w.rank(t):
            raise w.unsupported("padding the batch axis")
        kp = [[0, 0]] * (w.rank(t) - len(pairs)) + [list(p) for p in pairs]
        return w.out(f"ops.pad({w.arg(t, 'as_is')}, {kp}, constant_values=float({str(value)!r}))", None)
    if value != 0:  # e.g. -inf before a max pooling: keras.ops.pad on Keras' own axes
        kp = [[0, 0]] * w.rank(t)
        for i, p in enumerate(pairs):
            kp[(w.want(t, "cf") or range(w.rank(t)))[2 + i]] = list(p)
        return w.out(f"ops.pad({x}, {kp}, constant_values=float({str(value)!r}))", w.want(t, "cf"))
    arg = pairs[0] if dims == 1 else tuple(pairs)
    w.out(f"layers.ZeroPadding{dims}D({arg}, name={_name(w, node)!r})({x})", w.want(t, "cf"))


@keras_writer("crop")
def crop(w, node):
    t = node.inputs[0]
    dims = w.rank(t) - 2
    crops = tuple(tuple(int(a) for a in c) for c in node.attrs["crops"])
    w.out(f"layers.Cropping{dims}D({crops[0] if dims == 1 else crops}, name={_name(w, node)!r})({w.arg(t, 'cf')})", w.want(t, "cf"))


# --------------------------------------------------------------- pooling ---
@keras_writer("max_pool", "avg_pool")
def pool(w, node):
    a, t = node.attrs, node.inputs[0]
    d = a["dims"]
    x = w.arg(t, "cf")
    kind = "MaxPooling" if node.op == "max_pool" else "AveragePooling"
    padding = [tuple(p) for p in a["padding"]]
    sizes = w.graph.tensors[t].shape[2:]
    mode = "valid"
    if any(p != (0, 0) for p in padding):
        counts_pad = node.op == "avg_pool" and a.get("count_include_pad", True)
        if not counts_pad and _is_same(padding, sizes, a["kernel_size"], a["stride"], (1,) * d):
            mode = "same"  # TF "same" pooling leaves the padded cells out, as -inf / not counted
        elif node.op == "avg_pool" and counts_pad and all(b == e for b, e in padding):
            x = _zero_pad(w, x, padding, d, node.name)
        elif node.op == "max_pool":
            pads = [[0, 0]] + [list(p) for p in padding] + [[0, 0]]
            x_pad = w.layer_name(f"{node.name}_pad")
            w.lines.append(f"    {x_pad} = ops.pad({x}, {pads}, constant_values=float('-inf'))")
            w._vars.add(x_pad)
            x = x_pad
        else:
            raise w.unsupported("average pooling that leaves padded cells out with pads other than TF 'same'")
    stride = f", strides={_t(a['stride'])}" if tuple(a["stride"]) != tuple(a["kernel_size"]) else ""
    same = ", padding='same'" if mode == "same" else ""
    w.out(f"layers.{kind}{d}D({_t(a['kernel_size'])}{stride}{same}, name={_name(w, node)!r})({x})", w.want(t, "cf"))


def _reduced_perm(perm, rank, axes, keep):
    """The perm of the result of reducing neutral `axes` of a tensor held with `perm`."""
    perm = perm or tuple(range(rank))
    if keep:
        return perm
    kept = [i for i in range(rank) if i not in axes]
    kaxes = sorted(perm[i] for i in kept)
    return tuple(kaxes.index(perm[i]) for i in kept)


@keras_writer("global_avg_pool", "global_max_pool")
def global_pool(w, node):
    a, t = node.attrs, node.inputs[0]
    axes, keep, r = list(a["axes"]), bool(a["keepdim"]), w.rank(t)
    kind = "Average" if node.op == "global_avg_pool" else "Max"
    if r in (3, 4, 5) and axes == list(range(2, r)):
        x = w.arg(t, "cf")
        perm = _reduced_perm(w.perm.get(t), r, axes, keep)
        opts = "keepdims=True, " if keep else ""
        return w.out(f"layers.Global{kind}Pooling{r - 2}D({opts}name={_name(w, node)!r})({x})", perm)
    x, perm = w.arg(t), w.perm.get(t)
    kaxes = sorted(w.keras_axis(t, i) for i in axes)
    fn = "ops.mean" if node.op == "global_avg_pool" else "ops.max"
    w.out(f"{fn}({x}, axis={kaxes}, keepdims={keep})", _reduced_perm(perm, r, axes, keep))


@keras_writer("slice")
def slice_(w, node):
    """x[...] on Keras' array: each neutral axis' index moved to where Keras holds that axis."""
    t = node.inputs[0]
    x, perm, r = w.arg(t), w.perm.get(t), w.rank(t)
    held = perm or tuple(range(r))
    index = node.attrs["index"]
    parts = [":"] * r
    for i, ix in enumerate(index):
        if isinstance(ix, int):
            parts[held[i]] = str(ix)
        else:
            start, stop, step = ix
            s = f"{'' if start is None else start}:{'' if stop is None else stop}"
            parts[held[i]] = s + (f":{step}" if step not in (None, 1) else "")
    dropped = [i for i, ix in enumerate(index) if isinstance(ix, int)]
    while parts and parts[-1] == ":":
        parts.pop()
    if not parts:  # every axis whole: the tensor itself
        return w.alias(x, perm)
    w.out(f"{x}[{', '.join(parts)}]", _reduced_perm(perm, r, dropped, False))


@keras_writer("adaptive_avg_pool")
def adaptive_avg_pool(w, node):
    t = node.inputs[0]
    if "adaptive_average_pooling_2d" not in w.helpers:
        w.helpers.append("adaptive_average_pooling_2d")
    w.out(f"adaptive_average_pooling_2d({w.arg(t, 'cf')}, {_t(node.attrs['output_size'])})", w.want(t, "cf"))
