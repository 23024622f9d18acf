"""Keras side of `compare.py verify`: the model's parametrized layers, their
outputs, its compile config, gradients and a training run, all as numpy in the
neutral (torch) layout of shared/graph.py.

Twin of torch_impl/verify.py. The layer listing comes from the neutral graph
(keras_impl/read.py), so every weight is already in torch layout with the
reader's layout rules (Dense transpose, HWIO -> OIHW, depthwise, BatchNorm
statistics); shared/verify.py only adds the Flatten column order.

Per-pair outputs: a Keras Conv2D/Dense with a fused activation has no
observable pre-activation tensor, while the torch module's output is one; the
pre-activation value is computed by calling the layer again on the same input
with its activation set to linear for that call.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_impl.read import _functional_of, _Walker, call_model, cast_model, read_graph
from keras_impl.port import get_weights as _graph_weights
from keras_impl.train import _constant
from keras_impl.port import infer_loss, load_model
from shared.errors import UsageError
from shared.verify import KerasRecord
from keras_impl.verify_exact import fired, make_exact, operations
from keras_impl.verify_attention import ATTENTION_ATTRS, attention_records as _attention_records, by_record as _by_record, comparison_mask, projections as _projections
from keras_impl.verify_attention import einsum_output, einsum_record

__all__ = ["KerasSide", "load_model", "loss_spec", "optimizer_spec"]

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


class KerasSide:
    """One Keras model behind numpy (neutral layout).

    Args:
        model: a built functional or Sequential Keras model (left untouched:
            training runs on a copy).
    """

    name = "keras"
    exact = True  # float64 copies: TF's float32-constant kernels computed exactly (see _copy)

    def __init__(self, model):
        self.model = model
        try:  # the same reader as `port` (custom layers traced), its messages about verify
            self.graph = read_graph(model)
        except UsageError as e:
            raise type(e)(str(e).replace("by the port", "by verify").replace("the port needs", "verify needs")) from None
        self.input_names = list(self.graph.inputs)
        self.output_names = _output_names(model, self.graph)
        floats = [keras.backend.standardize_dtype(v.dtype) for v in model.weights if "float" in str(v.dtype)]
        self.dtype = floats[0] if floats else "float32"  # the compute dtype (inputs may be integer ids)

    # ---- structure
    def records(self) -> list:
        g = self.graph
        out = []
        for n in g.nodes:
            if n.op == "attention" or einsum_record(n) is not None:
                out += _attention_records(n) if n.op == "attention" else [einsum_record(n)]
                continue
            if n.op == "variable":  # a variable read by ops (traced): no output of its own to compare
                if not n.weights or n.attrs.get("shares"):
                    continue  # read again (a tied ReversibleEmbedding's reverse call): one weight, one record
                out.append(KerasRecord(n.name, n.source.get("layer", n.name), "variable", "variable",
                                       {k: tuple(v.shape) for k, v in n.weights.items()}, {}, None, False))
                continue
            if n.op not in PARAM_OPS or not n.weights:
                continue
            attrs = {k: v for k, v in n.attrs.items()}
            attrs["in_spatial"] = list(g.tensors[n.inputs[0]].shape[2:]) if n.op == "conv" else []
            flat = None
            prod = g.producer(n.inputs[0])
            if n.op == "linear" and prod is not None and prod.op == "flatten":
                shape = g.tensors[prod.inputs[0]].shape
                flat = tuple(int(s) for s in shape[1:]) if len(shape) >= 3 else None
            t = g.tensors[n.outputs[0]]
            compare = not t.internal or t.name.endswith("_preact")
            if t.name.endswith("_preact"):
                act = next((m for m in g.nodes if m.op == "activation" and m.inputs == [t.name]), None)
                attrs["activation"] = _render(act) if act is not None else None
            out.append(KerasRecord(n.name, n.source.get("layer", n.name), n.source.get("class", "?"), _kind(n),
                                   {k: tuple(v.shape) for k, v in n.weights.items()}, attrs, flat, compare))
        return out

    def describe(self) -> dict:
        """{Keras layer: what it computes, as neutral ops}, e.g. "leaky_relu(negative_slope=0.3)"."""
        out = {}
        for n in self.graph.nodes:
            if n.op == "permute" and self.graph.tensors[n.outputs[0]].internal:
                continue  # layout helpers
            layer = n.source.get("layer", n.name)
            out[layer] = (out[layer] + "; " if layer in out else "") + _render(n)
        return out

    def layer_order(self) -> list:
        """Every Keras layer / op name in execution order (nested models flattened)."""
        fn = _functional_of(self.model)
        names = {id(t): t.name for t in fn.inputs}
        return [call.layer.name for call, _ in _Walker().walk(fn, names)]

    def input_spec(self) -> tuple:
        """(shape, dtype, high): high bounds integer ids (an Embedding's input_dim), else None."""
        name = self.graph.inputs[0]
        spec = self.graph.tensors[name]
        return tuple(spec.shape), spec.dtype, self.graph.meta.get("input_high", {}).get(name)

    def input_specs(self) -> dict:
        """{input name: (shape, dtype, high)} for every input (see input_spec)."""
        high = self.graph.meta.get("input_high", {})
        return {n: (tuple(self.graph.tensors[n].shape), self.graph.tensors[n].dtype, high.get(n)) for n in self.graph.inputs}

    def mask_value(self):
        """The id the model masks out of its input (Embedding(mask_zero=True): 0), or None."""
        return self.graph.mask_value(self.graph.inputs[0])

    def input_shape(self) -> tuple:
        return tuple(self.graph.tensors[self.graph.inputs[0]].shape)

    def output_shape(self) -> tuple:
        return tuple(self.graph.tensors[self.graph.outputs[0]].shape)

    def loss_spec(self) -> dict:
        return loss_spec(self.model, self.graph)

    def optimizer_spec(self) -> dict:
        return optimizer_spec(self.model)

    def exact_float64(self) -> list:
        """Layers whose float64 copy computes a TF float32-constant kernel exactly (see _copy)."""
        return list(getattr(self.with_dtype("float64").model, "_verify_exact", []))

    def dropout_layers(self) -> list:
        return dropout_layers(self.model)

    def with_dtype(self, dtype: str, exact: bool = True) -> "KerasSide":
        """This model in `dtype`; in float64 with TF's float32-constant kernels
        computed exactly (exact=True, see _copy) or as TF computes them."""
        if dtype == self.dtype:
            return self
        cache = self.__dict__.setdefault("_copies", {})
        key = (dtype, exact or dtype != "float64")
        if key in cache:
            return cache[key]
        side = cache[key] = KerasSide(_copy(self.model, dtype, exact))
        side.exact = key[1]
        side.loss_spec, side.optimizer_spec = self.loss_spec, self.optimizer_spec  # the clone is not compiled
        return side

    # ---- numbers
    def _to_keras(self, name: str, x: np.ndarray) -> np.ndarray:
        perm = self.graph.tensors[name].keras_perm
        x = np.asarray(x) if np.asarray(x).dtype.kind in "iu" else np.asarray(x, dtype=self.dtype)
        return x if perm is None else np.ascontiguousarray(np.transpose(x, np.argsort(perm)))

    def _to_neutral(self, name: str, a) -> np.ndarray:
        a = keras.ops.convert_to_numpy(a)
        perm = self.graph.tensors[name].keras_perm
        return a if perm is None else np.ascontiguousarray(np.transpose(a, perm))

    def weights(self) -> dict:
        """{node: {name: array}}: every mapped weight, torch layout (Keras flatten order);
        constants the reader added (an LSTM's zero recurrent bias) included."""
        out = _split(_graph_weights(self.model, self.graph))
        for n in self.graph.nodes:
            if n.op in PARAM_OPS:
                for name, a in n.weights.items():
                    out.setdefault(n.name, {}).setdefault(name, np.asarray(a, dtype=self.dtype))
        return _by_record(out, self.graph)

    def output_mask(self, x: np.ndarray):
        """The Keras mask the model's output carries for x (a per-step output of a
        masked model: its loss skips the masked steps), boolean (batch, steps), or None."""
        if not self.graph.meta.get("output_masks") or len(self.graph.outputs) > 1:  # read_graph records the masks
            return None  # no forward pass just to learn there is no mask
        out = self._outputs(self.model, x)[0]
        mask = getattr(out, "_keras_mask", None)
        return None if mask is None else np.asarray(keras.ops.convert_to_numpy(mask), dtype=bool)

    def _feed(self, x) -> list:
        """x (an array, or {input name: array}) as the model's input tensors, graph order."""
        xs = x if isinstance(x, dict) else {self.graph.inputs[0]: x}
        fn = _functional_of(self.model)
        return [keras.ops.convert_to_tensor(self._to_keras(n, xs[n]), dtype=t.dtype) for n, t in zip(self.graph.inputs, fn.inputs)]

    def _outputs(self, model, x, training: bool = False) -> list:
        return keras.tree.flatten(call_model(model, self._feed(x), training=training))

    def forward(self, x):
        """The output in neutral layout; a list of them for a model with several."""
        outs = [self._to_neutral(n, y) for n, y in zip(self.graph.outputs, self._outputs(self.model, x))]
        return outs[0] if len(outs) == 1 else outs

    def pair_outputs(self, x: np.ndarray) -> dict:
        """{node: output} for every record (pre-activation where the layer fuses one),
        {node@layer: output of the Keras layer the node belongs to}, and for
        outputs that carry a Keras mask (the steps a padding mask keeps, as
        Keras sets `_keras_mask` on eager tensors, keras/src/layers/layer.py)
        {node@mask: (batch, steps) bool} and {node@layer@mask: ...}."""
        fn = _functional_of(self.model)
        ids = {id(t): v for t, v in zip(fn.inputs, self._feed(x))}
        walker = _Walker(ids)
        walker.used.update(self.graph.inputs)
        names = {id(t): n for t, n in zip(fn.inputs, self.graph.inputs)}
        outs, pre, layer_out, masks = {}, {}, {}, {}
        for call, node in walker.walk(fn, names):
            op = call.layer
            args, kwargs = node.arguments.fill_in(ids)
            if isinstance(op, keras.layers.Layer) and op._call_has_training_arg:
                kwargs = {**kwargs, "training": False}
            ys = keras.tree.flatten(op(*args, **kwargs))
            for t, y in zip(node.outputs, ys):
                ids[id(t)] = y
            outs[call.outputs[0]] = ys[0]
            layer_out.setdefault(op.name, (call.outputs[0], ys[0]))
            if type(op).__name__ == "MultiHeadAttention":
                for role, y in _projections(op, args, kwargs).items():
                    outs[f"{call.outputs[0]}[{role}]"] = y
            # TF eager tensors take the attribute; after a MultiHeadAttention see comparison_mask
            masks[call.outputs[0]] = comparison_mask(op, call, masks, getattr(ys[0], "_keras_mask", None))
            act = getattr(op, "activation", None)
            if act is not None and act is not keras.activations.linear and call.outputs[0] + "_preact" in self.graph.tensors:
                op.activation = keras.activations.linear
                try:
                    pre[call.outputs[0] + "_preact"] = keras.tree.flatten(op(*args, **kwargs))[0]
                finally:
                    op.activation = act
        values = {}
        for r in self.records():
            role = r.attrs.get("role")
            t = self.graph.node(r.name.rsplit("[", 1)[0] if role else r.name).outputs[0]
            v = outs.get(f"{t}[{role}]" if role and role != "output" else t, outs.get(t, pre.get(t)))
            if r.compare and v is not None:
                values[r.name] = self._to_neutral(t, v) if r.cls != "EinsumDense" else einsum_output(self._to_neutral(t, v))
                self._mask(values, r.name, t, masks.get(t.removesuffix("_preact")))
            if r.layer in layer_out:  # the whole layer's output (a Bidirectional's merged one)
                t, v = layer_out[r.layer]
                values[f"{r.name}@layer"] = self._to_neutral(t, v)
                self._mask(values, f"{r.name}@layer", t, masks.get(t))
        return values

    def _mask(self, values: dict, key: str, tensor: str, mask) -> None:
        """values[key@mask] = the (batch, steps) mask of a sequence kept in Keras' axis order."""
        if mask is not None and self.graph.tensors[tensor].keras_perm is None:
            values[f"{key}@mask"] = np.asarray(keras.ops.convert_to_numpy(mask), dtype=bool)

    def _loss(self, spec: dict):
        return getattr(keras.losses, spec["class"]).from_config({**spec["config"], "dtype": self.dtype})

    def _variables(self) -> dict:
        """(node, name) -> (variable, transform) for every mapped weight."""
        by_path = {v.path: v for v in self.model.weights}
        out = {}
        for key, s in self.graph.weight_sources.items():
            node, name = key.split(".", 1)
            out[(node, name)] = (by_path[s["variable"]], [(a, tuple(b)) for a, b in s["transform"]])
        return out

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, spec: dict) -> tuple:
        """(mean loss, {node: {name: gradient, torch layout}}), inference mode."""
        from shared.graph import apply_transform

        vs = {k: v for k, v in self._variables().items() if v[0].trainable}
        with tf.GradientTape() as tape:
            loss = _total(self._loss(spec), y, self._outputs(self.model, x), spec, self.dtype)
        grads = tape.gradient(loss, [v for v, _ in vs.values()])
        result = {}
        for ((node, name), (v, steps)), g in zip(vs.items(), grads):
            g = np.zeros(v.shape, self.dtype) if g is None else keras.ops.convert_to_numpy(g)
            result.setdefault(node, {})[name] = apply_transform(g, steps)
        return float(keras.ops.convert_to_numpy(loss)), _by_record(result, self.graph)

    def train(self, batches: list, loss: dict, optimizer: dict) -> tuple:
        """One optimizer step per (x, y) batch on a copy, dropout switched off.

        Returns:
            (pre-update losses, {node: {name: array}} after the last step).
        """
        model = _copy(self.model, self.dtype, self.exact)
        dropout_off(model)
        side = KerasSide.__new__(KerasSide)
        side.model, side.graph, side.dtype = model, read_graph(model), self.dtype
        side.input_names, side.output_names = self.input_names, self.output_names
        loss_fn = side._loss(loss)
        opt = _optimizer(optimizer, self.dtype)
        losses = []
        variables = model.trainable_variables
        for x, y in batches:
            with tf.GradientTape() as tape:
                value = _total(loss_fn, y, side._outputs(model, x, training=True), loss, self.dtype)
            opt.apply(tape.gradient(value, variables), variables)
            losses.append(float(keras.ops.convert_to_numpy(value)))
        return losses, side.weights()


def _copy(model, dtype: str, exact: bool = True):
    """cast_model, and in float64 (with exact) TF's float32-constant kernels
    computed exactly (keras_impl/verify_exact.py; names in model._verify_exact)."""
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


def _split(flat: dict) -> dict:
    out = {}
    for key, a in flat.items():
        node, name = key.split(".", 1)
        out.setdefault(node, {})[name] = a
    return out
