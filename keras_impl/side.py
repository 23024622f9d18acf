"""A Keras model behind shared.flows.side.Side. Never imports torch.

Twin of torch_impl/side.py (same `__all__`, same Side methods). One class for
both port directions:

- `KerasSide(model)`: the user's model (`compare.py port` K->T); the graph is
  read from it (keras_impl/read/__init__.py) on first use, per-node values by the reader.
- `KerasSide.from_graph(graph, source, plan, dtype)`: the model the reverse
  port (T->K) writes and builds by executing model_keras.py
  (keras_impl/write/__init__.py); per-node values by the writer's names.
- `KerasSide.for_verify(model)`: the user's model as `compare.py verify`
  reads it: besides the Side methods, its parametrized layers as records
  (shared/flows/verify.py KerasRecord) with their weights, outputs, gradients and a
  training run keyed by record (`records`, `record_weights`, `pair_outputs`,
  `record_loss_and_grads`, `train`; keras_impl/verify/__init__.py has the helpers);
  its float64 copies compute TF's float32-constant kernels exactly.

Per-pair outputs: a Keras Conv2D/Dense with a fused activation has no
observable pre-activation tensor, while the torch module's output is one; the
pre-activation value is computed by calling the layer again on the same input
with its activation set to linear for that call.

The computations are keras_impl/port.py's (loss, gradients, training steps,
weights) and keras_impl/read/__init__.py / write.py's (values, forward).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_impl import port as _port
from keras_impl.port import get_weights as _graph_weights
from keras_impl.read import _functional_of, _Walker, call_model, read_graph
from keras_impl.verify import (PARAM_OPS, _copy, _kind, _optimizer, _output_names, _render, _split, _total,
                               dropout_layers, dropout_off, loss_spec, optimizer_spec)
from keras_impl.verify.attention import attention_records as _attention_records, by_record as _by_record
from keras_impl.verify.attention import comparison_mask, einsum_output, einsum_record, projections as _projections
from shared.core.errors import UsageError
from shared.flows.side import one_batch
from shared.flows.verify import KerasRecord

__all__ = ["KerasSide"]


class KerasSide:
    """The Keras model, numpy in and out, the graph's neutral layout.

    Args:
        model: a Keras model.
        graph: the graph it was built from (reverse port), or None: read from
            the model on first use (port).
        source, plan: model_keras.py and the writer's plan when built from
            the graph (with_dtype builds again from them).
    """

    name = "keras"
    can_train = True

    def __init__(self, model, graph=None, *, source: str | None = None, plan=None, dtype: str | None = None):
        self.model = model
        self._graph = graph
        self.source, self.plan = source, plan
        self.built = source is not None  # written from the graph: values keyed by the writer
        self._dtype = dtype
        self.verifying = False  # for_verify: copies cached, float64 ones exact
        self.exact = False  # float64 copies: TF's float32-constant kernels computed exactly (keras_impl/verify/__init__.py _copy)
        self._names = None  # (input names, output names), for_verify

    @classmethod
    def for_verify(cls, model) -> "KerasSide":
        """The user's model as `compare.py verify` reads it (see the module docstring)."""
        try:  # the same reader as `port` (custom layers traced), its messages about verify
            graph = read_graph(model)
        except UsageError as e:
            raise type(e)(str(e).replace("by the port", "by verify").replace("the port needs", "verify needs")) from None
        floats = [keras.backend.standardize_dtype(v.dtype) for v in model.weights if "float" in str(v.dtype)]
        side = cls(model, graph, dtype=floats[0] if floats else "float32")  # inputs may be integer ids
        side.verifying = side.exact = True
        return side

    @classmethod
    def from_graph(cls, graph, source: str | None = None, plan=None, dtype: str = "float32") -> "KerasSide":
        """The model model_keras.py builds (keras_impl/write/__init__.py), weights set from the graph."""
        from keras_impl.write import build_model

        model, source, plan = build_model(graph, source, plan, dtype=dtype)
        return cls(model, graph, source=source, plan=plan, dtype=dtype)

    @property
    def graph(self):
        if self._graph is None:
            self._graph = read_graph(self.model)
        return self._graph

    @property
    def input_names(self) -> list:
        return list(self._names[0]) if self._names else list(self.graph.inputs)

    @property
    def output_names(self) -> list:
        """The outputs' names: a dict output's keys (keras.tree's flat order: sorted), else the graph's tensors."""
        return list(self._names[1]) if self._names else _output_names(self.model, self.graph)

    @property
    def dtype(self) -> str:
        if self._dtype is None:
            from keras_impl.read import model_float_dtype

            self._dtype = model_float_dtype(self.model)
        return self._dtype

    # ---- copies
    def with_dtype(self, dtype: str, exact: bool = True) -> "KerasSide":
        """See shared.flows.side.Side. A verify side caches its copies; in float64
        they compute TF's float32-constant kernels exactly (exact=True, see
        keras_impl/verify/__init__.py _copy) or as TF computes them."""
        if dtype == self.dtype:
            return self
        if not self.verifying:
            return self._fresh(dtype)
        cache = self.__dict__.setdefault("_copies", {})
        key = (dtype, exact or dtype != "float64")
        if key in cache:
            return cache[key]
        side = cache[key] = KerasSide.for_verify(_copy(self.model, dtype, exact))
        side.exact = key[1]
        side.loss_spec, side.optimizer_spec = self.loss_spec, self.optimizer_spec  # the clone is not compiled
        return side

    def copy(self) -> "KerasSide":
        return self._fresh(self.dtype)

    def _fresh(self, dtype: str) -> "KerasSide":
        if self.built:
            return KerasSide.from_graph(self.graph, self.source, self.plan, dtype)
        from keras_impl.read import cast_model

        return KerasSide(cast_model(self.model, dtype), self._graph)

    def forget(self) -> None:
        """Nothing cached outside the side (the torch twin drops its capture)."""

    # ---- numbers
    def forward(self, xs: list) -> list:
        from keras_impl.read import forward

        return forward(self.model, self.graph, xs)

    def values(self, xs: list) -> dict:
        if self.built:
            from keras_impl.write import graph_values
        else:
            from keras_impl.read import graph_values
        return graph_values(self.model, self.graph, xs)

    def loss_and_grads(self, xs: list, y, loss: dict) -> tuple:
        return _port.loss_and_grads(self.model, self.graph, xs, y, loss)

    def train_steps(self, batches: list, loss: dict, optimizer, training: bool = False, lazy: bool = False) -> tuple:
        """See shared.flows.side.Side; training=True is SGD with momentum in place
        (keras_impl/port.py sgd_steps; lazy: the weights as pairs, one
        converted at a time)."""
        if training:
            if optimizer.optimizer != "sgd":
                raise NotImplementedError(f"training-mode steps run SGD with momentum, not {optimizer.optimizer}")
            return _port.sgd_steps(self.model, self.graph, batches, loss, optimizer.learning_rate, optimizer.momentum,
                                   lazy=lazy)
        from dataclasses import replace

        xs, y = one_batch(batches)
        return _port.train_steps(self.model, self.graph, xs, y, loss, replace(optimizer, steps=len(batches)))

    def get_weights(self) -> dict:
        return _port.get_weights(self.model, self.graph)

    def set_weights(self, tensors: dict) -> None:
        _port.set_weights(self.model, self.graph, tensors)

    # ---- what the Keras model says about its training
    def infer_loss(self) -> dict:
        return _port.infer_loss(self.model, self.graph)

    def train_config(self, optimizer: str | None, steps: int):
        return _port.train_config_from(self.model, optimizer, steps)

    # ---- files
    def export_onnx(self, path, opset: int | None = None, config=None) -> Path:
        if config is not None:  # the image-classifier exporter (reverse port)
            from keras_impl.export import export_onnx as export

            return export(self.model, config, path, model_name=self.graph.name)
        from shared.onnx.onnx_check import ONNX_OPSET

        return _port.export_onnx(self.model, self.graph, path, opset or ONNX_OPSET)

    def onnx_input(self, x, name: str | None = None):
        """x (neutral layout) as the input `name` (default the first) of keras.onnx takes it."""
        return _port._to_keras_layout(self.graph, name or self.graph.inputs[0], x)

    def onnx_input_names(self) -> list:
        return list(self.graph.inputs)  # export_onnx names the InputSpecs after them

    def onnx_output(self, y, name: str | None = None):
        perm = self.graph.tensors[name or self.graph.outputs[0]].keras_perm
        return y if perm is None else np.ascontiguousarray(np.transpose(y, perm))

    def save(self, folder: Path) -> dict:
        """model.keras and model.weights.h5 in `folder`; their names."""
        self.model.save(str(folder / "model.keras"))
        self.model.save_weights(str(folder / "model.weights.h5"))
        return {"model.keras": "model.keras", "weights": "model.weights.h5"}

    def load_in_fresh_process(self, path: Path, xs: list, work: Path) -> tuple:
        """(first output, neutral layout, None) of `keras.models.load_model(path)`
        run in a fresh isolated Python (-I: nothing of this project importable),
        or (None, error line)."""
        graph = self.graph
        xin, xout = work / ".load_check_x.npz", work / ".load_check_y.npy"
        np.savez(xin, **{f"x{i}": _port._to_keras_layout(graph, n, a) for i, (n, a) in enumerate(zip(graph.inputs, xs))})
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", _PLAIN_LOAD, str(path), str(xin), str(xout)],
                                  capture_output=True, text=True, env=env, cwd=str(work))
            if proc.returncode != 0:
                return None, (proc.stderr.strip().splitlines() or ["?"])[-1]
            return self.onnx_output(np.load(xout)), None
        finally:
            for f in (xin, xout):
                f.unlink(missing_ok=True)


    # ---- verify: the parametrized layers as records (shared/flows/verify.py)
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

    def _to_keras(self, name: str, x: np.ndarray) -> np.ndarray:
        perm = self.graph.tensors[name].keras_perm
        x = np.asarray(x) if np.asarray(x).dtype.kind in "iu" else np.asarray(x, dtype=self.dtype)
        return x if perm is None else np.ascontiguousarray(np.transpose(x, np.argsort(perm)))

    def _to_neutral(self, name: str, a) -> np.ndarray:
        a = keras.ops.convert_to_numpy(a)
        perm = self.graph.tensors[name].keras_perm
        return a if perm is None else np.ascontiguousarray(np.transpose(a, perm))

    def record_weights(self) -> dict:
        """{node: {name: array}}: every mapped weight, torch layout (Keras flatten order);
        constants the reader added (an LSTM's zero recurrent bias) included."""
        out = _split(_graph_weights(self.model, self.graph), self.graph)
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

    def outputs(self, x):
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
        out, owners = {}, self.graph.weight_owners()
        for key, s in self.graph.weight_sources.items():
            node, name = owners.get(key) or key.split(".", 1)
            out[(node, name)] = (by_path[s["variable"]], [(a, tuple(b)) for a, b in s["transform"]])
        return out

    def record_loss_and_grads(self, x: np.ndarray, y: np.ndarray, spec: dict) -> tuple:
        """(mean loss, {node: {name: gradient, torch layout}}), inference mode."""
        from shared.graph.ir import apply_transform

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
        side = KerasSide(model, read_graph(model), dtype=self.dtype)
        side._names = self.input_names, self.output_names
        loss_fn = side._loss(loss)
        opt = _optimizer(optimizer, self.dtype)
        losses = []
        variables = model.trainable_variables
        for x, y in batches:
            with tf.GradientTape() as tape:
                value = _total(loss_fn, y, side._outputs(model, x, training=True), loss, self.dtype)
            opt.apply(tape.gradient(value, variables), variables)
            losses.append(float(keras.ops.convert_to_numpy(value)))
        return losses, side.record_weights()


_PLAIN_LOAD = """
import sys, numpy as np, keras
m = keras.models.load_model(sys.argv[1])
with np.load(sys.argv[2]) as z:
    xs = [z[f"x{i}"] for i in range(len(z.files))]
y = m(xs if len(xs) > 1 else xs[0], training=False)
np.save(sys.argv[3], keras.ops.convert_to_numpy(keras.tree.flatten(y)[0]))
"""
