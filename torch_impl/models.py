"""PyTorch models built from a shared ModelConfig; layer names equal keras_impl's.

Two layers differ from their stock torch counterparts on purpose, each the
exact fix for a porting trap (TRAPS.md, "Layers"):
  - Conv2dSame: TensorFlow's asymmetric "same" padding for stride > 1.
  - BatchNorm2dKeras: Keras' momentum convention and biased moving variance.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.data.config import ModelConfig, tf_same_padding

__all__ = ["Conv2dSame", "BatchNorm2dKeras", "build_model", "layer_outputs", "forward"]

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding, fixed for a known input size.

    TF pads max((out-1)*s + k - in, 0) in total with the odd extra row/column at
    the bottom/right; torch's `padding=1` is symmetric and shifts the output
    by a pixel for k=3, s=2 on even sizes (conv2 0.543 on 32x32: TRAPS.md, "same" padding).
    The padding is computed once from the input size, so ONNX export sees
    constants and only the batch dimension stays dynamic.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, input_hw, **kw):
        top, bottom = tf_same_padding(input_hw[0], kernel_size, stride)
        left, right = tf_same_padding(input_hw[1], kernel_size, stride)
        symmetric = top == bottom and left == right
        # Where TF's padding happens to be symmetric (stride 1, or an odd size)
        # the conv pads itself: one op less (17% faster per CNN step, bench).
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(top, left) if symmetric else 0, **kw)
        self.tf_pad = None if symmetric else (left, right, top, bottom)  # F.pad order: last dim first

    def forward(self, x):
        return super().forward(x if self.tf_pad is None else F.pad(x, self.tf_pad))


class BatchNorm2dKeras(nn.BatchNorm2d):
    """BatchNorm2d that keeps Keras' moving statistics.

    Inference is stock torch (normalise with the running statistics). In
    training, the batch is normalised with its biased variance as in both
    frameworks, but the running statistics follow Keras:
    moving = moving * keras_momentum + batch * (1 - keras_momentum), with the
    *biased* batch variance. Stock torch stores the unbiased variance
    (1.4e-4 off after one step, exactly n/(n-1) on the update: TRAPS.md,
    "BatchNorm moving variance").
    """

    def __init__(self, num_features, keras_momentum, eps, **kw):
        super().__init__(num_features, eps=eps, momentum=1.0 - keras_momentum, **kw)
        self.keras_momentum = keras_momentum

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        # The fused kernel with momentum=1.0 writes the batch mean and the
        # *unbiased* batch variance into these scratch buffers (running =
        # 0*old + 1*batch); Keras' update is then applied to the real buffers.
        # 2.2x faster than computing the statistics a second time (torch_impl
        # bench), and bitwise the same moving statistics in float32.
        batch_mean = torch.zeros_like(self.running_mean)
        batch_var = torch.ones_like(self.running_var)
        y = F.batch_norm(x, batch_mean, batch_var, self.weight, self.bias, training=True, momentum=1.0, eps=self.eps)
        n = x.numel() // x.shape[1]  # values per channel: N*H*W
        with torch.no_grad():
            m = self.keras_momentum
            self.running_mean.mul_(m).add_(batch_mean, alpha=1.0 - m)
            self.running_var.mul_(m).add_(batch_var * ((n - 1) / n), alpha=1.0 - m)  # biased, as Keras
            self.num_batches_tracked.add_(1)
        return y


def build_model(config: ModelConfig, seed: int | None = None) -> nn.Sequential:
    """Build the PyTorch model for `config` (torch's own initialisers).

    Args:
        config: the shared description.
        seed: if given, `torch.manual_seed(seed)` first.
    """
    if seed is not None:
        torch.manual_seed(seed)
    steps = OrderedDict()
    if config.model == "mlp":
        fan_in = config.input_shape[0]
        for i, width in enumerate(config.hidden, start=1):
            steps[f"dense{i}"] = nn.Linear(fan_in, width)
            steps[f"relu{i}"] = nn.ReLU()
            fan_in = width
        steps["head"] = nn.Linear(fan_in, config.num_outputs)  # linear: logits
    else:
        h, w, c_in = config.input_shape
        c1, c2 = config.conv_channels
        fh, fw, fc = config.flatten_hwc
        steps["conv1"] = Conv2dSame(c_in, c1, 3, 1, (h, w), bias=False)  # (B,c1,H,W)
        steps["bn1"] = BatchNorm2dKeras(c1, config.bn_momentum, config.bn_epsilon)
        steps["relu1"] = nn.ReLU()
        steps["conv2"] = Conv2dSame(c1, c2, 3, 2, (h, w), bias=False)  # (B,c2,H/2,W/2)
        steps["bn2"] = BatchNorm2dKeras(c2, config.bn_momentum, config.bn_epsilon)
        steps["relu2"] = nn.ReLU()
        steps["pool"] = nn.MaxPool2d(2)  # (B,c2,H/4,W/4)
        steps["flatten"] = nn.Flatten()  # (B, C*H*W) in (C,H,W) order
        steps["fc1"] = nn.Linear(fc * fh * fw, config.dense_units)
        steps["relu3"] = nn.ReLU()
        steps["head"] = nn.Linear(config.dense_units, config.num_outputs)  # linear: logits
    model = nn.Sequential(steps).to(TORCH_DTYPES[config.dtype])
    model.eval()
    return model


def _as_tensor(model: nn.Module, x) -> torch.Tensor:
    """numpy or tensor -> tensor of the model's dtype. Images must be NCHW already
    (shared.graph.layout.nhwc_to_nchw); this function never guesses a layout."""
    dtype = model[0].weight.dtype  # dense1 / conv1: cheaper than walking parameters()
    return torch.as_tensor(x).to(dtype)


def _set_mode(model: nn.Module, training: bool) -> None:
    if model.training != training:  # .train() walks every module: 24 us per call (bench)
        model.train(training)


def forward(model: nn.Module, x, training: bool = False) -> np.ndarray:
    """Logits as numpy. `x` is NCHW for images. `training=False` -> eval mode."""
    _set_mode(model, training)
    with torch.inference_mode():
        return model(_as_tensor(model, x)).numpy()


def layer_outputs(model: nn.Module, x, training: bool = False) -> dict:
    """Every layer's output, by layer name, channels-first (NCHW) as torch has it."""
    _set_mode(model, training)
    out = {}
    with torch.no_grad():
        h = _as_tensor(model, x)
        for name, layer in model.named_children():
            h = layer(h)
            out[name] = h.numpy().copy()
    return out
