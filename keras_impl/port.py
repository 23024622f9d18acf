"""Keras side of `compare.py port`: load a model, its loss, its gradients.

Loading keeps Keras' safe_mode: a Lambda layer carrying code is refused
(UsageError, exit 2) unless `unsafe=True`, for saved files (Keras raises on
deserialisation) and for models built by a user function alike. Everything
crosses to the caller as numpy in the graph's neutral layout, weights and
gradients under the graph's state_dict keys (shared/graph.py weight_sources).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from shared.errors import UsageError
from shared.graph import Graph, apply_transform, invert_transform

__all__ = ["load_model", "infer_loss", "loss_and_grads", "get_weights", "set_weights", "lambda_layers", "sgd_steps"]

# Keras loss names (and class names) -> the project's loss spec kinds.
_LOSS_KINDS = {
    "sparse_categorical_crossentropy": "sparse_ce", "SparseCategoricalCrossentropy": "sparse_ce",
    "categorical_crossentropy": "ce", "CategoricalCrossentropy": "ce",
    "binary_crossentropy": "bce", "BinaryCrossentropy": "bce",
    "mean_squared_error": "mse", "mse": "mse", "MeanSquaredError": "mse",
    "mean_absolute_error": "mae", "mae": "mae", "MeanAbsoluteError": "mae",
}


def _iter_layers(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        yield layer


def lambda_layers(model) -> list:
    return [layer.name for layer in _iter_layers(model) if isinstance(layer, keras.layers.Lambda)]


def _load_callable(spec: str):
    target, _, fn_name = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"{spec}: no such file {target}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules.setdefault(path.stem, module)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise UsageError(f"{spec}: cannot import module {target!r} ({e})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise UsageError(f"{spec}: {target} has no function {fn_name!r}")
    return fn


def load_model(spec: str, unsafe: bool = False):
    """A Keras model from a .keras / .h5 file or `module:function` / `file.py:function`."""
    path = Path(spec)
    if spec.endswith((".keras", ".h5", ".hdf5")):
        if not path.is_file():
            raise UsageError(f"{spec}: no such model file")
        try:
            model = keras.saving.load_model(str(path), safe_mode=not unsafe, compile=True)
        except ValueError as e:
            if "safe_mode" in str(e) or "lambda" in str(e).lower():
                raise UsageError(f"{spec}: the model has a Lambda layer carrying code; Keras' safe_mode refuses to "
                                 "load it. Pass --unsafe if you trust this file") from None
            raise UsageError(f"{spec}: cannot load the model: {str(e).splitlines()[0]}") from None
    elif ":" in spec:
        model = _load_callable(spec)()
        if not isinstance(model, keras.Model):
            raise UsageError(f"{spec}: returned {type(model).__name__}, expected a keras.Model")
    else:
        raise UsageError(f"{spec}: expected a .keras or .h5 file, or package.module:function / path/file.py:function")
    lambdas = lambda_layers(model)
    if lambdas and not unsafe:
        raise UsageError(f"{spec}: Lambda layer(s) {lambdas} carry code; refused as Keras' safe_mode would. "
                         "Pass --unsafe if you trust it")
    return model


def infer_loss(model, graph: Graph) -> dict:
    """{"kind": sparse_ce|ce|bce|mse|mae, "from_logits": bool, "source": str}.

    The compiled loss when there is one; else from the head: softmax ->
    sparse categorical cross-entropy, sigmoid -> binary cross-entropy,
    linear with several outputs -> sparse CE from logits, linear single -> MSE.
    """
    loss = getattr(model, "loss", None)
    if loss is not None and not isinstance(loss, (list, dict)):
        name = loss if isinstance(loss, str) else type(loss).__name__
        kind = _LOSS_KINDS.get(name) or _LOSS_KINDS.get(getattr(loss, "name", ""))
        if kind is None:
            raise UsageError(f"compiled loss {name!r} is not supported by the port; known: {sorted(set(_LOSS_KINDS))}")
        return {"kind": kind, "from_logits": bool(getattr(loss, "from_logits", False)), "source": f"compiled {name}"}
    head = graph.producer(graph.outputs[0])
    fn = head.attrs.get("fn") if head is not None and head.op == "activation" else None
    width = graph.tensors[graph.outputs[0]].shape[-1]
    if fn == "softmax":
        return {"kind": "sparse_ce", "from_logits": False, "source": "inferred: softmax head"}
    if fn == "sigmoid":
        return {"kind": "bce", "from_logits": False, "source": "inferred: sigmoid head"}
    if len(graph.tensors[graph.outputs[0]].shape) == 2 and width and width > 1:
        return {"kind": "sparse_ce", "from_logits": True, "source": "inferred: linear head, several outputs"}
    return {"kind": "mse", "from_logits": False, "source": "inferred: linear head"}


def _keras_loss(spec: dict, dtype: str):
    """The Keras loss object; `dtype` given, since a Loss computes in floatx
    (float32) by default, whatever the model's dtype (traps file)."""
    kind, logits = spec["kind"], spec["from_logits"]
    return {
        "sparse_ce": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=logits, dtype=dtype),
        "ce": lambda: keras.losses.CategoricalCrossentropy(from_logits=logits, dtype=dtype),
        "bce": lambda: keras.losses.BinaryCrossentropy(from_logits=logits, dtype=dtype),
        "mse": lambda: keras.losses.MeanSquaredError(dtype=dtype),
        "mae": lambda: keras.losses.MeanAbsoluteError(dtype=dtype),
    }[kind]()


def _to_keras_layout(graph: Graph, name: str, x: np.ndarray) -> np.ndarray:
    perm = graph.tensors[name].keras_perm
    return x if perm is None else np.ascontiguousarray(np.transpose(x, np.argsort(perm)))


def _variables_by_path(model) -> dict:
    return {v.path: v for v in model.weights}


def loss_and_grads(model, graph: Graph, inputs: list, y: np.ndarray, loss: dict) -> tuple:
    """(mean loss, {state key: gradient, neutral layout}) in inference mode."""
    xs = [tf.constant(_to_keras_layout(graph, n, x)) for n, x in zip(graph.inputs, inputs)]
    variables = _variables_by_path(model)
    wanted = {k: s for k, s in graph.weight_sources.items() if variables[s["variable"]].trainable}
    with tf.GradientTape() as tape:
        out = model(xs if len(xs) > 1 else xs[0], training=False)
        # Keras' TF losses take the logits behind a softmax/sigmoid output when
        # it carries them (backend/tensorflow/nn.py, _get_logits); the torch
        # side must then do the same.
        loss["keras_uses_logits"] = hasattr(out, "_keras_logits")
        value = _keras_loss(loss, keras.backend.standardize_dtype(out.dtype))(_to_keras_layout(graph, graph.outputs[0], y) if loss["kind"] not in ("sparse_ce",) else y, out)
    paths = sorted({s["variable"] for s in wanted.values()})
    grads = dict(zip(paths, tape.gradient(value, [variables[p] for p in paths])))
    out = {}
    for key, s in wanted.items():
        g = grads[s["variable"]]
        g = np.zeros(s["source_shape"]) if g is None else keras.ops.convert_to_numpy(g)
        out[key] = apply_transform(g, [(k, tuple(a)) for k, a in s["transform"]])
    return float(keras.ops.convert_to_numpy(value)), out


def get_weights(model, graph: Graph) -> dict:
    """Every mapped weight, neutral layout, by state key."""
    variables = _variables_by_path(model)
    return {k: apply_transform(keras.ops.convert_to_numpy(variables[s["variable"]]), [(a, tuple(b)) for a, b in s["transform"]])
            for k, s in graph.weight_sources.items()}


def set_weights(model, graph: Graph, tensors: dict) -> None:
    variables = _variables_by_path(model)
    for k, s in graph.weight_sources.items():
        v = variables[s["variable"]]
        v.assign(invert_transform(np.asarray(tensors[k]), [(a, tuple(b)) for a, b in s["transform"]], s["source_shape"]).astype(v.dtype))


def sgd_steps(model, graph: Graph, batches: list, loss: dict, lr: float, momentum: float) -> tuple:
    """Train `model` in training mode (BatchNorm on batch statistics, updating
    its moving statistics; Dropout rates set to 0 so both sides stay
    deterministic) with keras.optimizers.SGD; (losses, weights by state key).

    batches: [(inputs, y)], inputs in the graph's neutral layout."""
    for layer in _iter_layers(model):
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    from keras_impl.train import _constant

    trainable = model.trainable_variables
    # float64 hyperparameters reach float64 variables without a float32 detour
    # (keras_impl/train.py, make_optimizer: 0.01 would become 0.009999999776).
    scalar = np.float64 if str(trainable[0].dtype) == "float64" else float
    opt = keras.optimizers.SGD(learning_rate=_constant(float(lr)), momentum=scalar(momentum))
    losses = []
    for inputs, y in batches:
        xs = [tf.constant(_to_keras_layout(graph, n, x)) for n, x in zip(graph.inputs, inputs)]
        with tf.GradientTape() as tape:
            out = model(xs if len(xs) > 1 else xs[0], training=True)
            value = _keras_loss(loss, keras.backend.standardize_dtype(out.dtype))(y, out)
        opt.apply_gradients(zip(tape.gradient(value, trainable), trainable))
        losses.append(float(keras.ops.convert_to_numpy(value)))
    return losses, get_weights(model, graph)
