"""One framework-free description of a model and of a training run.

Both `keras_impl.models.build_model(config)` and
`torch_impl.models.build_model(config)` build from a `ModelConfig`; layer
names, parameter names and shapes follow from it (`parameter_spec`), so the two
sides can be checked against one list.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from shared.core.errors import UsageError

__all__ = [
    "TASKS",
    "MODELS",
    "DTYPES",
    "KERAS_BN_MOMENTUM",
    "KERAS_BN_EPSILON",
    "KERAS_ADAM_EPSILON",
    "ModelConfig",
    "TrainConfig",
    "layer_names",
    "parameter_spec",
    "tf_same_padding",
]

TASKS = ("multiclass", "multilabel", "binary", "regression")
MODELS = ("mlp", "cnn")
DTYPES = ("float32", "float64")

# Keras BatchNormalization defaults (keras/src/layers/normalization/
# batch_normalization.py: momentum=0.99, epsilon=1e-3). The moving average is
# moving = moving*momentum + batch*(1-momentum); torch's momentum is the weight
# of the *new* value, so the torch twin uses 1 - KERAS_BN_MOMENTUM.
KERAS_BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3
# Keras Adam default (keras/src/optimizers/adam.py: epsilon=1e-7, added to the
# raw sqrt(v) while the bias correction goes into the step size).
KERAS_ADAM_EPSILON = 1e-7


@dataclass(frozen=True)
class ModelConfig:
    """What to build. Every field is plain data, so it round-trips through JSON.

    A configuration the models cannot take raises UsageError (a ValueError):
    the command line reports it in one line with exit 2.

    Args:
        model: "mlp" (the seed's Dense 25 relu -> Dense 15 relu -> Dense N) or
            "cnn" (conv/BN/ReLU blocks, a stride-2 "same" conv, pooling,
            Flatten -> Dense -> head).
        task: one of TASKS; decides the loss, not the layers (the head is
            always linear: losses take logits).
        input_shape: (features,) for mlp; (height, width, channels) for cnn,
            channels-last as the shared data layer delivers images.
        num_outputs: width of the linear head (classes, labels, or targets).
        hidden: mlp hidden widths (the seed uses 25, 15).
        conv_channels: output channels of conv1 (stride 1) and conv2 (stride 2).
        dense_units: width of the cnn's Dense layer after Flatten.
        bn_momentum: Keras convention (weight of the old moving value).
        bn_epsilon: added to the variance on both sides.
        dtype: "float32" or "float64" for every weight and activation.
    """

    model: str
    task: str
    input_shape: tuple
    num_outputs: int
    hidden: tuple = (25, 15)
    conv_channels: tuple = (8, 16)
    dense_units: int = 32
    bn_momentum: float = KERAS_BN_MOMENTUM
    bn_epsilon: float = KERAS_BN_EPSILON
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "hidden", tuple(int(v) for v in self.hidden))
        object.__setattr__(self, "conv_channels", tuple(int(v) for v in self.conv_channels))
        if self.model not in MODELS:
            raise UsageError(f"model must be one of {MODELS}. Received: model={self.model!r}")
        if self.task not in TASKS:
            raise UsageError(f"task must be one of {TASKS}. Received: task={self.task!r}")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype must be one of {DTYPES}. Received: dtype={self.dtype!r}")
        if self.num_outputs < 1:
            raise UsageError(f"num_outputs must be >= 1. Received: num_outputs={self.num_outputs}")
        want = 1 if self.model == "mlp" else 3
        if len(self.input_shape) != want:
            raise UsageError(
                f"{self.model} takes an input_shape of {want} dimension(s). "
                f"Received: input_shape={self.input_shape}"
            )
        if self.model == "cnn" and len(self.conv_channels) != 2:
            raise UsageError(f"conv_channels takes 2 widths. Received: conv_channels={self.conv_channels}")
        for name in ("input_shape", "hidden", "conv_channels"):
            if any(v < 1 for v in getattr(self, name)):
                raise UsageError(f"{name} must hold positive sizes. Received: {name}={getattr(self, name)}")
        if self.dense_units < 1:
            raise UsageError(f"dense_units must be >= 1. Received: dense_units={self.dense_units}")
        if not self.bn_epsilon > 0:
            raise UsageError(f"bn_epsilon must be > 0. Received: bn_epsilon={self.bn_epsilon}")
        if not 0 <= self.bn_momentum < 1:
            raise UsageError(f"bn_momentum (Keras convention) must be in [0, 1). Received: bn_momentum={self.bn_momentum}")
        if self.model == "cnn" and min(self.pool_output_hw) < 1:
            raise UsageError(
                f"cnn needs images of at least 3x3 (stride-2 conv, then 2x2 pooling: --image-size 3 or more). "
                f"Received: input_shape={self.input_shape}"
            )

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("input_shape", "hidden", "conv_channels"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        return cls(**d)

    # ---- derived shapes (cnn) -------------------------------------------------
    @property
    def conv2_output_hw(self) -> tuple:
        """Spatial size after conv2 (stride 2, TF "same": ceil(in / 2))."""
        h, w, _ = self.input_shape
        return (math.ceil(h / 2), math.ceil(w / 2))

    @property
    def pool_output_hw(self) -> tuple:
        """Spatial size after the 2x2/2 max pool ("valid": floor)."""
        h, w = self.conv2_output_hw
        return (h // 2, w // 2)

    @property
    def flatten_hwc(self) -> tuple:
        """(H, W, C) of the tensor that Flatten consumes."""
        return (*self.pool_output_hw, self.conv_channels[1])


@dataclass(frozen=True)
class TrainConfig:
    """How to train, shared by both frameworks.

    Args:
        optimizer: "sgd" (with momentum) or "adam".
        learning_rate: the rate from the first step.
        lr_change_step: 0-based step from which the rate is
            learning_rate * lr_change_factor (0: never changes). Both sides
            then follow Keras' SGD momentum form, v = mu v - lr g, across the
            change (TRAPS.md, Optimizers, "SGD momentum form").
        lr_change_factor: the factor applied from lr_change_step on.
        momentum: SGD momentum (both frameworks' formulas agree at constant lr).
        beta_1, beta_2: Adam moment decay rates (Keras and torch defaults).
        epsilon: Adam epsilon in the *Keras* placement (added to sqrt(v));
            the torch side converts it per step.
        weight_decay: decoupled (Keras' convention; torch uses AdamW / an
            explicit decay step).
        steps: optimizer steps.
        batch_size: items per batch.
        seed: the shared batch order's seed.
    """

    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = KERAS_ADAM_EPSILON
    weight_decay: float = 0.0
    lr_change_step: int = 0
    lr_change_factor: float = 1.0
    steps: int = 50
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam'. Received: optimizer={self.optimizer!r}")
        if self.lr_change_step < 0 or not self.lr_change_factor > 0:
            raise ValueError(f"lr_change_step >= 0 and lr_change_factor > 0. Received: lr_change_step="
                             f"{self.lr_change_step}, lr_change_factor={self.lr_change_factor}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps >= 0 and batch_size >= 1. Received: steps={self.steps}, batch_size={self.batch_size}")

    def lr_at(self, step: int) -> float:
        """The learning rate of 0-based `step`."""
        if self.lr_change_step and step >= self.lr_change_step:
            return self.learning_rate * self.lr_change_factor
        return self.learning_rate

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple:
    """TensorFlow's "same" padding along one axis: (before, after).

    out = ceil(size / stride); total = max((out-1)*stride + (k-1)*d + 1 - size, 0);
    before = total // 2 and the odd extra goes after (bottom/right). torch's
    symmetric `padding=1` puts it on both sides: a one-pixel shift for k=3, s=2
    on an even size (TRAPS.md, Layers, '"same" padding, stride 2').
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return (total // 2, total - total // 2)


def layer_names(config: ModelConfig) -> list:
    """Ordered layer names, identical in Keras and PyTorch."""
    if config.model == "mlp":
        names = []
        for i, _ in enumerate(config.hidden, start=1):
            names += [f"dense{i}", f"relu{i}"]
        return names + ["head"]
    return ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool", "flatten", "fc1", "relu3", "head"]


def parameter_spec(config: ModelConfig) -> dict:
    """Every tensor of the portable weights file: name -> shape, PyTorch layout.

    The names are the PyTorch state_dict keys (num_batches_tracked excluded:
    Keras has no counterpart and it only matters for momentum=None, which this
    project never uses). Trainable tensors come first, in layer order.
    """
    spec = {}
    if config.model == "mlp":
        fan_in = config.input_shape[0]
        for i, width in enumerate(config.hidden, start=1):
            spec[f"dense{i}.weight"] = (width, fan_in)  # (out, in)
            spec[f"dense{i}.bias"] = (width,)
            fan_in = width
        spec["head.weight"] = (config.num_outputs, fan_in)
        spec["head.bias"] = (config.num_outputs,)
        return spec
    c_in = config.input_shape[2]
    c1, c2 = config.conv_channels
    spec["conv1.weight"] = (c1, c_in, 3, 3)  # OIHW
    spec["bn1.weight"] = (c1,)
    spec["bn1.bias"] = (c1,)
    spec["conv2.weight"] = (c2, c1, 3, 3)
    spec["bn2.weight"] = (c2,)
    spec["bn2.bias"] = (c2,)
    h, w, c = config.flatten_hwc
    spec["fc1.weight"] = (config.dense_units, c * h * w)  # columns in (C, H, W) order
    spec["fc1.bias"] = (config.dense_units,)
    spec["head.weight"] = (config.num_outputs, config.dense_units)
    spec["head.bias"] = (config.num_outputs,)
    # Non-trainable BatchNorm statistics last.
    for bn, ch in (("bn1", c1), ("bn2", c2)):
        spec[f"{bn}.running_mean"] = (ch,)
        spec[f"{bn}.running_var"] = (ch,)
    return spec


def trainable_names(config: ModelConfig) -> list:
    """The names in parameter_spec that an optimizer updates."""
    return [n for n in parameter_spec(config) if not n.endswith(("running_mean", "running_var"))]


__all__.append("trainable_names")
