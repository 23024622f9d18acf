"""PyTorch -> Keras (`compare.py port TORCH_MODEL --input-shape`): a hand-written
torch CNN read by torch.fx into the neutral graph, written as model_keras.py,
proven per node, in float32 and float64, with gradients; the saved model.keras
loads with plain keras.models.load_model; Keras -> torch -> Keras round trip.
Independent of torchvision (tests/flows/reverse/test_reverse_families.py has those)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
nn = torch.nn
F = torch.nn.functional

import compare  # noqa: E402
from shared.core.errors import UsageError  # noqa: E402
from shared.verdict.tolerances import for_check  # noqa: E402

CNN_SOURCE = '''
import torch
from torch import nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    """conv padding=1, BN, relu, maxpool, adaptive pool, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16, eps=1e-3, momentum=0.01)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16 * 4 * 4, 10)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        y = torch.relu(self.bn2(self.conv2(x)))
        y = y + F.hardswish(self.dw(y))
        g = torch.cat([self.gap(y), self.gap(y * torch.sigmoid(y))], dim=1).flatten(1)
        return self.fc(torch.flatten(y, 1)) + self.head(g)


class Shuffle(nn.Module):
    """ShuffleNet's channel shuffle (x.size() arithmetic, view, transpose, chunk)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)
        x1, x2 = x.chunk(2, dim=1)
        x = torch.cat((x2, F.relu(x1)), dim=1)
        return self.fc(x.mean([2, 3]))


class Unsupported(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)
'''


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("torch_models") / "tiny_torch_models.py"
    p.write_text(CNN_SOURCE)
    return p


def _randomise_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _load(cnn_file, name):
    from torch_impl.port import load_module

    torch.manual_seed(0)
    m = load_module(f"{cnn_file}:{name}")
    _randomise_bn(m)
    return m


def _worst(checks, dtype, prefix):
    rows = [c for c in checks if c.dtype == dtype and c.check.startswith(prefix)]
    assert rows, f"no {prefix} rows for {dtype}"
    return max(rows, key=lambda c: c.max_abs_diff)


@pytest.mark.parametrize("name,shape", [("SmallCNN", (3, 16, 16)), ("Shuffle", (4, 6, 6))])
def test_reverse_port_passes_per_node_and_gradients(cnn_file, name, shape):
    m = _load(cnn_file, name)
    res = compare.reverse_port_checks(m, shape, batch=3)
    failed = [c for c in res.checks if not c.passed]
    assert not failed, failed[:3]
    nodes = {c.check for c in res.checks if c.check.startswith("node ")}
    assert len(nodes) >= 8 if name == "SmallCNN" else len(nodes) >= 5
    for dtype, bound in (("float32", 1e-5), ("float64", 1e-12)):
        worst = _worst(res.checks, dtype, "node ")
        assert 0 <= worst.max_abs_diff < bound, worst
        grads = [c for c in res.checks if c.dtype == dtype and c.check.startswith("grad ")]
        assert len(grads) == sum(p.requires_grad for p in m.parameters())
        assert max(c.max_abs_diff for c in grads) < for_check("gradient", dtype).allowed(1.0)
    # The float32 model genuinely differs a little from torch (different kernels), float64 hardly.
    assert _worst(res.checks, "float32", "node ").max_abs_diff > _worst(res.checks, "float64", "node ").max_abs_diff


def test_model_keras_source_is_readable_and_standalone(cnn_file):
    m = _load(cnn_file, "SmallCNN")
    model, source, graph = compare.torch_to_keras(m, (3, 16, 16))
    assert "import torch" not in source and "keras_impl" not in source
    assert "layers.Conv2D(8, (3, 3), padding='same', name='conv1')" in source  # symmetric pad 1, stride 1 = TF same
    assert "layers.ZeroPadding2D(((1, 1), (1, 1)), name='conv2_pad')" in source  # stride 2: TF would pad (0, 1)
    assert "DepthwiseConv2D" in source and "momentum=0.99, epsilon=0.001" in source
    assert "constant_values=float('-inf')" in source  # max pool pads with -inf, never zeros
    assert model.input_shape == (None, 16, 16, 3)


def test_cli_writes_loadable_model_keras(cnn_file, tmp_path):
    out = tmp_path / "out"
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    m = _load(cnn_file, "SmallCNN")
    torch.save(m.state_dict(), weights)
    rc = compare.main(["port", f"{cnn_file}:SmallCNN", "--input-shape", "3,16,16", "--torch-weights", str(weights),
                       "--out", str(out), "--quiet"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"model.keras", "model_keras.py", "model.weights.h5", "report.json", "report.md",
                                               "keras.onnx", "torch.onnx"}
    report = json.loads((out / "report.json").read_text())
    assert report["passed"]
    load = [c for c in report["checks"] if c["check"].startswith("plain keras.models.load_model")]
    assert len(load) == 1 and load[0]["passed"] and load[0]["max_abs_diff"] <= 2e-6
    onnx = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert len(onnx) == 6 and all(c["passed"] and c["max_abs_diff"] < 1e-5 for c in onnx)
    train = [c for c in report["checks"] if c["check"].startswith("training loss")]
    assert len(train) == 1 and train[0]["dtype"] == "float64" and train[0]["max_abs_diff"] < 1e-10


def test_unsupported_op_exits_2_naming_op_and_source_line(cnn_file, tmp_path, capsys):
    rc = compare.main(["port", f"{cnn_file}:Unsupported", "--input-shape", "3,4,4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "function.cumsum" in err and "tiny_torch_models.py:" in err and "torch.cumsum(x, dim=1)" in err
    assert not (tmp_path / "o").exists()


def test_bad_torch_model_spec_is_usage_error(cnn_file):
    from torch_impl.port import load_module

    with pytest.raises(UsageError, match="no class or function 'Nope'"):
        load_module(f"{cnn_file}:Nope")
