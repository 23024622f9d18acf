"""A Keras model as the default run's shared.flows.side.Side. Never imports torch.

Twin of torch_impl/backend.py. `KerasBackend` wraps any Keras model whose
output is the logits; what is model-specific comes in as arguments: the task
(which loss), the weight map to and from the portable form (torch names and
layout), how an activation is laid out in torch's layout, how an input in
torch's layout reaches the model, and how to build a fresh copy of the model
in a dtype. `from_config` builds the built-in ModelConfig twin.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from keras_impl import export, losses, models, train
from keras_impl import weights as kweights
from shared.data.config import ModelConfig, TrainConfig
from shared.graph.layout import keras_activation_as_torch, nchw_to_nhwc, nhwc_to_nchw
from shared.onnx.onnx_backend import OnnxBackend
from shared.flows.side import engine_batches, no_config, single, task_loss
from shared.core.training import TrainResult

__all__ = ["KerasBackend", "ConfigWeights", "clone_in_dtype", "from_config", "FRAMEWORK_VERSION"]

FRAMEWORK_VERSION = keras.__version__


def _activation_as_torch(name: str, a: np.ndarray) -> np.ndarray:
    """Default activation layout: 4-D NHWC -> NCHW, everything else as is."""
    return nhwc_to_nchw(a)


def clone_in_dtype(model: keras.Model, dtype: str) -> keras.Model:
    """A fresh model of the same architecture with every layer in `dtype` (new weights)."""

    def layer_in_dtype(layer):
        cfg = layer.get_config()
        cfg["dtype"] = dtype
        return layer.__class__.from_config(cfg)

    return keras.models.clone_model(model, clone_function=layer_in_dtype)


class ConfigWeights:
    """The weight map of a built-in ModelConfig twin (keras_impl.weights), any dtype."""

    def __init__(self, config: ModelConfig):
        self.config = config

    def _cfg(self, model: keras.Model) -> ModelConfig:
        return self.config.replace(dtype=str(model.trainable_variables[0].dtype))

    def to_portable(self, model: keras.Model) -> dict:
        return kweights.to_portable(model, self._cfg(model))

    def from_portable(self, model: keras.Model, tensors: dict) -> None:
        kweights.from_portable(model, self._cfg(model), tensors)

    def grads_to_portable(self, model: keras.Model, grads: list) -> dict:
        return kweights.grads_to_portable(model, self._cfg(model), grads)


class KerasBackend:
    """A Keras model, numpy in and out, in torch layout (the common one).

    Args:
        model: the model; `model(x, training=...)` returns the logits.
        task: one of shared.data.config.TASKS (keras_impl.losses).
        weights: the weight map, an object with to_portable(model),
            from_portable(model, tensors) and grads_to_portable(model, grads
            aligned with trainable_variables) (e.g. ConfigWeights).
        name: how the report names this side.
        activation_as_torch: (layer name, Keras activation) -> torch layout;
            default: 4-D NHWC -> NCHW.
        to_model_input: torch-layout input -> the model's (default 4-D NCHW -> NHWC).
        rebuild: dtype -> a fresh model of the same architecture (its
            weights are overwritten); default clone_in_dtype.
    """

    can_train = True

    def __init__(self, model: keras.Model, *, task: str, weights, name: str = "keras",
                 activation_as_torch=_activation_as_torch, to_model_input=nchw_to_nhwc, rebuild=None):
        self.model, self.task, self.name, self.weights = model, task, name, weights
        self.dtype = str(model.trainable_variables[0].dtype)
        self.activation_as_torch = activation_as_torch
        self.to_model_input = to_model_input
        self.rebuild = rebuild if rebuild is not None else (lambda dtype: clone_in_dtype(model, dtype))
        self.input_shape = tuple(model.input_shape[1:])  # Keras layout, for the ONNX signature

    def _x(self, x) -> np.ndarray:
        return self.to_model_input(np.asarray(x, dtype=self.dtype))

    def _keeping_state(self, fn, training: bool):
        """fn(); in training mode the moving statistics are restored afterwards."""
        saved = [v.numpy() for v in self.model.non_trainable_variables] if training else None
        try:
            return fn()
        finally:
            if saved is not None:
                for v, value in zip(self.model.non_trainable_variables, saved):
                    v.assign(value)

    @property
    def graph(self):
        """None: the built-in twins have no graph; `values` is keyed by layer names both twins share."""
        return None

    def forward(self, xs: list, training: bool = False) -> list:
        x = single(xs)
        return [self._keeping_state(lambda: models.forward(self.model, self._x(x), training=training), training)]

    def values(self, xs: list, training: bool = False) -> dict:
        x = single(xs)
        raw = self._keeping_state(lambda: models.layer_outputs(self.model, self._x(x), training=training), training)
        return {name: self.activation_as_torch(name, a) for name, a in raw.items()}

    def loss_outputs(self, logits, y, naive: bool = False) -> dict:
        return losses.loss_outputs(self.task, logits, y, naive=naive)

    def loss_and_grads(self, xs: list, y, loss=None, training: bool = True) -> tuple:
        loss_value, grads = train.loss_and_raw_grads(self.model, task_loss(self, loss), self._x(single(xs)), y,
                                                     training)
        return loss_value, self.weights.grads_to_portable(self.model, grads)

    def train_steps(self, batches: list, loss=None, optimizer: TrainConfig | None = None, training: bool = True,
                    on_step=None) -> TrainResult:
        task_loss(self, loss)
        return train.train(self.model, self, optimizer, engine_batches(batches, training), on_step=on_step,
                           channels_first=True)

    def get_weights(self) -> dict:
        return self.weights.to_portable(self.model)

    def set_weights(self, tensors: dict) -> None:
        self.weights.from_portable(self.model, tensors)

    def _like(self, dtype: str, tensors: dict) -> "KerasBackend":
        model = self.rebuild(dtype)
        self.weights.from_portable(model, tensors)
        return KerasBackend(model, task=self.task, weights=self.weights, name=self.name,
                            activation_as_torch=self.activation_as_torch, to_model_input=self.to_model_input,
                            rebuild=self.rebuild)

    def with_dtype(self, dtype: str) -> "KerasBackend":
        return self._like(dtype, {n: v.astype(dtype) for n, v in self.get_weights().items()})

    def copy(self) -> "KerasBackend":
        return self._like(self.dtype, self.get_weights())

    def export_onnx(self, path, opset: int | None = None, config=None, info: dict | None = None) -> Path:
        no_config(self, config)
        out, how = export.export_with_info(self.model, self, path, opset if opset is not None else export.ONNX_OPSET)
        if info is not None:
            info.update(how)
        return Path(out)

    def onnx_input(self, x, name: str | None = None) -> np.ndarray:
        return self.to_model_input(np.asarray(x))

    def onnx_input_names(self) -> list:
        return [export.INPUT_NAME]  # export_onnx standardizes its one input's name

    def onnx_output(self, y, name: str | None = None) -> np.ndarray:
        return np.asarray(y)  # the logits, (batch, outputs): the same in both layouts

    def onnx_side(self, path) -> OnnxBackend:
        return OnnxBackend(path, name=f"onnx({self.name})", task=self.task, dtype=self.dtype,
                           to_model_input=self.to_model_input)



def from_config(config: ModelConfig, seed: int | None = None, name: str = "keras") -> KerasBackend:
    """The built-in Keras twin of `config` as a backend (Keras' initialisers, seeded)."""
    return KerasBackend(models.build_model(config, seed=seed), task=config.task, weights=ConfigWeights(config),
                        name=name, activation_as_torch=lambda n, a: keras_activation_as_torch(n, a, config),
                        rebuild=lambda dtype: models.build_model(config.replace(dtype=dtype)))
