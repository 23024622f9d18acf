"""What the engine needs from one implementation of a model: the `Backend` interface.

The engine (shared/flows/engine.py) checks a *pair* of backends against each other
and knows nothing of TensorFlow or torch: everything crosses this interface as
numpy. `keras_impl/backend.py` and `torch_impl/backend.py` implement it name
for name; `shared/onnx/onnx_backend.py` is a third, forward-only implementation
(onnxruntime), and tests drive the engine with two tiny numpy backends.

The common layout is PyTorch's. Inputs, outputs, per-layer activations and
weights cross the interface in torch layout: images NCHW, flattened vectors in
(C, H, W) order, weights under torch state_dict names and layout (the
"portable" form of shared/data/portable.py). A backend whose framework lays things
out differently (Keras: NHWC, HWIO kernels, (H, W, C) Flatten) converts on its
side of the interface. Targets `y` are layout-free: class indices (int64) for
multiclass, floats otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from shared.data.config import TrainConfig
from shared.core.training import TrainResult

__all__ = ["Backend", "LOSS_OUTPUTS", "OnStep"]

# The keys of Backend.loss_outputs, in the order the engine reports them.
LOSS_OUTPUTS = ("probabilities", "per-sample loss", "mean loss")

OnStep = Callable[[int, float], None]  # on_step(step index, pre-update loss)


@runtime_checkable
class Backend(Protocol):
    """One model behind one framework, numpy in and numpy out, common layout.

    Attributes:
        name: how the report names this side: "keras", "torch",
            "onnx(keras)", ... (the `a`/`b` of a Check).
        dtype: "float32" or "float64": the model's weights and compute dtype.
        task: one of shared.data.config.TASKS; decides the loss, the
            probabilities and the predictions (the head is linear: logits).
        can_train: False for forward-only backends (onnxruntime); the engine
            then runs no gradient, training or layer check on it.
    """

    name: str
    dtype: str
    task: str
    can_train: bool

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """The model output (logits), (batch, outputs).

        Args:
            x: inputs in the common layout, any float dtype (cast to `dtype`).
            training: training-mode layers (BatchNorm on batch statistics).
                The model's state (BatchNorm moving statistics) is the same
                afterwards as before, whatever the mode.
        """
        ...

    def layer_outputs(self, x: np.ndarray, training: bool = False) -> dict:
        """Every layer's output, in forward order, in the common layout.

        Returns:
            {layer name: array}; the names are shared by both backends of a
            pair (the engine walks them to name the first layer that differs).
            State unchanged afterwards, as for `forward`. A backend that cannot
            see inside its model raises NotImplementedError.
        """
        ...

    def loss_outputs(self, logits: np.ndarray, y: np.ndarray, naive: bool = False) -> dict:
        """The framework's own loss code applied to given logits (no model involved).

        Returns:
            {"probabilities": (B, outputs), "per-sample loss": (B,),
            "mean loss": scalar}; with naive=True also "naive loss" (B,): the
            probabilities-then-log path the from-logits losses avoid.
        """
        ...

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, training: bool = True) -> tuple:
        """Mean loss and its gradient for every trainable tensor.

        Returns:
            (loss as float, {portable name: gradient in portable layout}).
            The model (weights, moving statistics, mode) is unchanged afterwards.
        """
        ...

    def train(self, batches: list, train_config: TrainConfig, on_step: OnStep | None = None) -> TrainResult:
        """One optimizer step per (x, y) batch, in order, in place.

        Args:
            batches: (x, y) numpy batches in the common layout (the engine
                made them with shared.data.batches); cast here to `dtype` by the
                shared.data.batches.cast_batch rule.
            train_config: optimizer name and hyperparameters (Keras
                conventions: shared.data.config.TrainConfig).
            on_step: called after each step with (step, loss).

        Returns:
            TrainResult: the per-step pre-update losses, and the
            shared.data.dataset.array_fingerprint of each batch the step received,
            taken in the common layout (so equal lists on both sides prove the
            same bytes in the same order).
        """
        ...

    def get_weights(self) -> dict:
        """Every portable tensor (trainable weights and moving statistics), copies."""
        ...

    def set_weights(self, tensors: dict) -> None:
        """Assign portable tensors (all of them; checked first, nothing half-set)."""
        ...

    def with_dtype(self, dtype: str) -> "Backend":
        """A new backend: the same model in `dtype`, the same weights exactly widened
        (float32 -> float64 is exact). Anything planted stays planted."""
        ...

    def clone(self) -> "Backend":
        """A new backend: a fresh model holding this one's weights (training two
        clones starts from the same point). Anything planted stays planted."""
        ...

    def export_onnx(self, path: Path, opset: int) -> tuple:
        """Write the model (inference mode) to an ONNX file.

        Returns:
            (path written, info dict): info has at least "exporter" (which
            exporter ran, e.g. "tf2onnx", "torchscript", "dynamo") and, where
            a fallback was tried, "fallback_from" with the reason.
        """
        ...

    def onnx_backend(self, path: Path) -> "Backend":
        """The forward-only backend (onnxruntime) that runs this side's export,
        named "onnx(<name>)", taking inputs in the common layout."""
        ...
