"""Hand-written PyTorch ports of tests/verify_models/keras_issue22.py, written
as a user writes them (issue 22): each is correct, so verify must pass them."""

import torch
import torch.nn.functional as F
from torch import nn


class KerasMomentumBN(nn.BatchNorm2d):
    """Keras' BatchNormalization in torch: its own `keras_momentum` (the weight of
    the OLD value, Keras' convention) and the biased variance; nn.BatchNorm2d's
    `momentum` attribute is left at torch's default and never read."""

    def __init__(self, channels, keras_momentum=0.99, eps=1e-3):
        super().__init__(channels, eps=eps)
        self.keras_momentum = keras_momentum

    def forward(self, x):
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        with torch.no_grad():
            m = self.keras_momentum
            self.running_mean.copy_(m * self.running_mean + (1 - m) * mean)
            self.running_var.copy_(m * self.running_var + (1 - m) * var)
        x = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def avg_pool_same(x, k=3, s=2):
    """TF "same" average pooling on 4x4, k3 s2: pad (0, 1) per axis, divide by the real cells."""
    pad = (0, 1, 0, 1)
    total = F.avg_pool2d(F.pad(x, pad), k, s, divisor_override=1)
    count = F.avg_pool2d(F.pad(torch.ones_like(x[:, :1]), pad), k, s, divisor_override=1)
    return total / count


class Issue22Port(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.bn = KerasMomentumBN(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True)
        self.fc = nn.Linear(32, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = self.bn(self.conv(F.pad(x, (0, 1, 0, 1))))  # TF "same", k3 s2 on 8x8
        x = F.leaky_relu(self.dw(x), 0.2)
        x = avg_pool_same(x).permute(0, 2, 3, 1).flatten(1)  # NHWC, as Keras' Flatten
        x = F.gelu(self.fc(x))  # exact, as keras.activations.gelu(approximate=False)
        return self.head(x)
