"""Keras side of `compare.py verify`: the compile config as plain data and the
helpers of keras_impl.side.KerasSide's verify methods (its parametrized
layers, their outputs, gradients and a training run, all as numpy in the
neutral (torch) layout of shared/graph/ir.py).

Twin of torch_impl/verify/__init__.py. The layer listing comes from the neutral graph
(keras_impl/read/__init__.py), so every weight is already in torch layout with the
reader's layout rules (Dense transpose, HWIO -> OIHW, depthwise, BatchNorm
statistics); shared/flows/verify.py only adds the Flatten column order.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_impl.read import _functional_of, cast_model
from keras_impl.train import _constant
from keras_impl.port import infer_loss, load_model
from shared.core.errors import UsageError
from keras_impl.verify.exact import fired, make_exact, operations
from keras_impl.verify.attention import ATTENTION_ATTRS

__all__ = ["load_model", "loss_spec", "optimizer_spec", "dropout_off", "dropout_layers"]

PARAM_OPS = ("conv", "linear", "batch_norm", "layer_norm", "rnn", "embedding")

# Keras loss names (compile(loss="...")) -> loss classes (keras/src/losses/losses.py).
_LOSS_CLASSES = {
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "binary_crossentropy": "BinaryCrossentropy",
    "mean_squared_error": "MeanSquaredError", "mse": "MeanSquaredError",
    "mean_absolute_error": "MeanAbsoluteError", "mae": "MeanAbsoluteError",
}
_LOSS_KINDS = {"SparseCategoricalCrossentropy": "sparse_ce", "CategoricalCrossentropy": "ce",
               "BinaryCrossentropy": "bce", "MeanSquaredError": "mse", "MeanAbsoluteError": "mae"}
_REDUCTIONS = ("sum_over_batch_size", "sum", "mean")
_OPTIMIZERS = ("SGD", "Adam", "AdamW")


def _kind(node) -> str:
    if node.op == "rnn":
        return f"rnn_{node.attrs['kind']}"  # rnn_lstm, rnn_gru, rnn_simple, rnn_gru_reset_before
    if node.op != "conv":
        return node.op
    a = node.attrs
    depthwise = a["groups"] > 1 and a["groups"] == a["in_channels"]
    return f"{'depthwise' if depthwise else 'conv'}{a['dims']}d"


def loss_spec(model, graph) -> dict:
    """The compiled loss as plain data: {class, kind, from_logits, reduction,
    label_smoothing, config, note}; inferred from the head when not compiled."""
    loss = getattr(model, "loss", None)
    note = ""
    if loss is None:
        inferred = infer_loss(model, graph)
        cls = {v: k for k, v in _LOSS_KINDS.items()}[inferred["kind"]]
        config = getattr(keras.losses, cls)(**({"from_logits": inferred["from_logits"]} if "entropy" in cls else {})).get_config()
        note = f"the Keras model is not compiled: loss {cls} ({inferred['source']})"
    elif isinstance(loss, (list, dict)):
        raise UsageError(f"Keras model {model.name!r} has several losses ({type(loss).__name__}); verify handles one")
    elif isinstance(loss, keras.losses.Loss):
        cls, config = type(loss).__name__, loss.get_config()
    else:
        name = loss if isinstance(loss, str) else getattr(loss, "__name__", str(loss))
        cls = _LOSS_CLASSES.get(name)
        if cls is None:
            raise UsageError(f"compiled loss {name!r} is not supported by verify; known: {sorted(_LOSS_CLASSES)}")
        config = getattr(keras.losses, cls)().get_config()
    if cls not in _LOSS_KINDS:
        raise UsageError(f"compiled loss {cls} is not supported by verify; known: {sorted(_LOSS_KINDS)}")
    if config.get("reduction") not in _REDUCTIONS:
        raise UsageError(f"loss {cls} reduction={config.get('reduction')!r} is not supported; known: {_REDUCTIONS}")
    if config.get("ignore_class") is not None or config.get("axis", -1) != -1:
        raise UsageError(f"loss {cls}: ignore_class / a non-default axis is not supported by verify")
    return {"class": cls, "kind": _LOSS_KINDS[cls], "from_logits": bool(config.get("from_logits", False)),
            "reduction": config["reduction"], "label_smoothing": float(config.get("label_smoothing", 0.0) or 0.0),
            "config": config, "note": note}


def optimizer_spec(model) -> dict:
    """The compiled optimizer as plain data (Keras conventions); Adam() when not compiled."""
    opt = getattr(model, "optimizer", None)
    note = ""
    if opt is None:
        opt, note = keras.optimizers.Adam(), "the Keras model is not compiled: optimizer Adam() with Keras defaults"
    cls, cfg = type(opt).__name__, opt.get_config()
    if cls not in _OPTIMIZERS:
        raise UsageError(f"optimizer {cls} is not supported by verify; known: {_OPTIMIZERS}")
    bad = [k for k in ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps", "loss_scale_factor")
           if cfg.get(k) is not None] + [k for k in ("use_ema", "nesterov", "amsgrad") if cfg.get(k)]
    if bad or not isinstance(cfg.get("learning_rate"), (int, float)):
        raise UsageError(f"optimizer {cls}: {bad or 'a learning-rate schedule'} is not supported by verify")
    return {"class": cls, "learning_rate": float(cfg["learning_rate"]), "weight_decay": float(cfg.get("weight_decay") or 0.0),
            "momentum": float(cfg.get("momentum", 0.0)), "beta_1": float(cfg.get("beta_1", 0.9)),
            "beta_2": float(cfg.get("beta_2", 0.999)), "epsilon": float(cfg.get("epsilon", 1e-7)), "config": cfg, "note": note}


def _copy(model, dtype: str, exact: bool = True):
    """cast_model, and in float64 (with exact) TF's float32-constant kernels
    computed exactly (keras_impl/verify/exact.py; names in model._verify_exact)."""
    try:
        clone = cast_model(model, dtype)
    except ValueError:  # the clone lists its variables in another order: copy them by path
        clone = _clone_by_path(model, dtype)
    patched = []
    if dtype == "float64" and exact:
        layers = operations(clone)
        make_exact(clone, layers)
        try:
            patched = fired(clone, _probe_input(clone))
        except Exception:  # noqa: BLE001 - a probe the model refuses: name what may fire
            patched = [layer.name for layer in layers if _may_fire(layer)]
        patched += [layer.name for layer in layers if type(layer).__name__ == "Rescaling" and layer.name not in patched]
    clone._verify_exact = patched
    return clone


def _probe_input(model):
    """Zeros of the model's input shape (unknown sizes 1 and 2), ids as int."""
    def one(t):
        shape = [1] + [2 if s is None else s for s in t.shape[1:]]
        kind = keras.backend.standardize_dtype(t.dtype)
        return np.zeros(shape, dtype=kind if "int" in kind else "float64")
    xs = [one(t) for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def _may_fire(layer) -> bool:
    act = getattr(getattr(layer, "activation", None), "__name__", "")
    return act in ("gelu", "leaky_relu") or type(layer).__name__ in ("LeakyReLU", "MultiHeadAttention")


def _clone_by_path(model, dtype: str):
    """cast_model's clone, its weights assigned by variable path instead of by position."""
    def clone_layer(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer
        return layer.__class__.from_config({**layer.get_config(), "dtype": dtype})

    def new_input(t):
        op = t._keras_history.operation
        keep = "int" in keras.backend.standardize_dtype(t.dtype)
        return keras.Input(batch_shape=t.shape, dtype=t.dtype if keep else dtype, name=op.name if op is not None else None)

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True,
                                     input_tensors=keras.tree.map_structure(new_input, model.input))
    source = {v.path: v for v in model.weights}
    for v in clone.weights:
        v.assign(keras.ops.convert_to_numpy(source[v.path]).astype(v.dtype))
    return clone


def _optimizer(spec: dict, dtype: str):
    """A fresh Keras optimizer from the compile config. In float64 the learning
    rate and hyperparameters reach the variables without a float32 detour
    (Keras stores a float learning rate in a float32 variable and tf.cast makes
    Python floats float32 first: keras_impl/train.py `_constant` and
    `make_optimizer` measured it), so float64 tests the port, not that rounding."""
    cfg = dict(spec["config"])
    if dtype == "float64":
        cfg["learning_rate"] = _constant(spec["learning_rate"])
        for k in ("beta_1", "beta_2", "epsilon", "momentum", "weight_decay"):
            if cfg.get(k) is not None:
                cfg[k] = np.float64(cfg[k])
    return getattr(keras.optimizers, spec["class"]).from_config(cfg)


def dropout_off(model) -> list:
    """Set every dropout-like layer's rate (and GaussianNoise's stddev) to 0; their names."""
    names = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if "Dropout" in type(layer).__name__ and getattr(layer, "rate", 0):
            layer.rate = 0.0
            names.append(layer.name)
        elif type(layer).__name__ == "GaussianNoise" and layer.stddev:
            layer.stddev = 0.0
            names.append(layer.name)
    return names


def dropout_layers(model) -> list:
    return [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
            if "Dropout" in type(layer).__name__ or type(layer).__name__ == "GaussianNoise"]


def _render(node) -> str:
    attrs = dict(node.attrs)
    name = attrs.pop("fn") if node.op == "activation" else node.op
    if node.op in ("conv", "linear", "batch_norm", "layer_norm"):
        attrs = {k: v for k, v in attrs.items() if k in ("stride", "padding", "dilation", "groups", "eps")}
    if node.op == "attention":
        attrs = {k: v for k, v in attrs.items() if k in ATTENTION_ATTRS}
    return f"{name}({', '.join(f'{k}={_short(v)}' for k, v in attrs.items())})"


def _short(v) -> str:
    """Floats to float32 precision (0.30000001192092896, a float32 attribute, reads 0.3)."""
    return f"{v:.7g}" if isinstance(v, float) else repr(v)


def _output_names(model, graph) -> list:
    """The outputs' names: a dict output's keys (keras.tree's flat order: sorted), else the graph's tensors."""
    struct = getattr(_functional_of(model), "_outputs_struct", None)
    return sorted(struct) if isinstance(struct, dict) else list(graph.outputs)


def _total(loss_fn, y, outs: list, spec: dict, dtype: str):
    """The loss of one output, or the sum of the loss over several (y: one target per output)."""
    ys = y if len(outs) > 1 else [y]
    return sum(loss_fn(_target(t, spec, dtype), o) for t, o in zip(ys, outs))


def _target(y: np.ndarray, spec: dict, dtype: str) -> np.ndarray:
    return np.asarray(y, dtype=np.int64) if spec["kind"] == "sparse_ce" else np.asarray(y, dtype=dtype)


def _split(flat: dict, graph=None) -> dict:
    """{state key: array} -> {node name: {weight name: array}}; the graph's
    weight_key is inverted (keys inside traced custom layers follow the module
    path, `block_1.att.query.weight`, not the node's name)."""
    owner = {} if graph is None else graph.weight_owners()
    out = {}
    for key, a in flat.items():
        node, name = owner.get(key) or key.split(".", 1)
        out.setdefault(node, {})[name] = a
    return out
