"""The catalog of porting bugs the harness can plant, and the data-path ones.

`--plant NAME[=SIZE]` breaks the PyTorch side the way a porting bug would, to
show what the harness reports and to measure its sensitivity (README,
"Verdicts"). SIZE in (0, 1] is the fraction of the bug: 1 is the bug as a
port writes it, smaller values blend the correct and the broken behaviour
(`meaning` says what the size is in the bug's own units). Each fault names
where the harness must locate it: a layer, an optimizer's training, the loss,
or the data stage.

Model, optimizer and loss faults are applied by torch_impl/faults.py (they
need torch); data-path faults are numpy transforms of the inputs one side
receives, applied here by `DataFaultBackend`, which wraps any backend.
Framework-free (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.core.errors import UsageError

__all__ = ["Fault", "FAULTS", "parse_plant", "DataFaultBackend", "data_transform"]


@dataclass(frozen=True)
class Fault:
    """One kind of porting bug.

    Args:
        name: the --plant name.
        kind: "model", "optimizer", "loss" or "data".
        where: a regular expression that a failing row's "dtype check where"
            must match to locate the fault (a layer, a tensor, an optimizer's
            training rows, the loss, the data stage's batch fingerprints).
        description: the bug as a port would write it.
        meaning: what SIZE means in the bug's own units.
        models: the models it applies to ("mlp", "cnn").
        tasks: the tasks it applies to (empty: all).
        train: TrainConfig changes both sides train with while it is planted
            (a bug that only shows under weight decay needs weight decay).
        optimizers: the optimizers whose training shows it (empty: both).
    """

    name: str
    kind: str
    where: str
    description: str
    meaning: str
    models: tuple = ("mlp", "cnn")
    tasks: tuple = ()
    train: dict = field(default_factory=dict)
    optimizers: tuple = ()


_CNN = ("cnn",)
FAULTS = {f.name: f for f in [
    Fault("bn-epsilon", "model", r"\bbn1\b", "torch BatchNorm eps left at torch's default 1e-5 instead of Keras' 1e-3",
          "eps = 1e-3 - SIZE * 0.99e-3", _CNN),
    Fault("bn-momentum", "model", r"bn\d\.running_(mean|var)", "Keras' BatchNorm momentum 0.99 passed to torch unchanged "
          "(torch's momentum weighs the NEW value)", "new-value weight 0.01 + SIZE * 0.98", _CNN),
    Fault("bn-unbiased-var", "model", r"bn\d\.running_var", "stock torch running_var: the unbiased batch variance",
          "batch variance x (1 + SIZE / (n - 1))", _CNN),
    Fault("same-padding", "model", r"\bconv2\b", "symmetric padding=1 for the stride-2 'same' conv (TF pads bottom/right)",
          "output = (1 - SIZE) x correct + SIZE x symmetric-padded", _CNN),
    Fault("flatten-order", "model", r"\bfc1\b", "fc1 weight a plain transpose, ignoring Keras' (H,W,C) Flatten order",
          "weight = (1 - SIZE) x correct + SIZE x (C,H,W)-ordered", _CNN),
    Fault("conv-kernel", "model", r"\bconv1\b", "conv1 kernel with H and W swapped (OIWH instead of OIHW)",
          "kernel = (1 - SIZE) x correct + SIZE x transposed", _CNN),
    Fault("conv-flip", "model", r"\bconv1\b", "conv1 kernel flipped in H and W (a convolution ported as a correlation)",
          "kernel = (1 - SIZE) x correct + SIZE x flipped", _CNN),
    Fault("dense-transpose", "model", r"\bdense1\b", "dense1 weight reshaped instead of transposed from Keras' (in, out)",
          "weight = (1 - SIZE) x correct + SIZE x reshaped", ("mlp",)),
    Fault("adam-epsilon", "optimizer", r"^float(32|64) (trained weights|training loss curve) \(adam\)", "stock torch Adam: eps 1e-8 added to the bias-corrected "
          "sqrt(v_hat) instead of Keras' 1e-7 on the raw sqrt(v)", "eps_t = (1 - SIZE) x Keras' + SIZE x 1e-8",
          optimizers=("adam",)),
    Fault("sgd-momentum-form", "optimizer", r"^float(32|64) (trained weights|training loss curve) \(sgd\)", "stock torch SGD momentum (b = mu b + g; w -= lr b) "
          "across a learning-rate change (Keras: v = mu v - lr g)", "buffer rescaled by (l0/l1)^(1 - SIZE)",
          train={"lr_change_step": 2, "lr_change_factor": 0.1}, optimizers=("sgd",)),
    Fault("coupled-weight-decay", "optimizer", r"^float(32|64) (trained weights|training loss curve)", "torch weight_decay (L2 added to the gradient) for "
          "Keras' decoupled weight decay", "SIZE of the decay coupled, the rest decoupled",
          train={"weight_decay": 0.05}),
    Fault("bce-probabilities", "loss", r"stability from_logits|loss", "torch BCELoss on sigmoid probabilities (log clamped at -100) "
          "instead of BCEWithLogitsLoss", "loss = (1 - SIZE) x from-logits + SIZE x on probabilities",
          tasks=("binary", "multilabel")),
    Fault("labels-off-by-one", "data", r"batch fingerprints", "class indices shifted by one in the torch data path (1-based vocabulary)",
          "fraction SIZE of the labels shifted", tasks=("multiclass",)),
    Fault("rgb-bgr", "data", r"batch fingerprints", "images fed to torch in BGR order (OpenCV's imread)",
          "input = (1 - SIZE) x RGB + SIZE x BGR", _CNN),
    Fault("resize", "data", r"batch fingerprints", "images resized with another filter in the torch data path (a 2x2 box blur "
          "stands for the filter difference)", "input = (1 - SIZE) x shared + SIZE x resampled", _CNN),
]}


def parse_plant(spec: str | None, model: str | None = None, task: str | None = None) -> tuple:
    """'NAME' or 'NAME=SIZE' -> (Fault, size); (None, 0.0) for None.

    Raises:
        UsageError: an unknown name, a size outside (0, 1], or a fault that
            the model or task does not have (one line).
    """
    if not spec:
        return None, 0.0
    name, _, size_text = spec.partition("=")
    fault = FAULTS.get(name)
    if fault is None:
        raise UsageError(f"--plant {name}: unknown fault; known: {', '.join(FAULTS)}")
    try:
        size = float(size_text) if size_text else 1.0
    except ValueError:
        raise UsageError(f"--plant {spec}: SIZE must be a number in (0, 1], got {size_text!r}") from None
    if not 0 < size <= 1:
        raise UsageError(f"--plant {spec}: SIZE must be in (0, 1], got {size}")
    if model is not None and model not in fault.models:
        raise UsageError(f"--plant {name} needs a {' or '.join(fault.models)} model; this pair's model is {model}")
    if task is not None and fault.tasks and task not in fault.tasks:
        raise UsageError(f"--plant {name} needs a {' or '.join(fault.tasks)} task; this pair's task is {task}")
    return fault, size


def _blur(x: np.ndarray) -> np.ndarray:
    """A 2x2 box filter over H, W of an NCHW batch (edge rows repeated): what a
    different resize filter does to the same picture, to first order."""
    p = np.concatenate([x, x[:, :, -1:]], axis=2)
    p = np.concatenate([p, p[:, :, :, -1:]], axis=3)
    return (p[:, :, :-1, :-1] + p[:, :, 1:, :-1] + p[:, :, :-1, 1:] + p[:, :, 1:, 1:]) / 4


def data_transform(fault: Fault, size: float, num_classes: int = 0):
    """(x -> x', y -> y') for a data-path fault, both numpy, NCHW images."""
    def same(v):
        return v

    if fault.name == "rgb-bgr":
        return (lambda x: ((1 - size) * x + size * x[:, ::-1]).astype(x.dtype)), same
    if fault.name == "resize":
        return (lambda x: ((1 - size) * x + size * _blur(x)).astype(x.dtype)), same
    if fault.name == "labels-off-by-one":
        def shift(y):
            y = np.asarray(y)
            n = int(np.ceil(size * len(y)))
            out = y.copy()
            out[:n] = (y[:n] + 1) % max(num_classes, 1)
            return out
        return same, shift
    raise ValueError(f"{fault.name} is not a data-path fault")


class DataFaultBackend:
    """Any default-run side (shared.flows.side.Side), fed through a data-path fault: what it receives differs.

    Forward passes, gradients and training all see the transformed inputs
    (and labels); the batch fingerprints it reports are those of what it
    received, so the harness' fingerprint check locates the fault in the data.
    Everything else is delegated unchanged.
    """

    def __init__(self, inner, fault: Fault, size: float, num_classes: int = 0):
        self.inner, self.fault, self.size = inner, fault, size
        self.num_classes = num_classes
        self.fx, self.fy = data_transform(fault, size, num_classes)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _xs(self, xs: list) -> list:
        return [self.fx(np.asarray(x)) for x in xs]

    def forward(self, xs: list, training: bool = False):
        return self.inner.forward(self._xs(xs), training)

    def values(self, xs: list, training: bool = False):
        return self.inner.values(self._xs(xs), training)

    def loss_outputs(self, logits, y, naive: bool = False):
        return self.inner.loss_outputs(logits, self.fy(np.asarray(y)), naive)

    def loss_and_grads(self, xs: list, y, loss=None, training: bool = True):
        return self.inner.loss_and_grads(self._xs(xs), self.fy(np.asarray(y)), loss, training)

    def train_steps(self, batches, loss=None, optimizer=None, training: bool = True, on_step=None):
        return self.inner.train_steps([(self._xs(xs), self.fy(np.asarray(y))) for xs, y in batches],
                                      loss, optimizer, training, on_step)

    def _wrap(self, inner):
        return DataFaultBackend(inner, self.fault, self.size, self.num_classes)

    def with_dtype(self, dtype: str):
        return self._wrap(self.inner.with_dtype(dtype))

    def copy(self):
        return self._wrap(self.inner.copy())

    def onnx_side(self, path):
        return self._wrap(self.inner.onnx_side(path))
