"""PyTorch side of the reverse port (PyTorch -> Keras), one uniform face for
shared/port_reverse.py: read the module into the graph, cast it, its per-node
values, loss and gradients, SGD steps, forward, ONNX export. The twin of
keras_impl/reverse.py (same public names where both have them).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from shared.graph import Graph
from torch_impl import port as _port
from torch_impl import read as _read

__all__ = ["read", "cast", "values", "loss_and_grads", "sgd_steps", "forward", "export_onnx", "load_module", "forget", "NAME"]

NAME = "torch"
read = _read.read_graph
values = _read.graph_values
loss_and_grads = _port.module_loss_and_grads
sgd_steps = _port.module_sgd_steps
load_module = _port.load_module


def forget(module) -> None:
    """Let a module copy go: drop its cached capture (which holds its parameters)."""
    from torch_impl.capture import forget as drop

    drop(module)


def cast(module, dtype: str):
    """The module itself for float32, else an eval-mode copy in `dtype`."""
    if dtype == "float32":
        return module
    return copy.deepcopy(module).to(getattr(torch, dtype)).eval()


def forward(module, graph: Graph, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(np.ascontiguousarray(x))).numpy()


def export_onnx(module, config, path, model_name: str | None = None) -> Path:
    from torch_impl.export import export_onnx as export

    return export(module, config, path, model_name=model_name)
