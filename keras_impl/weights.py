"""Keras model <-> portable tensors (PyTorch names and layout).

Each Keras variable maps to one PyTorch state_dict name through one of four
exact transforms (shared/graph/layout.py): Dense transpose, Conv HWIO -> OIHW, the
Dense after Flatten re-ordered from (H,W,C) to (C,H,W), or identity.
"""

from __future__ import annotations

import keras
import numpy as np

from shared.graph import layout
from shared.data.config import ModelConfig, parameter_spec
from shared.data.portable import check_tensors, load_portable, save_portable

__all__ = ["variable_map", "to_portable", "from_portable", "grads_to_portable", "save_weights", "load_weights"]

# Keras BatchNormalization variable -> torch BatchNorm2d state_dict suffix.
_BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def variable_map(model: keras.Model, config: ModelConfig) -> list:
    """[(torch_name, keras_variable, to_torch, to_keras)] for every portable tensor."""
    ident = (lambda a: a, lambda a: a)
    hwc = config.flatten_hwc if config.model == "cnn" else None
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            if layer.name == "fc1":  # the Dense right after Flatten
                fwd = (lambda a: layout.flatten_dense_kernel_to_weight(a, hwc), lambda a: layout.flatten_dense_weight_to_kernel(a, hwc))
            else:
                fwd = (layout.dense_kernel_to_weight, layout.dense_weight_to_kernel)
            rows.append((f"{layer.name}.weight", layer.kernel, *fwd))
            rows.append((f"{layer.name}.bias", layer.bias, *ident))
        elif isinstance(layer, keras.layers.Conv2D):
            rows.append((f"{layer.name}.weight", layer.kernel, layout.conv_kernel_to_weight, layout.conv_weight_to_kernel))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for attr, suffix in _BN_NAMES.items():
                rows.append((f"{layer.name}.{suffix}", getattr(layer, attr), *ident))
    order = list(parameter_spec(config))
    rows.sort(key=lambda r: order.index(r[0]))
    return rows


def to_portable(model: keras.Model, config: ModelConfig) -> dict:
    """All weights as numpy arrays in PyTorch names and layout."""
    return {name: to_t(keras.ops.convert_to_numpy(var)) for name, var, to_t, _ in variable_map(model, config)}


def from_portable(model: keras.Model, config: ModelConfig, tensors: dict) -> None:
    """Assign portable tensors to the Keras model (checked first, nothing half-set)."""
    check_tensors(config, tensors)
    rows = variable_map(model, config)
    values = [to_k(np.asarray(tensors[name])) for name, _, _, to_k in rows]
    for (name, var, _, _), value in zip(rows, values):
        if tuple(var.shape) != value.shape:  # cannot happen for a model built from config
            raise AssertionError(f"{name}: keras variable {tuple(var.shape)} vs {value.shape}")
        var.assign(value)


def grads_to_portable(model: keras.Model, config: ModelConfig, grads: list) -> dict:
    """Gradients aligned with `model.trainable_variables` -> PyTorch names and layout."""
    by_var = {id(v): g for v, g in zip(model.trainable_variables, grads)}
    out = {}
    for name, var, to_t, _ in variable_map(model, config):
        if id(var) in by_var:
            out[name] = to_t(keras.ops.convert_to_numpy(by_var[id(var)]))
    return out


def save_weights(model: keras.Model, config: ModelConfig, path, classes=()) -> None:
    """Write the portable file (and sidecar) for `model`."""
    save_portable(path, to_portable(model, config), config, classes=classes, framework="keras", framework_version=keras.__version__)


def load_weights(model: keras.Model, config: ModelConfig, path) -> dict:
    """Load a portable file into `model`; returns the sidecar."""
    tensors, sidecar, _ = load_portable(path, config)
    from_portable(model, config, tensors)
    return sidecar
