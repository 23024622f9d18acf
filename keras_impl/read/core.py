"""Core layers: Dense, activations, dropout-likes, BatchNormalization,
LayerNormalization, Rescaling, Normalization.

Constants below are read from keras/src (Keras 3.15): activation defaults in
keras/src/activations/activations.py, the Normalization floor in
keras/src/layers/preprocessing/normalization.py (backend.epsilon() = 1e-7).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_impl.read.registry import keras_converter, unsupported

__all__ = ["activation_attrs", "emit_with_activation"]

# Keras activation name -> neutral `activation` fn; parameters are added from
# the layer where the layer has them (ReLU, LeakyReLU, ELU, Softmax).
_ACTIVATIONS = {
    "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "log_softmax": "log_softmax", "elu": "elu", "selu": "selu", "gelu": "gelu", "silu": "silu",
    "swish": "silu", "hard_sigmoid": "hard_sigmoid", "hard_silu": "hard_silu", "hard_swish": "hard_silu",
    "leaky_relu": "leaky_relu", "softplus": "softplus", "softsign": "softsign", "exponential": "exp",
    "mish": "mish", "linear": "identity", "celu": "celu", "log_sigmoid": "log_sigmoid",
    "tanh_shrink": "tanh_shrink", "hard_tanh": "hard_tanh", "soft_shrink": "soft_shrink",
    "hard_shrink": "hard_shrink", "squareplus": "squareplus", "sparse_plus": "sparse_plus",
    "sparse_sigmoid": "sparse_sigmoid", "sparsemax": "sparsemax", "glu": "glu",
}

# Defaults of the keras.activations functions (activations.py signatures);
# they apply when an activation is given by name ("leaky_relu" is 0.2 there,
# the LeakyReLU layer's default is 0.3: PORTING_TRAPS.md).
_FN_DEFAULTS = {
    "leaky_relu": {"negative_slope": 0.2},
    "elu": {"alpha": 1.0},
    "celu": {"alpha": 1.0},
    "gelu": {"approximate": False},
    "soft_shrink": {"threshold": 0.5},
    "hard_shrink": {"threshold": 0.5},
    "squareplus": {"b": 4.0},
}

# Activations over an axis (the last Keras axis when given by name).
_AXIS_FNS = ("softmax", "log_softmax", "sparsemax", "glu")


def tf_float_attr(v: float) -> float:
    """A python float as TF uses it when it becomes a kernel attribute or goes
    through math_ops.cast: rounded to float32 first, also in a float64 model
    (tf.nn.leaky_relu's alpha; measured 3.5e-8 off in float64 otherwise)."""
    return float(np.float32(v))


def activation_attrs(ctx, layer, fn, tensor: str) -> dict | None:
    """Neutral activation attrs for a Keras activation function; None for linear."""
    name = getattr(fn, "__name__", None) or keras.activations.serialize(fn)
    if name not in _ACTIVATIONS:
        traced = _traced_activation(ctx, fn, tensor)
        if traced is None:
            raise unsupported(layer, f"activation {name!r}")
        return traced
    if name == "linear":
        return None
    attrs = {"fn": _ACTIVATIONS[name], **_FN_DEFAULTS.get(name, {})}
    if "negative_slope" in attrs:
        attrs["negative_slope"] = tf_float_attr(attrs["negative_slope"])
    if attrs["fn"] in _AXIS_FNS:
        attrs["axis"] = ctx.axis(tensor, -1)
    return attrs


def _traced_activation(ctx, fn, tensor: str) -> dict | None:
    """Neutral attrs of an activation function the table lacks (keras-hub's
    `gelu_approximate(x)` = keras.activations.gelu(x, approximate=True)),
    found by calling it on a symbolic input: one keras.ops activation applied
    to that input, read as ops.py reads that op; None otherwise."""
    from keras_impl.read.ops import _PARAMETRISED, _UNARY

    x = keras.Input(shape=(4,), dtype=ctx.dtype)
    try:
        y = fn(x)
    except Exception:  # noqa: BLE001  (not traceable: refused by the caller)
        return None
    op = getattr(getattr(y, "_keras_history", None), "operation", None)
    if op is None or list(op._inbound_nodes[y._keras_history.node_index].input_tensors) != [x]:
        return None
    key = "ops." + type(op).__name__
    if key in _UNARY:
        return dict(_UNARY[key])
    if key not in _PARAMETRISED:
        return None
    fn_name, params = _PARAMETRISED[key]
    attrs = {"fn": fn_name}
    for p in params:
        v = getattr(op, p)
        attrs[p] = ctx.axis(tensor, int(v)) if p == "axis" else (v if v is None or isinstance(v, bool) else float(v))
    return attrs


def emit_with_activation(ctx, call, op, inputs, *, activation=None, layout="same", **kw):
    """Emit `op` and, if the layer has a non-linear activation, an activation node after it."""
    act = activation_attrs(ctx, call.layer, activation, inputs[0]) if activation is not None else None
    out = call.outputs[0]
    if act is None:
        return ctx.emit(op, inputs, out, layout=layout, **kw)
    mid = ctx.fresh_tensor(f"{out}_preact")
    node = ctx.emit(op, inputs, mid, layout=layout, internal=True, **kw)
    if act["fn"] in _AXIS_FNS:
        act["axis"] = ctx.axis(mid, -1)
    ctx.emit("activation", [mid], out, attrs=act)
    return node


@keras_converter("Dense")
def dense(ctx, layer, call):
    # Dense acts on the last Keras axis: give it Keras' own layout (a permute
    # to channels last only when the input is a channels-first feature map).
    x = ctx.tensor(call.inputs[0], "as_is")
    weights = {"weight": (layer.kernel, [("transpose", (1, 0))])}
    if layer.use_bias:
        weights["bias"] = (layer.bias, [])
    attrs = {"in_features": int(layer.kernel.shape[0]), "out_features": int(layer.units), "bias": layer.use_bias}
    emit_with_activation(ctx, call, "linear", [x], activation=layer.activation, layout="as_is", attrs=attrs, weights=weights)


@keras_converter("Activation")
def activation(ctx, layer, call):
    x = call.inputs[0]
    act = activation_attrs(ctx, layer, layer.activation, x)
    ctx.emit("activation", [x], call.outputs[0], attrs=act or {"fn": "identity"})


@keras_converter("ReLU")
def relu(ctx, layer, call):
    mv, slope, th = layer.max_value, float(layer.negative_slope), float(layer.threshold)
    if slope == 0 and th == 0 and mv is None:
        attrs = {"fn": "relu"}
    elif th == 0 and mv is None:  # activations.ReLU.static_call: backend leaky_relu
        attrs = {"fn": "leaky_relu", "negative_slope": tf_float_attr(slope)}
    elif slope == 0 and th == 0 and float(mv) == 6.0:
        attrs = {"fn": "relu6"}
    else:
        attrs = {"fn": "relu_general", "negative_slope": slope, "max_value": None if mv is None else float(mv), "threshold": th}
    ctx.emit("activation", [call.inputs[0]], call.outputs[0], attrs=attrs)


@keras_converter("LeakyReLU")
def leaky_relu(ctx, layer, call):
    slope = tf_float_attr(layer.negative_slope)  # tf.nn.leaky_relu(alpha=): a float32 attribute
    ctx.emit("activation", [call.inputs[0]], call.outputs[0], attrs={"fn": "leaky_relu", "negative_slope": slope})


@keras_converter("PReLU")
def prelu(ctx, layer, call):
    """relu(x) - alpha * relu(-x) (prelu.py, PReLU.call); alpha has the input's
    shape without the batch axis, 1 on shared_axes, so it goes to the neutral
    layout as the input does."""
    x = call.inputs[0]
    perm = ctx.perm_of(x)
    steps = [] if perm is None else [("transpose", tuple(p - 1 for p in perm[1:]))]
    alpha = tuple(int(s) for s in layer.alpha.shape)
    neutral = tuple(alpha[p - 1] for p in perm[1:]) if perm is not None else alpha
    # nn.PReLU holds one slope, or one per channel on axis 1 (shape (C,)).
    per_channel = all(s == 1 for s in neutral[1:])
    if per_channel:
        steps = steps + [("reshape", (neutral[0],) if len(neutral) > 1 or neutral[0] > 1 else (1,))]
    ctx.emit("prelu", [x], call.outputs[0], attrs={"per_channel": per_channel, "shape": list(neutral)},
             weights={"weight": (layer.alpha, steps)})


@keras_converter("ELU")
def elu(ctx, layer, call):
    ctx.emit("activation", [call.inputs[0]], call.outputs[0], attrs={"fn": "elu", "alpha": float(layer.alpha)})


# Softmax's `_large_negative_number` for float32/float64 (keras/src/layers/
# activations/softmax.py; -3e4 for float16, which the port does not check).
SOFTMAX_MASKED_LOGIT = -1e9


@keras_converter("Softmax")
def softmax(ctx, layer, call):
    """Softmax.call (keras/src/layers/activations/softmax.py): with a mask, the
    masked entries become SOFTMAX_MASKED_LOGIT first (a mask that is not
    boolean keeps the entries > 0.5), then the softmax, then the masked
    entries are set to 0."""
    from keras_impl.read.sequence import kwarg_input

    x = call.inputs[0]
    if len(call.args) > 1:
        raise unsupported(layer, "a positional mask argument")
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if len(axes) != 1:
        raise unsupported(layer, f"softmax over several axes {axes}")
    mask = kwarg_input(call, "mask")
    if mask is None:
        ctx.emit("activation", [x], call.outputs[0], attrs={"fn": "softmax", "axis": ctx.axis(x, axes[0])})
        return
    from keras_impl.read.ops_shape import boolean_input

    x, mask, out = ctx.tensor(x, "as_is"), ctx.tensor(mask, "as_is"), call.outputs[0]
    boolean_input(ctx, mask)  # an integer model input read only as this mask: test values in {0, 1}
    attrs = {"threshold": None if ctx.graph.tensors[mask].dtype == "bool" else 0.5}
    masked, probs = ctx.fresh_tensor(f"{out}_masked"), ctx.fresh_tensor(f"{out}_probs")
    ctx.emit("masked_fill", [x, mask], masked, layout="as_is", internal=True, attrs={**attrs, "value": SOFTMAX_MASKED_LOGIT})
    ctx.emit("activation", [masked], probs, internal=True, attrs={"fn": "softmax", "axis": ctx.axis(x, axes[0])})
    # then the masked entries are zeroed (a fully masked row would be uniform otherwise)
    ctx.emit("masked_fill", [probs, mask], out, layout="as_is", attrs={**attrs, "value": 0.0})


@keras_converter("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout")
def dropout(ctx, layer, call):
    # Identity in inference; masks can never match across frameworks (traps file).
    ctx.emit("dropout", [call.inputs[0]], call.outputs[0], attrs={"p": float(layer.rate)})


@keras_converter("GaussianNoise", "ActivityRegularization", "Identity")
def identity(ctx, layer, call):
    ctx.emit("identity", [call.inputs[0]], call.outputs[0])


@keras_converter("BatchNormalization")
def batch_norm(ctx, layer, call):
    x = call.inputs[0]
    axis = ctx.axis(x, layer.axis)
    if axis != 1:
        x = ctx.tensor(x, "cf" if ctx.rank(x) >= 3 and layer.axis in (-1, ctx.rank(x) - 1) else "as_is")
        axis = ctx.axis(x, layer.axis)
        if axis != 1:
            raise unsupported(layer, f"normalising axis {layer.axis} of a rank-{ctx.rank(x)} tensor")
    weights = {}
    n = int(layer.moving_mean.shape[0])
    if layer.scale or layer.center:  # torch's affine BatchNorm has both; the missing one is a frozen constant
        weights["weight"] = (layer.gamma, []) if layer.scale else np.ones(n, ctx.dtype)
        weights["bias"] = (layer.beta, []) if layer.center else np.zeros(n, ctx.dtype)
    weights["running_mean"] = (layer.moving_mean, [])
    weights["running_var"] = (layer.moving_variance, [])
    attrs = {
        "num_features": int(layer.moving_mean.shape[0]),
        "eps": float(layer.epsilon),
        # torch: running = (1-m)*running + m*batch; Keras: moving = m*moving + (1-m)*batch.
        "momentum": float(f"{1.0 - float(layer.momentum):.12g}"),
        "affine": bool(layer.scale or layer.center),
        "scale": bool(layer.scale),
        "center": bool(layer.center),
    }
    ctx.emit("batch_norm", [x], call.outputs[0], layout="same", attrs=attrs, weights=weights)


@keras_converter("LayerNormalization")
def layer_norm(ctx, layer, call):
    if getattr(layer, "rms_scaling", False):
        raise unsupported(layer, "rms_scaling=True")
    rank = ctx.rank(call.inputs[0])
    axes = sorted(a % rank for a in (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]))
    if axes != list(range(rank - len(axes), rank)) or (layer.center and not layer.scale):
        from keras_impl.read.normalization import layer_norm_axes

        return layer_norm_axes(ctx, layer, call)  # any axes: a helper module
    x = ctx.tensor(call.inputs[0], "as_is")  # nn.LayerNorm: the trailing Keras axes
    shape = [int(call.in_shapes[0][a]) for a in axes]
    weights = {}
    if layer.scale:
        weights["weight"] = (layer.gamma, [("reshape", tuple(shape))])
    if layer.center:
        weights["bias"] = (layer.beta, [("reshape", tuple(shape))])
    attrs = {"normalized_shape": shape, "eps": float(layer.epsilon), "scale": bool(layer.scale), "center": bool(layer.center)}
    ctx.emit("layer_norm", [x], call.outputs[0], layout="as_is", attrs=attrs, weights=weights)


@keras_converter("Rescaling")
def rescaling(ctx, layer, call):
    x = call.inputs[0]
    scale, offset = keras.ops.convert_to_numpy(layer.scale), keras.ops.convert_to_numpy(layer.offset)
    attrs, weights = {}, {}
    for key, v in (("scale", scale), ("offset", offset)):
        if v.ndim == 0 and isinstance(getattr(layer, key), float):
            # Rescaling.call does backend.cast(python float, dtype): TF makes a
            # float32 tensor of it first, so even a float64 model multiplies by
            # float32(1/255) (measured: 9e-10 off in float64 otherwise).
            attrs[key] = float(np.float32(v))
        elif v.ndim == 0:
            attrs[key] = float(v)
        else:
            weights[key] = ctx.const_to_neutral(v, x)
    ctx.emit("rescale", [x], call.outputs[0], attrs=attrs, weights=weights)


@keras_converter("Normalization")
def normalization(ctx, layer, call):
    x = call.inputs[0]
    mean = keras.ops.convert_to_numpy(layer.mean)
    variance = keras.ops.convert_to_numpy(layer.variance)
    weights = {"mean": ctx.const_to_neutral(mean, x), "variance": ctx.const_to_neutral(variance, x)}
    # (x - mean) / max(sqrt(var), epsilon): a floor, not an added epsilon (traps file).
    attrs = {"floor": float(keras.backend.epsilon()), "invert": bool(layer.invert)}
    ctx.emit("normalize", [x], call.outputs[0], attrs=attrs, weights=weights)
