"""verify's exact float64 Keras copy: TF kernels that keep a float32 constant
even in float64, computed exactly (issue 22).

A hand-written port computes in float64 with float64 constants; TF does not
everywhere. Measured with Keras 3.15 / TF 2.21 on x in [-4, 4], each Keras
activation and common layer in float64 against its float64 formula
(tests/test_verify_exact.py prints the table):

| kernel | float64 error | why |
|---|---|---|
| gelu, approximate=False | 5.0e-9 abs | tf.nn.gelu: `math.sqrt(2)` etc. cast through float32 |
| gelu, approximate=True (tanh, BERT's "gelu_new") | 9.0e-10 abs | the same, 0.044715 and sqrt(2/pi) |
| leaky_relu (activation, LeakyReLU layer, relu(negative_slope)) | 1.2e-8 (0.2), 4.8e-8 (0.3) abs | tf.nn.leaky_relu's `alpha` is a float32 op attribute |
| ops.dot_product_attention (MultiHeadAttention) | 1.5e-8 abs, key_dim 3 | `tf.cast(scale, ...)` of a Python float, and the default `1/tf.sqrt(tf.cast(H, "float32"))` (keras/src/backend/tensorflow/nn.py dot_product_attention) |
| Rescaling(1/255, offset) | 2.0e-9 abs | `self.backend.cast(self.scale, dtype)` of a Python float (keras/src/layers/preprocessing/rescaling.py) |
| every other activation (elu, selu, celu, sigmoid, hard_sigmoid, hard_silu, silu, softplus, softsign, mish, tanh, log_sigmoid, relu6, exponential, softmax, log_softmax, ...), LayerNormalization (eps 1e-3 / 1e-6 / 1e-12), BatchNormalization (inference, training output and moving-statistics update), GroupNormalization, UnitNormalization, pooling, keras.layers.Attention | <= 2.5e-14 rel | exact |

In float32 these constants are exact to float32, so only the float64 copy
changes. The exact copy wraps every layer's `call` of the clone in
`exact_kernels()`, which swaps the backend's gelu / leaky_relu /
dot_product_attention (keras/src/backend/tensorflow/nn.py, reached as
`backend.nn.X` at call time by keras/src/ops/nn.py and activations.py) for
float64-exact forms while a clone's layer runs, for float64 inputs only; so
every way of reaching them (activation="gelu", Activation, LeakyReLU, ReLU
with a negative slope, a Lambda calling keras.ops.gelu, MultiHeadAttention)
is covered, approximate=True included.
"""

from __future__ import annotations

import math
import threading

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow import nn as _tf_nn

__all__ = ["make_exact", "exact_kernels"]

_STATE = threading.local()
_ORIGINAL = {name: getattr(_tf_nn, name) for name in ("gelu", "leaky_relu", "dot_product_attention")}
# tf.nn.gelu's tanh form (tensorflow/python/ops/nn_ops.py gelu): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
GELU_TANH_COEFF = 0.044715


def _f64(x) -> bool:
    return getattr(x, "dtype", None) == tf.float64


def _fired(kernel: str) -> None:
    layer = getattr(_STATE, "layers", [None])[-1]
    if layer is not None:
        _STATE.fired.setdefault(layer, set()).add(kernel)


def _gelu(x, approximate=True):
    x = tf.convert_to_tensor(x)
    if not _f64(x):
        return _ORIGINAL["gelu"](x, approximate)
    _fired("gelu")
    if approximate:
        c = tf.constant(math.sqrt(2.0 / math.pi), tf.float64)
        return 0.5 * x * (1.0 + tf.tanh(c * (x + tf.constant(GELU_TANH_COEFF, tf.float64) * x * x * x)))
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.constant(math.sqrt(2.0), tf.float64)))


def _leaky_relu(x, negative_slope=0.2):
    x = tf.convert_to_tensor(x)
    if not _f64(x):
        return _ORIGINAL["leaky_relu"](x, negative_slope)
    _fired("leaky_relu")
    return tf.where(x >= 0, x, x * tf.constant(negative_slope, tf.float64))


def _dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False, **kw):
    if _f64(tf.convert_to_tensor(query)) and not isinstance(scale, tf.Tensor):
        _fired("attention scale")
        scale = np.float64(1.0 / math.sqrt(query.shape[-1])) if scale is None else np.float64(scale)
    return _ORIGINAL["dot_product_attention"](query, key, value, bias=bias, mask=mask, scale=scale,
                                              is_causal=is_causal, **kw)


_EXACT = {"gelu": _gelu, "leaky_relu": _leaky_relu, "dot_product_attention": _dot_product_attention}


class exact_kernels:
    """While active (re-entrant, per thread): the backend's float32-constant
    kernels compute float64 inputs exactly; `layer` names who runs."""

    def __init__(self, layer: str | None = None):
        self.layer = layer

    def __enter__(self):
        depth = getattr(_STATE, "depth", 0)
        if depth == 0:
            _STATE.layers, _STATE.fired = [None], getattr(_STATE, "fired", {})
            for name, fn in _EXACT.items():
                setattr(_tf_nn, name, fn)
        _STATE.depth = depth + 1
        _STATE.layers.append(self.layer)
        return self

    def __exit__(self, *exc):
        _STATE.layers.pop()
        _STATE.depth -= 1
        if _STATE.depth == 0:
            for name, fn in _ORIGINAL.items():
                setattr(_tf_nn, name, fn)
        return False


def _wrap(layer) -> None:
    call = layer.call

    def exact_call(*args, **kwargs):
        with exact_kernels(layer.name):
            return call(*args, **kwargs)

    layer.call = exact_call


def operations(clone) -> list:
    """Every layer of the clone and every op node of its functional graphs
    (`keras.ops.gelu(x, approximate=True)` in a functional model is an
    Operation, not a layer), nested models included; the clone itself not."""
    out, seen = [], {id(clone)}
    todo = list(clone._flatten_layers(include_self=False, recursive=True)) + list(getattr(clone, "operations", []))
    while todo:
        op = todo.pop(0)
        if id(op) in seen:
            continue
        seen.add(id(op))
        out.append(op)
        todo += list(getattr(op, "operations", []))
    return out


def make_exact(clone, layers: list) -> None:
    """Make the float64 clone compute TF's float32-constant kernels exactly:
    every layer's and op's call (the model's own included) runs inside exact_kernels;
    Rescaling's scale and offset and MultiHeadAttention's 1/sqrt(key_dim)
    become float64 scalars (a tf.cast of a Python float goes through float32)."""
    for layer in layers:
        name = type(layer).__name__
        if name == "Rescaling":
            layer.scale, layer.offset = (np.asarray(layer.scale, np.float64), np.asarray(layer.offset, np.float64))
        if isinstance(layer, keras.layers.MultiHeadAttention):  # subclasses too (keras-hub's CachedMultiHeadAttention)
            layer._inverse_sqrt_key_dim = np.float64(1.0) / np.sqrt(np.float64(layer._key_dim))
        _wrap(layer)
    _wrap(clone)


def fired(clone, x) -> list:
    """Names of the clone's layers that ran an exact kernel on x (one forward pass)."""
    _STATE.fired = {}
    clone(x, training=False)
    names = {op.name for op in operations(clone)}
    return [n for n in _STATE.fired if n in names]
