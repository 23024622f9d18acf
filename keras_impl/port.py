"""Keras side of `compare.py port`: load a model, its loss, its gradients.

Loading keeps Keras' safe_mode: a Lambda layer carrying code is refused
(UsageError, exit 2) unless `unsafe=True`, for saved files (Keras raises on
deserialisation) and for models built by a user function alike. Everything
crosses to the caller as numpy in the graph's neutral layout, weights and
gradients under the graph's state_dict keys (shared/graph/ir.py weight_sources).
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_impl.read import call_model
from shared.core import user_code
from shared.core.spec import import_user_module
from shared.core.errors import UsageError
from shared.graph.ir import Graph, apply_transform, invert_transform

__all__ = ["load_model", "import_plugin", "GraphWeights", "infer_loss", "loss_and_grads", "get_weights", "set_weights", "lambda_layers", "sgd_steps",
           "sgd_momentum_update", "SGD_SLICE_ELEMENTS"]

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


def import_plugin(target: str):
    """Import a module by dotted name or .py path (converters and custom layers
    register themselves on import: `--plugin`); a file is imported once."""
    key = str(Path(target).resolve()) if target.endswith(".py") else target
    if key not in _PLUGINS:
        _PLUGINS[key] = import_user_module(target)
    return _PLUGINS[key]


_PLUGINS: dict = {}  # resolved .py path (or dotted name) -> module, so a plugin imported twice registers once


def _load_callable(spec: str):
    target, _, fn_name = spec.rpartition(":")
    module = import_plugin(target)
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
        except (ValueError, TypeError) as e:  # TypeError: Keras' "could not be deserialized" around a custom object
            if user_code.user_fault(e) is not None:  # a custom object's own code raised: compare.py names it
                raise
            if "safe_mode" in str(e) or "lambda" in str(e).lower():
                raise UsageError(f"{spec}: the model has a Lambda layer carrying code; Keras' safe_mode refuses to "
                                 "load it. Pass --unsafe if you trust this file") from None
            raise UsageError(f"{spec}: cannot load the model: {_load_failure(e)}") from None
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



def _load_failure(exc: Exception) -> str:
    """Keras' reason, in one line: a custom class it cannot find is named, with the way out."""
    text = str(exc)
    missing = re.search(r"Could not locate (class|function) '([^']+)'", text)
    if missing:
        module = re.search(r"Full object config: \{'module': '([^']+)'", text)
        where = f" (defined in module {module.group(1)!r} when the model was saved)" if module else ""
        return (f"Keras could not locate {missing.group(1)} {missing.group(2)!r}{where}: pass the file or module that "
                "defines and registers it with --plugin")
    return text.splitlines()[0] if text else type(exc).__name__

def infer_loss(model, graph: Graph) -> dict:
    """{"kind": sparse_ce|ce|bce|mse|mae, "from_logits": bool, "source": str}.

    The compiled loss when there is one; else from the head: softmax ->
    sparse categorical cross-entropy, sigmoid -> binary cross-entropy,
    linear with several outputs -> sparse CE from logits, linear single -> MSE.
    """
    loss = getattr(model, "loss", None)
    if loss is not None and not isinstance(loss, (list, dict)):
        names = [loss] if isinstance(loss, str) else [getattr(loss, "__name__", ""), type(loss).__name__, getattr(loss, "name", "")]
        name = next((n for n in names if n in _LOSS_KINDS), names[0] or names[1])
        kind = _LOSS_KINDS.get(name)
        if kind is None:
            raise UsageError(f"compiled loss {name!r} is not supported by the port; known: {sorted(set(_LOSS_KINDS))}")
        return {"kind": kind, "from_logits": bool(getattr(loss, "from_logits", False)), "source": f"compiled {name}"}
    head = graph.producer(graph.outputs[0])
    fn = head.attrs.get("fn") if head is not None and head.op == "activation" else None
    width = graph.tensors[graph.outputs[0]].shape[-1]
    if fn == "softmax" and len(graph.tensors[graph.outputs[0]].shape) == 2:
        return {"kind": "sparse_ce", "from_logits": False, "source": "inferred: softmax head"}
    if fn == "sigmoid":
        return {"kind": "bce", "from_logits": False, "source": "inferred: sigmoid head"}
    if len(graph.tensors[graph.outputs[0]].shape) != 2:
        return {"kind": "mse", "from_logits": False, "source": "inferred: not a (batch, outputs) head"}
    if width and width > 1:
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


def _neutral(value, steps) -> np.ndarray:
    """A TF tensor or variable -> numpy in the neutral layout (`steps`:
    apply_transform's), with one full-size copy, not two: the transform reads
    TF's own buffer (EagerTensor.__array__ is a view; a later assign to the
    variable copies on write, the view keeps its values), and only where the
    transform left a view of that buffer is the result copied. Bit for bit
    keras.ops.convert_to_numpy then apply_transform (issue 18: VGG11-BN's
    0.8 GB float64 kernel made 1.6 GB of copies per conversion)."""
    value = value.value if isinstance(value, keras.Variable) else value
    view = np.asarray(tf.convert_to_tensor(value))
    out = apply_transform(view, [(a, tuple(b)) for a, b in steps])
    return out.copy() if np.may_share_memory(out, view) else out


def _variables(model, graph: Graph) -> dict:
    """state key -> the Keras variable (by position in model.weights: a cast
    copy of the model has the same order but other paths)."""
    weights = model.weights
    return {k: weights[s["index"]] for k, s in graph.weight_sources.items()}


def loss_and_grads(model, graph: Graph, inputs: list, y: np.ndarray, loss: dict) -> tuple:
    """(mean loss, {state key: gradient, neutral layout}) in inference mode."""
    xs = [tf.constant(_to_keras_layout(graph, n, x)) for n, x in zip(graph.inputs, inputs)]
    variables = _variables(model, graph)
    wanted = {k: s for k, s in graph.weight_sources.items() if variables[k].trainable}
    with tf.GradientTape() as tape:
        out = keras.tree.flatten(call_model(model, xs, training=False))[0]  # the loss reads the first output
        # Keras' TF losses take the logits behind a softmax/sigmoid output when
        # it carries them (backend/tensorflow/nn.py, _get_logits); the torch
        # side must then do the same.
        loss["keras_uses_logits"] = hasattr(out, "_keras_logits") and loss["kind"] in ("sparse_ce", "ce", "bce")
        value = _keras_loss(loss, keras.backend.standardize_dtype(out.dtype))(_to_keras_layout(graph, graph.outputs[0], y) if loss["kind"] not in ("sparse_ce",) else y, out)
    keys = list(wanted)
    grads = dict(zip(keys, tape.gradient(value, [variables[k] for k in keys])))
    out = {}
    for key, s in wanted.items():
        g = grads[key]
        if g is None:
            out[key] = apply_transform(np.zeros(s["source_shape"]), [(k, tuple(a)) for k, a in s["transform"]])
        else:
            out[key] = _neutral(g, s["transform"])
        grads[key] = g = None  # TF's copy goes as soon as it is converted
    return float(keras.ops.convert_to_numpy(value)), out


def get_weights(model, graph: Graph) -> dict:
    """Every mapped weight, neutral layout, by state key."""
    return dict(iter_weights(model, graph))


def iter_weights(model, graph: Graph):
    """(state key, weight in the neutral layout) pairs, one converted at a time."""
    variables = _variables(model, graph)
    for k, s in graph.weight_sources.items():
        yield k, _neutral(variables[k], s["transform"])


def set_weights(model, graph: Graph, tensors: dict) -> None:
    variables = _variables(model, graph)
    for k, s in graph.weight_sources.items():
        v = variables[k]
        steps = [(a, tuple(b)) for a, b in s["transform"]]
        # current value: a "select" step (GRU bias rows) writes one slice of it
        v.assign(invert_transform(np.asarray(tensors[k]), steps, s["source_shape"],
                                  current=keras.ops.convert_to_numpy(v)).astype(v.dtype))


def train_config_from(model, optimizer: str | None, steps: int):
    """The compiled optimizer as a TrainConfig (SGD or Adam, constant lr), or
    `optimizer` ("sgd"/"adam", TrainConfig's defaults) when given or when the
    model is not compiled."""
    from shared.data.config import TrainConfig

    opt = getattr(model, "optimizer", None)
    if optimizer is not None or opt is None:
        return TrainConfig(optimizer=optimizer or "sgd", steps=steps), f"--optimizer {optimizer or 'sgd'} (defaults)"
    lr = opt.learning_rate
    if not isinstance(lr, (float, int)) and not hasattr(lr, "numpy"):
        raise UsageError(f"compiled optimizer {type(opt).__name__} has a learning-rate schedule; pass --optimizer sgd|adam")
    lr = float(keras.ops.convert_to_numpy(lr))
    wd = float(opt.weight_decay or 0.0)
    if isinstance(opt, keras.optimizers.SGD) and not opt.nesterov:
        return TrainConfig("sgd", lr, momentum=float(opt.momentum), weight_decay=wd, steps=steps), "compiled SGD"
    if type(opt) is keras.optimizers.Adam and not opt.amsgrad:
        cfg = TrainConfig("adam", lr, beta_1=float(opt.beta_1), beta_2=float(opt.beta_2), epsilon=float(opt.epsilon),
                          weight_decay=wd, steps=steps)
        return cfg, "compiled Adam"
    raise UsageError(f"compiled optimizer {type(opt).__name__} is not supported by the port's training check; "
                     "pass --optimizer sgd|adam")


def train_steps(model, graph: Graph, inputs: list, y: np.ndarray, loss: dict, train_config) -> tuple:
    """`train_config.steps` optimizer steps on one batch, inference-mode layers
    (no dropout masks, BatchNorm on its moving statistics: deterministic on both
    sides). Trains `model` in place. Returns (pre-update losses, final weights by state key)."""
    from keras_impl.train import make_optimizer

    opt = make_optimizer(model, train_config)
    trainable = list(model.trainable_variables)
    xs = [tf.constant(_to_keras_layout(graph, n, x)) for n, x in zip(graph.inputs, inputs)]
    target = y if loss["kind"] == "sparse_ce" else _to_keras_layout(graph, graph.outputs[0], y)
    losses = []
    for _ in range(train_config.steps):
        with tf.GradientTape() as tape:
            out = keras.tree.flatten(call_model(model, xs, training=False))[0]
            value = _keras_loss(loss, keras.backend.standardize_dtype(out.dtype))(target, out)
        grads = tape.gradient(value, trainable)
        opt.apply_gradients([(g, v) for g, v in zip(grads, trainable) if g is not None])
        losses.append(float(keras.ops.convert_to_numpy(value)))
    constants = constant_keys(graph)
    return losses, {k: v for k, v in get_weights(model, graph).items() if k not in constants}


def constant_keys(graph: Graph) -> set:
    """Graph weight keys that are constants, not torch parameters: frozen
    `parameter` nodes (buffers) and `take_parameter`'s index."""
    return ({graph.weight_key(n, "weight") for n in graph.nodes if n.op == "parameter" and not n.attrs.get("trainable", True)}
            | {graph.weight_key(n, "index") for n in graph.nodes if n.op == "take_parameter"})


def export_onnx(model, graph: Graph, path, opset: int) -> Path:
    """The model (inference mode, Keras' layout) to ONNX with tf2onnx, dynamic batch."""
    import onnx

    from shared.onnx.onnx_export import atomic_export, check_output_path, validate_opset

    opset = validate_opset(opset)
    path = check_output_path(path)
    from keras import tree

    fn_inputs = model.inputs
    signature = [keras.InputSpec(shape=(None, *t.shape[1:]), dtype=t.dtype, name=n) for n, t in zip(graph.inputs, fn_inputs)]
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(model, keras.Model) and struct is not None and len(signature) > 1:
        # a functional model takes one argument, its structure of inputs (a list, a dict: keras/src/export/export_utils.py)
        signature = [tree.pack_sequence_as(struct, signature)]

    def write(tmp: str) -> None:
        model.export(tmp, format="onnx", opset_version=opset, input_signature=signature, verbose=False)
        onnx.checker.check_model(onnx.load(tmp))

    return atomic_export(path, write, framework="keras", model_name=model.name, loggers=("tf2onnx", "tensorflow", "absl"))


class GraphWeights:
    """The weight map of a ported model, in the form keras_impl.backend.KerasBackend
    takes (`weights=`): portable names and layout = the graph's state keys and
    torch layout, through graph.weight_sources (so the engine can drive a port)."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def to_portable(self, model) -> dict:
        return get_weights(model, self.graph)

    def from_portable(self, model, tensors: dict) -> None:
        set_weights(model, self.graph, tensors)

    def grads_to_portable(self, model, grads: list) -> dict:
        by_variable = {id(v): g for v, g in zip(model.trainable_variables, grads)}
        variables = _variables(model, self.graph)
        out = {}
        for key, s in self.graph.weight_sources.items():
            g = by_variable.get(id(variables[key]))
            if variables[key].trainable and g is not None:
                out[key] = _neutral(g, s["transform"])
        return out


# Elements per slice of the in-place SGD update (sgd_momentum_update): its
# temporaries are one slice, not one variable (VGG11-BN's 25088x4096 float64
# kernel is 0.8 GB; keras.optimizers.SGD's update_step makes three such
# temporaries, which TF's oneDNN pool then keeps; BENCHMARKS.md, issue 18).
# 4M elements: the chunk shared/verdict/checks.py's lean compare_arrays uses.
SGD_SLICE_ELEMENTS = 1 << 22


def sgd_momentum_update(variable, velocity: np.ndarray, gradient, lr: float, momentum: float) -> None:
    """keras.optimizers.SGD(momentum, nesterov=False)'s update_step
    (keras/src/optimizers/sgd.py): velocity = velocity * momentum - gradient * lr;
    variable += velocity, a slice of the first axis at a time. The velocity is
    numpy (SGD's momentum buffers would otherwise stay in TF's oneDNN pool, which
    never shrinks: 1 GB for VGG11-BN in float64) and is updated in place; the
    gradient is read through a view of TF's buffer. Element-wise IEEE operations
    in the same order, lr and momentum rounded once to the variable's dtype as
    update_step's casts do: bit for bit the Keras optimizer."""
    var = variable.value if isinstance(variable, keras.Variable) else variable
    dtype = velocity.dtype
    lr, momentum = dtype.type(lr), dtype.type(momentum)
    g = np.asarray(tf.convert_to_tensor(gradient))
    g = g if g.dtype == dtype else g.astype(dtype)
    rows = velocity.shape[0] if velocity.ndim else 0
    step = max(1, SGD_SLICE_ELEMENTS // max(1, int(np.prod(velocity.shape[1:]))))
    slices = [(None, None)] if rows <= step else [(i, min(rows, i + step)) for i in range(0, rows, step)]
    for i, j in slices:
        whole = i is None
        m, gi = (velocity, g) if whole else (velocity[i:j], g[i:j])
        np.multiply(m, momentum, out=m)
        np.subtract(m, np.multiply(gi, lr), out=m)
        if whole:
            var.assign(tf.add(var, m))
        else:
            var[i:j].assign(tf.add(var[i:j], m))


def sgd_steps(model, graph: Graph, batches: list, loss: dict, lr: float, momentum: float, lazy: bool = False) -> tuple:
    """Train `model` in training mode (BatchNorm on batch statistics, updating
    its moving statistics; Dropout rates set to 0 so both sides stay
    deterministic) with SGD+momentum, keras.optimizers.SGD's arithmetic applied
    in place (sgd_momentum_update: each gradient released once applied, no
    whole-variable temporaries); (losses, weights by state key).

    batches: [(inputs, y)], inputs in the graph's neutral layout; lazy: the
    weights as iter_weights' pairs (one converted at a time), not a dict."""
    for layer in _iter_layers(model):
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    trainable = list(model.trainable_variables)
    # lr and momentum reach each variable's dtype in one rounding, without a
    # float32 detour (keras_impl/train.py, _constant: 0.01 would become 0.009999999776).
    velocities = [np.zeros(tuple(v.shape), keras.backend.standardize_dtype(v.dtype)) for v in trainable]
    losses = []
    for inputs, y in batches:
        xs = [tf.constant(_to_keras_layout(graph, n, x)) for n, x in zip(graph.inputs, inputs)]
        with tf.GradientTape() as tape:
            out = keras.tree.flatten(call_model(model, xs, training=True))[0]  # the loss reads the first output
            value = _keras_loss(loss, keras.backend.standardize_dtype(out.dtype))(y, out)
        grads = tape.gradient(value, trainable)
        del tape, out, xs
        for i, (v, m) in enumerate(zip(trainable, velocities)):
            g, grads[i] = grads[i], None  # released as soon as applied
            if g is not None:
                sgd_momentum_update(v, m, g, float(lr), float(momentum))
            del g
        losses.append(float(keras.ops.convert_to_numpy(value)))
    del velocities
    constants = constant_keys(graph)
    pairs = ((k, v) for k, v in iter_weights(model, graph) if k not in constants)
    return losses, (pairs if lazy else dict(pairs))
