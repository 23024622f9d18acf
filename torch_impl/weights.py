"""PyTorch model <-> portable tensors. The file is in PyTorch names and layout,
so this side only converts between tensors and numpy.

`num_batches_tracked` is not portable (Keras has no counterpart; it matters
only for momentum=None, which this project never uses); loading keeps the
model's own counter.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.config import ModelConfig, parameter_spec
from shared.portable import check_tensors, load_portable, save_portable

__all__ = ["variable_map", "to_portable", "from_portable", "grads_to_portable", "save_weights", "load_weights"]


def variable_map(model: nn.Module, config: ModelConfig) -> list:
    """[(torch_name, tensor)] for every portable tensor, in parameter_spec order."""
    state = model.state_dict(keep_vars=True)
    return [(name, state[name]) for name in parameter_spec(config)]


def to_portable(model: nn.Module, config: ModelConfig) -> dict:
    """All weights as numpy arrays (copies)."""
    return {name: t.detach().cpu().numpy().copy() for name, t in variable_map(model, config)}


def from_portable(model: nn.Module, config: ModelConfig, tensors: dict) -> None:
    """Copy portable tensors into the model (checked first, nothing half-set)."""
    check_tensors(config, tensors)
    with torch.no_grad():
        for name, t in variable_map(model, config):
            t.copy_(torch.from_numpy(np.ascontiguousarray(tensors[name])))


def grads_to_portable(model: nn.Module, config: ModelConfig, grads=None) -> dict:
    """Gradients (`param.grad` after backward) by portable name."""
    params = dict(model.named_parameters())
    return {
        name: params[name].grad.detach().cpu().numpy().copy()
        for name in parameter_spec(config)
        if name in params and params[name].grad is not None
    }


def save_weights(model: nn.Module, config: ModelConfig, path, classes=()) -> None:
    """Write the portable file (and sidecar) for `model`."""
    save_portable(path, to_portable(model, config), config, classes=classes, framework="torch", framework_version=torch.__version__)


def load_weights(model: nn.Module, config: ModelConfig, path) -> dict:
    """Load a portable file into `model`; returns the sidecar."""
    tensors, sidecar, _ = load_portable(path, config)
    from_portable(model, config, tensors)
    return sidecar
