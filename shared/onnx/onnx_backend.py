"""onnxruntime as a third, forward-only side of the default run (shared.flows.side.Side).

An exported model runs in onnxruntime (shared.onnx.onnx_check.run_onnx, CPU,
ORT_LEVEL) behind the same interface as the frameworks, so the engine compares
Keras, PyTorch and both exports with the code it uses for any two backends.
Only `forward` works: ONNX files here hold inference graphs, with no training
mode, layer outputs, gradients or optimizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.onnx import onnx_check

__all__ = ["OnnxBackend"]


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _one(xs: list) -> np.ndarray:
    """shared.flows.side.single (onnx/ imports no flows/): the one input of the default run's models."""
    if len(xs) != 1:
        raise NotImplementedError(f"the default run's models take one input, not {len(xs)}")
    return xs[0]


class OnnxBackend:
    """An ONNX file run by onnxruntime, taking inputs in the common layout.

    Args:
        path: the .onnx file.
        name: how the report names it, e.g. "onnx(keras)".
        task, dtype: those of the model that was exported.
        to_model_input: common layout -> the layout the file was exported with
            (shared.graph.layout.nchw_to_nhwc for a Keras export of an image model).
        level: onnxruntime graph optimisation level (onnx_check.ORT_LEVEL).
    """

    can_train = False

    def __init__(self, path, *, name: str, task: str, dtype: str, to_model_input=_same, level=onnx_check.ORT_LEVEL):
        self.path = Path(path)
        self.name, self.task, self.dtype = name, task, dtype
        self.level = level
        self._to_model_input = to_model_input

    @property
    def graph(self):
        """None: the engine reads no graph from an ONNX file."""
        return None

    def forward(self, xs: list, training: bool = False) -> list:
        if training:
            raise NotImplementedError(f"{self.name}: an ONNX inference graph has no training mode")
        return [onnx_check.run_onnx(self.path, self._to_model_input(np.asarray(_one(xs))), level=self.level)]

    def _no(self, what: str):
        raise NotImplementedError(f"{self.name} is forward-only (onnxruntime): no {what}")

    def values(self, xs, training=False):
        self._no("layer outputs")

    def loss_outputs(self, logits, y, naive=False):
        self._no("loss code")

    def loss_and_grads(self, xs, y, loss=None, training=True):
        self._no("gradients")

    def train_steps(self, batches, loss=None, optimizer=None, training=True, on_step=None):
        self._no("training")

    def get_weights(self):
        self._no("portable weights")

    def set_weights(self, tensors):
        self._no("portable weights")

    def with_dtype(self, dtype):
        self._no("dtype conversion")

    def copy(self):
        return OnnxBackend(self.path, name=self.name, task=self.task, dtype=self.dtype,
                           to_model_input=self._to_model_input, level=self.level)

    def export_onnx(self, path, opset=None, config=None, info=None):
        self._no("export (it is one)")

    def onnx_input(self, x, name=None):
        self._no("export (it is one)")

    def onnx_input_names(self):
        self._no("export (it is one)")

    def onnx_output(self, y, name=None):
        self._no("export (it is one)")

    def onnx_side(self, path):
        self._no("export (it is one)")
