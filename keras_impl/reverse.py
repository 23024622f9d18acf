"""Keras side of the reverse port (PyTorch -> Keras), one uniform face for
shared/port_reverse.py: build the model from the graph, its per-node values,
loss and gradients, SGD steps, forward, ONNX export, save and a plain reload.
The twin of torch_impl/reverse.py (same public names where both have them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

from keras_impl import port as _port
from keras_impl import write as _write
from shared.graph import Graph

__all__ = ["build", "values", "loss_and_grads", "sgd_steps", "infer_loss", "forward", "export_onnx", "save",
           "load_in_fresh_process", "NAME"]

NAME = "keras"
values = _write.graph_values
loss_and_grads = _port.loss_and_grads
sgd_steps = _port.sgd_steps
infer_loss = _port.infer_loss


def build(graph: Graph, source: str | None = None, plan=None, dtype: str = "float32") -> tuple:
    """(model, model_keras.py source, plan): the model built by executing the source."""
    return _write.build_model(graph, source, plan, dtype=dtype)


def _keras_layout(graph: Graph, name: str, x: np.ndarray) -> np.ndarray:
    perm = graph.tensors[name].keras_perm
    return x if perm is None else np.ascontiguousarray(np.transpose(x, np.argsort(perm)))


def _keras_inputs(graph: Graph, x) -> list:
    """One neutral-layout array (the first input) or one per input -> Keras' layout."""
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    return [_keras_layout(graph, name, a) for name, a in zip(graph.inputs, xs)]


def forward(model, graph: Graph, x) -> np.ndarray:
    """Inference output (the first, where the model has several) for neutral-layout
    input(s), in Keras' own layout."""
    xs = _keras_inputs(graph, x)
    out = model(xs if len(xs) > 1 else xs[0], training=False)
    return keras.ops.convert_to_numpy(keras.tree.flatten(out)[0])


def export_onnx(model, config, path, model_name: str | None = None) -> Path:
    from keras_impl.export import export_onnx as export

    return export(model, config, path, model_name=model_name)


def save(model, folder: Path) -> dict:
    """model.keras and model.weights.h5 in `folder`; their names."""
    model.save(str(folder / "model.keras"))
    model.save_weights(str(folder / "model.weights.h5"))
    return {"model.keras": "model.keras", "weights": "model.weights.h5"}


_PLAIN_LOAD = """
import sys, numpy as np, keras
m = keras.models.load_model(sys.argv[1])
with np.load(sys.argv[2]) as z:
    xs = [z[f"x{i}"] for i in range(len(z.files))]
y = m(xs if len(xs) > 1 else xs[0], training=False)
np.save(sys.argv[3], keras.ops.convert_to_numpy(keras.tree.flatten(y)[0]))
"""


def load_in_fresh_process(path: Path, graph: Graph, x, work: Path) -> tuple:
    """(first output in Keras' layout, None) of `keras.models.load_model(path)` run in a
    fresh isolated Python (-I: nothing of this project importable), or (None, error line)."""
    xin, xout = work / ".load_check_x.npz", work / ".load_check_y.npy"
    np.savez(xin, **{f"x{i}": a for i, a in enumerate(_keras_inputs(graph, x))})
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", _PLAIN_LOAD, str(path), str(xin), str(xout)],
                              capture_output=True, text=True, env=env, cwd=str(work))
        if proc.returncode != 0:
            return None, (proc.stderr.strip().splitlines() or ["?"])[-1]
        return np.load(xout), None
    finally:
        for f in (xin, xout):
            f.unlink(missing_ok=True)
