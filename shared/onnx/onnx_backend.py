"""onnxruntime as a third, forward-only backend (shared.flows.backend.Backend).

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

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            raise NotImplementedError(f"{self.name}: an ONNX inference graph has no training mode")
        return onnx_check.run_onnx(self.path, self._to_model_input(np.asarray(x)), level=self.level)

    def _no(self, what: str):
        raise NotImplementedError(f"{self.name} is forward-only (onnxruntime): no {what}")

    def layer_outputs(self, x, training=False):
        self._no("layer outputs")

    def loss_outputs(self, logits, y, naive=False):
        self._no("loss code")

    def loss_and_grads(self, x, y, training=True):
        self._no("gradients")

    def train(self, batches, train_config, on_step=None):
        self._no("training")

    def get_weights(self):
        self._no("portable weights")

    def set_weights(self, tensors):
        self._no("portable weights")

    def with_dtype(self, dtype):
        self._no("dtype conversion")

    def clone(self):
        return OnnxBackend(self.path, name=self.name, task=self.task, dtype=self.dtype,
                           to_model_input=self._to_model_input, level=self.level)

    def export_onnx(self, path, opset):
        self._no("export (it is one)")

    def onnx_backend(self, path):
        self._no("export (it is one)")
