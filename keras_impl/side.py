"""A Keras model behind shared.side.Side. Never imports torch.

Twin of torch_impl/side.py (same `__all__`, same Side methods). One class for
both port directions:

- `KerasSide(model)`: the user's model (`compare.py port` K->T); the graph is
  read from it (keras_impl/read.py) on first use, per-node values by the reader.
- `KerasSide.from_graph(graph, source, plan, dtype)`: the model the reverse
  port (T->K) writes and builds by executing model_keras.py
  (keras_impl/write.py); per-node values by the writer's names.

The computations are keras_impl/port.py's (loss, gradients, training steps,
weights) and keras_impl/read.py / write.py's (values, forward).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from keras_impl import port as _port
from shared.side import one_batch

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

    @classmethod
    def from_graph(cls, graph, source: str | None = None, plan=None, dtype: str = "float32") -> "KerasSide":
        """The model model_keras.py builds (keras_impl/write.py), weights set from the graph."""
        from keras_impl.write import build_model

        model, source, plan = build_model(graph, source, plan, dtype=dtype)
        return cls(model, graph, source=source, plan=plan, dtype=dtype)

    @property
    def graph(self):
        if self._graph is None:
            from keras_impl.read import read_graph

            self._graph = read_graph(self.model)
        return self._graph

    @property
    def dtype(self) -> str:
        if self._dtype is None:
            from keras_impl.read import model_float_dtype

            self._dtype = model_float_dtype(self.model)
        return self._dtype

    # ---- copies
    def with_dtype(self, dtype: str) -> "KerasSide":
        return self if dtype == self.dtype else self._fresh(dtype)

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
        """See shared.side.Side; training=True is SGD with momentum in place
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
        from shared.onnx_check import ONNX_OPSET

        return _port.export_onnx(self.model, self.graph, path, opset or ONNX_OPSET)

    def onnx_input(self, x):
        return _port._to_keras_layout(self.graph, self.graph.inputs[0], x)

    def onnx_output(self, y):
        perm = self.graph.tensors[self.graph.outputs[0]].keras_perm
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


_PLAIN_LOAD = """
import sys, numpy as np, keras
m = keras.models.load_model(sys.argv[1])
with np.load(sys.argv[2]) as z:
    xs = [z[f"x{i}"] for i in range(len(z.files))]
y = m(xs if len(xs) > 1 else xs[0], training=False)
np.save(sys.argv[3], keras.ops.convert_to_numpy(keras.tree.flatten(y)[0]))
"""
