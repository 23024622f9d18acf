"""PyTorch model <-> portable tensors. The file is in PyTorch names and layout,
so this side only converts between tensors and numpy.

`num_batches_tracked` is not portable (Keras has no counterpart; it matters
only for momentum=None, which this project never uses); loading keeps the
model's own counter.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.data.config import ModelConfig, parameter_spec
from shared.core.errors import UsageError
from shared.data.portable import check_tensors, load_portable, save_portable
from shared.core.user_code import is_out_of_memory

__all__ = ["variable_map", "to_portable", "from_portable", "grads_to_portable", "save_weights", "load_weights",
           "load_state_file"]


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


def load_state_file(module: nn.Module, path: str) -> nn.Module:
    """Load a user's state_dict file into `module` strictly (`--torch-weights` of port and verify).

    .pt/.pth: torch.load(weights_only=True), also {"state_dict": ...} as
    checkpoints hold it; .safetensors: safetensors' load_file. A file without
    `_metadata` (every .safetensors, which keeps tensors only) gets the
    module's own: the version each submodule's code writes (Module._version)
    is what versioned `_load_from_state_dict`s read, and torchvision's MNASNet
    refuses a state without one ("version should be set to 1 or 2").
    A file that is missing, unreadable or does not fit: UsageError (exit 2).
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--torch-weights {path}: no such file")
    state = _read_state(p)
    if not isinstance(state, dict):
        raise UsageError(f"--torch-weights {path}: holds a {type(state).__name__}, expected a state_dict")
    if getattr(state, "_metadata", None) is None:
        state = OrderedDict(state)
        state._metadata = module.state_dict()._metadata  # type: ignore[attr-defined]
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--torch-weights {path}: does not fit the torch model: {' '.join(str(e).split())[:300]}") from None
    return module


def _read_state(p: Path):
    """The object a weights file holds (a state_dict, or a checkpoint dict with one under "state_dict")."""
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  pickle and safetensors errors of every kind: a bad file
        if is_out_of_memory(e):
            raise
        raise UsageError(f"--torch-weights {p}: not a readable state_dict ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        return state["state_dict"]
    return state
