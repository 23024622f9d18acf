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

__all__ = ["read", "cast", "perturbed", "values", "loss_and_grads", "sgd_steps", "forward", "export_onnx", "load_module",
           "forget", "NAME"]

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


def perturbed(module, dtype: str, rel: float, seed: int = 0):
    """A `dtype` copy of `module` whose parameters are each multiplied by 1 + rel or
    1 - rel (a seeded random sign per element): for measuring how far the
    training check's own rounding can carry (shared/port_reverse.py, sensitivity)."""
    mod = cast(module, dtype)
    if mod is module:
        mod = copy.deepcopy(module)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mod.parameters():
            if p.is_floating_point():
                sign = torch.randint(0, 2, p.shape, generator=g).to(p.dtype) * 2 - 1
                p.mul_(1 + rel * sign)
    return mod


def forward(module, graph: Graph, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(np.ascontiguousarray(x))).numpy()


def export_onnx(module, config, path, model_name: str | None = None) -> Path:
    from torch_impl.export import export_onnx as export

    return export(module, config, path, model_name=model_name)
