"""Hand-written PyTorch ports of tests/verify_models/keras_cnn.py: one correct,
and one per classic porting bug (each a small subclass, named after its bug).

The correct port pads like TF "same" (F.pad, the odd extra row/column after),
copies BatchNorm's epsilon and momentum (torch momentum = 1 - Keras'), keeps
Keras' biased moving variance, flattens NCHW (verify permutes the Dense
kernel) and switches dropout off in eval mode.
"""

import torch
import torch.nn.functional as F
from torch import nn


class KerasBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose running_var follows Keras: the biased batch variance."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var, alpha=self.momentum)
        x = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class CorrectPort(nn.Module):
    bn_eps = 1e-3
    bn_momentum = 0.1  # Keras momentum 0.9

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2)
        self.bn1 = self.make_bn()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(32, 16)
        self.head = nn.Linear(16, 4)

    def make_bn(self):
        return KerasBatchNorm2d(8, eps=self.bn_eps, momentum=self.bn_momentum)

    def stem(self, x):
        return self.conv1(F.pad(x, (0, 1, 0, 1)))  # TF "same", k3 s2 on 8x8: (0, 1) per axis

    def features(self, x):
        x = F.relu(self.bn1(self.stem(x)))
        x = F.relu(self.dw(x))
        return torch.flatten(F.max_pool2d(x, 2), 1)  # NCHW flatten

    def forward(self, x):
        x = F.relu(self.fc(self.features(x)))
        x = F.dropout(x, 0.5, training=self.training)
        return self.head(x)


class FlattenNHWC(CorrectPort):
    """Also correct: permutes to NHWC before flattening (then the kernel is a plain transpose)."""

    def features(self, x):
        x = F.relu(self.bn1(self.stem(x)))
        x = F.max_pool2d(F.relu(self.dw(x)), 2)
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class ContiguousCalls(CorrectPort):
    """Also correct: `.contiguous()` on tensors that already are (it returns the tensor itself), as HF models do."""

    def features(self, x):
        x = F.relu(self.bn1(self.stem(x.contiguous()))).contiguous()
        x = F.max_pool2d(F.relu(self.dw(x)), 2).contiguous()
        return torch.flatten(x, 1).contiguous()


class BnEpsDefault(CorrectPort):
    bn_eps = 1e-5  # torch's default instead of Keras' 1e-3


class BnEpsSubtle(CorrectPort):
    bn_eps = 1.001e-3  # a 0.1% typo: ~1e-6 of the output


class BnMomentumKeras(CorrectPort):
    bn_momentum = 0.9  # Keras' number copied: torch weighs the batch by it


class BnStock(CorrectPort):
    def make_bn(self):  # stock torch: unbiased running_var
        return nn.BatchNorm2d(8, eps=self.bn_eps, momentum=self.bn_momentum)


class SymmetricPadding(CorrectPort):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # torch's symmetric padding

    def stem(self, x):
        return self.conv1(x)


class DropoutInEval(CorrectPort):
    def forward(self, x):
        x = F.relu(self.fc(self.features(x)))
        x = F.dropout(x, 0.5)  # training defaults to True
        return self.head(x)


class MissingBias(CorrectPort):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4, bias=False)


class AvgPool(CorrectPort):
    """Average pooling where Keras max-pools: a functional op, no module of its own."""

    def features(self, x):
        x = F.relu(self.bn1(self.stem(x)))
        x = F.relu(self.dw(x))
        return torch.flatten(F.avg_pool2d(x, 2), 1)


def correct_port():
    return CorrectPort()


class TrapsPort(nn.Module):
    """Correct port of keras_cnn.build_traps."""

    ln_eps, slope, gelu = 1e-3, 0.3, "none"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(54, 8)
        self.ln = nn.LayerNorm(8, eps=self.ln_eps)
        self.head = nn.Linear(8, 3)

    def pool(self, x):
        """TF "same" average pooling, k3 s2 on 6x6: pad (0, 1), divide by the real cells."""
        ones = torch.ones_like(x[:, :1])
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 3, 2) / F.avg_pool2d(F.pad(ones, (0, 1, 0, 1)), 3, 2)

    def forward(self, x):
        x = F.gelu(self.conv(x), approximate=self.gelu)
        x = F.leaky_relu(self.pool(x), self.slope)
        x = self.ln(self.fc(torch.flatten(x, 1)))
        return torch.softmax(self.head(x), dim=-1)


class GeluTanh(TrapsPort):
    gelu = "tanh"


class LeakyDefault(TrapsPort):
    slope = 0.01  # F.leaky_relu's default; Keras' LeakyReLU layer uses 0.3


class LayerNormEps(TrapsPort):
    ln_eps = 1e-5


class AvgPoolCountPad(TrapsPort):
    def pool(self, x):
        return F.avg_pool2d(x, 3, 2, padding=1)  # symmetric, padded zeros counted


class MlpPort(nn.Module):
    """Correct port of keras_cnn.build_mlp."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


class SeparablePort(nn.Module):
    """Correct port of keras_cnn.build_separable."""

    def __init__(self):
        super().__init__()
        self.depthwise = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
        self.pointwise = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(144, 2)

    def forward(self, x):
        x = F.relu(self.pointwise(self.depthwise(x)))
        return self.head(torch.flatten(x, 1))
