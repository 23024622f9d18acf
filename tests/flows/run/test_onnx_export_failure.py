"""ONNX is one part of the proof, never a gate (issue 18): when a framework's
own exporter fails or writes an unusable file, `compare.py port` still writes
and proves the port, reports one information row naming the exporter and its
message, compares the other export three ways, and exits on the parity
checks alone. Messages name the output folder, never the atomic temp folder.
Both directions (Keras -> torch, torch -> Keras). The real models (keras.io's
EfficientNetB0, torchvision's RegNet and ViT) are the slow tests at the end."""

from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import json
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import compare
from shared.onnx import onnx_check
from shared.core.atomic import atomic_dir
from shared.core.errors import UsageError

KERAS_NETS = textwrap.dedent('''
    import keras
    from keras import layers

    def gelu_net():
        """ConvMixer's exact GELU: TF computes it with erfc, which neither tf2onnx nor torch's exporter converts."""
        keras.utils.set_random_seed(0)
        i = keras.Input((8, 8, 3), name="image")
        x = layers.Conv2D(4, 3, padding="same", activation="gelu", name="conv")(i)
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        return keras.Model(i, layers.Dense(3, name="head")(x), name="gelu_net")

    def relu_net():
        keras.utils.set_random_seed(0)
        i = keras.Input((8, 8, 3), name="image")
        x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(i)
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        return keras.Model(i, layers.Dense(3, activation="softmax", name="head")(x), name="relu_net")

    def efficientnet_b0():
        return keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=5)
''')

TORCH_NETS = textwrap.dedent('''
    import torch
    from torch import nn

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean([2, 3]))

    def _torchvision():
        from tests.tv import load_torchvision
        return load_torchvision()

    def vit_small():
        """tests/reverse_families.py's ViT, its zero-initialised head randomised so that the logits are not all 0."""
        from tests.reverse_families import build
        module, _ = build(_torchvision(), "vit_small")
        with torch.no_grad():
            module.heads.head.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
        return module

    def regnet():
        from tests.reverse_families import build
        return build(_torchvision(), "regnet_x_400mf")[0]
''')


def _port(*args):
    """compare.py port in this process: (exit code, stdout, stderr)."""
    from helpers import run_cli

    return run_cli("port", *args)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("nets")
    (d / "knets.py").write_text(KERAS_NETS)
    (d / "tnets.py").write_text(TORCH_NETS)
    return d


def _export_rows(report: dict) -> list:
    return [c for c in report["checks"] if c["detail"].get("export_failed")]


def _no_temp_names(*texts) -> None:
    for t in texts:
        assert ".tmp" not in t, t


# ---- the mechanism alone (no framework) -------------------------------------
def _side(name, out, fail=None, ort=None):
    """A side whose export raises `fail`, or whose onnxruntime output is `ort`."""
    def export():
        raise fail
    return onnx_check.OnnxSide(name, out, export if fail else (lambda: Path("unused")), lambda p: ort)


def test_proven_exports_one_failure_compares_three_ways(monkeypatch, tmp_path):
    """keras' exporter fails: one info row (its exporter and message), then the
    three edges of keras, torch, onnx(torch), each a real comparison."""
    monkeypatch.setattr(onnx_check, "_export_and_run", lambda s: s.run(s.export()))
    k = np.array([[0.1, 0.9, -0.3]], np.float32)
    t = k + np.float32(2e-7)
    ort_t = k - np.float32(1e-7)
    err = onnx_check.ExportError(f"keras ONNX export failed for net: No Op registered for Erfc in {tmp_path}/w\nmore")
    rows = onnx_check.proven_exports([_side("keras", k, fail=err), _side("torch", t, ort=ort_t)], model="net",
                                     shown={tmp_path: "ported/"}, task="regression")
    assert [r.check for r in rows] == ["onnx export keras (tf2onnx (keras Model.export))", "onnx logits keras vs torch",
                                       "onnx logits keras vs onnx(torch)", "onnx logits torch vs onnx(torch)"]
    row = rows[0]
    assert row.info and not row.passed
    assert row.detail["error"] == "keras ONNX export failed for net: No Op registered for Erfc in ported//w"
    assert row.detail["compared"] == ["keras", "torch", "onnx(torch)"]
    assert row.where.endswith("still compared keras vs torch vs onnx(torch) in onnxruntime (3 edges)")
    assert rows[1].max_abs_diff == pytest.approx(2e-7, rel=0.05) and rows[1].passed
    assert rows[3].max_abs_diff == pytest.approx(3e-7, rel=0.05) and rows[3].passed
    (note,) = onnx_check.export_notes(rows)
    assert note == ("note: ONNX export of keras (tf2onnx (keras Model.export)) failed, not a parity failure: keras ONNX "
                    "export failed for net: No Op registered for Erfc in ported//w; still compared keras vs torch vs "
                    "onnx(torch) in onnxruntime (3 edges)")


def test_proven_exports_both_fail_compares_nothing_more(monkeypatch):
    monkeypatch.setattr(onnx_check, "_export_and_run", lambda s: s.run(s.export()))
    k = np.zeros((2, 3), np.float32)
    rows = onnx_check.proven_exports([_side("keras", k, fail=onnx_check.ExportError("a")),
                                      _side("torch", k, fail=onnx_check.OnnxModelError("b"))], model="m", task="multiclass")
    assert [r.detail["error"] for r in rows] == ["a", "b"]
    assert all(r.info and r.where.endswith("no ONNX file left to compare") for r in rows)


def test_proven_exports_keeps_usage_errors():
    """A bad opset is the user's error (exit 2), not an exporter failure."""
    k = np.zeros((1, 2), np.float32)
    with pytest.raises(onnx_check.UnsupportedOpsetError):
        onnx_check.proven_exports([_side("keras", k, fail=onnx_check.UnsupportedOpsetError("opset 3")), _side("torch", k, ort=k)],
                                  model="m", task="regression")


def test_atomic_dir_errors_name_the_final_folder(tmp_path):
    out = tmp_path / "ported"
    with pytest.raises(UsageError) as info:
        with atomic_dir(out) as work:
            raise UsageError(f"cannot read {work / 'keras.onnx'}: broken")
    assert str(info.value) == f"cannot read {out / 'keras.onnx'}: broken"
    assert not out.exists() and not list(tmp_path.iterdir())


# ---- Keras -> torch ----------------------------------------------------------
def test_keras_gelu_keras_exporter_fails_port_still_written(nets, tmp_path):
    """Exact GELU (ConvMixer): TF computes it with erfc and tf2onnx has no Erfc.
    Exit 0, the port written and proven, one info row; model.py's erfc exports
    (1 - Erf) and torch.onnx is compared three ways."""
    out = tmp_path / "o"
    code, stdout, stderr = _port(f"{nets / 'knets.py'}:gelu_net", "--out", out, "--steps", "1")
    assert code == 0, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.py", "report.json", "report.md", "torch.onnx",
                                                     "weights.safetensors"]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["counts"]["failed"] == 0 and report["artifacts"]["onnx"] == ["torch.onnx"]
    (row,) = _export_rows(report)
    assert row["detail"]["exporter"] == "tf2onnx (keras Model.export)"
    assert row["detail"]["error"] == "keras ONNX export failed for gelu_net: No Op registered for Erfc with domain_version of 17"
    assert row["detail"]["compared"] == ["keras", "torch", "onnx(torch)"]
    onnx_rows = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert len(onnx_rows) == 3 and all(c["passed"] and 0 < c["max_abs_diff"] < 1e-6 for c in onnx_rows[1:])
    f64 = [c for c in report["checks"] if c["dtype"] == "float64" and c["check"].startswith("node ")]
    assert len(f64) == 4 and max(c["max_rel_diff"] for c in f64) < 1e-12  # the port itself is proven
    notes = [line for line in stdout.splitlines() if line.startswith("note: ONNX export")]
    assert notes == ["note: ONNX export of keras (tf2onnx (keras Model.export)) failed, not a parity failure: keras ONNX "
                     "export failed for gelu_net: No Op registered for Erfc with domain_version of 17; still compared "
                     "keras vs torch vs onnx(torch) in onnxruntime (3 edges)"]
    assert "onnx export keras" in (out / "report.md").read_text()
    _no_temp_names(stdout, stderr, (out / "report.json").read_text())


def test_keras_to_torch_torch_exporter_fails_three_way(nets, tmp_path, monkeypatch):
    """torch.onnx.export raises naming its temporary file: exit 0, keras.onnx
    compared three ways, the message names the output folder."""
    def broken(model, args, f, **kw):
        raise RuntimeError(f"cannot convert {f}: the exporter gave up\nsecond line")

    monkeypatch.setattr(torch.onnx, "export", broken)
    out = tmp_path / "o"
    code, stdout, stderr = _port(f"{nets / 'knets.py'}:relu_net", "--out", out, "--steps", "1")
    assert code == 0, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == ["keras.onnx", "model.py", "report.json", "report.md",
                                                     "weights.safetensors"]
    report = json.loads((out / "report.json").read_text())
    (row,) = _export_rows(report)
    assert row["detail"]["error"] == f"torch ONNX export failed for relu_net: cannot convert {out / 'torch.onnx'}: the exporter gave up"
    assert row["detail"]["compared"] == ["keras", "torch", "onnx(keras)"]
    onnx_rows = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert [c["check"] for c in onnx_rows] == ["onnx logits keras vs torch", "onnx logits keras vs onnx(keras)",
                                               "onnx logits torch vs onnx(keras)"]
    assert all(c["passed"] and c["max_abs_diff"] < 1e-6 for c in onnx_rows)
    assert len([c for c in report["checks"] if c["check"].startswith("onnx predictions")]) == 3  # softmax head: multiclass
    assert report["artifacts"]["onnx"] == ["keras.onnx"]
    _no_temp_names(stdout, stderr, (out / "report.json").read_text())


# ---- torch -> Keras ----------------------------------------------------------
def _two_input_onnx(path: Path) -> Path:
    """A valid ONNX file with two inputs (what Keras' export gave EfficientNetB0: three)."""
    h = onnx.helper
    x, y = (h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["batch", 16, 16, 3]) for n in ("input", "extra"))
    z = h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 16, 16, 3])
    graph = h.make_graph([h.make_node("Add", ["input", "extra"], ["logits"])], "g", [x, y], [z])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_torch_to_keras_unusable_keras_onnx_three_way(nets, tmp_path, monkeypatch):
    """Keras' file takes two inputs: onnxruntime refuses it, the row names the
    output folder (not the atomic one), torch.onnx still compared three ways."""
    from keras_impl.side import KerasSide

    monkeypatch.setattr(KerasSide, "export_onnx", lambda self, path, opset=None, config=None: _two_input_onnx(path))
    out = tmp_path / "o"
    code, stdout, stderr = _port(f"{nets / 'tnets.py'}:TinyCNN", "--input-shape", "3,16,16", "--out", out)
    assert code == 0, stdout + stderr
    assert {p.name for p in out.iterdir()} == {"model.keras", "model_keras.py", "model.weights.h5", "report.json",
                                               "report.md", "torch.onnx"}
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["artifacts"]["onnx"] == ["torch.onnx"]
    (row,) = _export_rows(report)
    assert row["detail"]["exporter"] == "tf2onnx (keras Model.export)"
    assert row["detail"]["error"] == f"{str(out / 'keras.onnx')!r}: expected one input, the model has 2"
    onnx_rows = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert [c["check"] for c in onnx_rows] == ["onnx logits keras vs torch", "onnx logits keras vs onnx(torch)",
                                               "onnx logits torch vs onnx(torch)"]
    assert all(c["passed"] and c["max_abs_diff"] < 1e-5 for c in onnx_rows)
    note = [line for line in stdout.splitlines() if line.startswith("note: ONNX export of keras")]
    assert len(note) == 1 and "expected one input, the model has 2" in note[0]
    _no_temp_names(stdout, stderr, (out / "report.json").read_text(), (out / "report.md").read_text())


def test_torch_export_names_the_users_model_not_cnn_multiclass(nets, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("no")))
    out = tmp_path / "o"
    code, stdout, stderr = _port(f"{nets / 'tnets.py'}:TinyCNN", "--input-shape", "3,16,16", "--out", out, "--quiet")
    assert code == 0, stdout + stderr
    (row,) = _export_rows(json.loads((out / "report.json").read_text()))
    assert row["detail"]["error"] == "torch ONNX export failed for TinyCNN: no"
    assert "cnn_multiclass" not in stdout + stderr


def test_multihead_attention_exports_without_the_fast_path(tmp_path):
    """nn.MultiheadAttention in eval mode under no_grad takes the fused fast
    path (aten::_native_multi_head_attention), which TorchScript cannot export;
    torch_impl.export switches it off for the export only."""
    from shared.data.config import ModelConfig
    from torch_impl.export import export_onnx

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0].mean(1)

    m = Attn().eval()
    x = torch.randn(3, 5, 8)
    cfg = ModelConfig(model="mlp", task="regression", input_shape=(40,), num_outputs=8)  # names only: example= gives the input
    path = export_onnx(m, cfg, tmp_path / "a.onnx", model_name="Attn", example=x[:2])
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    assert "Softmax" in onnx_check.check_model(path)["ops"]
    with torch.no_grad():
        want = m(x).numpy()
    got = onnx_check.run_onnx(path, x.numpy())
    assert np.abs(got - want).max() < 1e-6 and np.abs(want).max() > 1e-2


# ---- the real models (slow: 30 s to minutes each on 2 cores) ------------------
def _real_port(nets, spec, out, *extra):
    code, stdout, stderr = _port(spec, "--out", out, *extra)
    report = json.loads((out / "report.json").read_text())
    _no_temp_names(stdout, stderr, (out / "report.json").read_text())
    return code, stdout, report


@pytest.mark.slow
def test_efficientnet_b0_keras_to_torch_written_despite_keras_export(nets, tmp_path):
    code, stdout, report = _real_port(nets, f"{nets / 'knets.py'}:efficientnet_b0", tmp_path / "o", "--steps", "1")
    assert code == 0 and report["passed"], stdout
    rows = _export_rows(report)
    assert [r["detail"]["exporter"] for r in rows] == ["tf2onnx (keras Model.export)"]
    assert "the model has 3 inputs, 1 given" in rows[0]["detail"]["error"]
    onnx_rows = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert len(onnx_rows) == 3 and all(c["passed"] for c in onnx_rows)
    assert (tmp_path / "o" / "model.py").is_file() and report["artifacts"]["onnx"] == ["torch.onnx"]


@pytest.mark.slow
def test_torchvision_vit_torch_to_keras_exports_both(nets, tmp_path):
    code, stdout, report = _real_port(nets, f"{nets / 'tnets.py'}:vit_small", tmp_path / "o", "--input-shape", "3,32,32")
    assert code == 0 and report["passed"], stdout
    assert _export_rows(report) == [] and report["artifacts"]["onnx"] == ["keras.onnx", "torch.onnx"]
    onnx_rows = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert len(onnx_rows) == 6 and all(c["passed"] for c in onnx_rows)
    assert max(c["max_abs_diff"] for c in onnx_rows) > 0  # real logits (the head is randomised), not all zeros


@pytest.mark.slow
def test_torchvision_regnet_torch_to_keras(nets, tmp_path):
    code, stdout, report = _real_port(nets, f"{nets / 'tnets.py'}:regnet", tmp_path / "o", "--input-shape", "3,64,64")
    assert code == 0 and report["passed"], stdout
    onnx_rows = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert onnx_rows and all(c["passed"] for c in onnx_rows)
    for r in _export_rows(report):  # a failing Keras export is a row naming tf2onnx, with the torch export still compared
        assert r["detail"]["exporter"] == "tf2onnx (keras Model.export)" and len(onnx_rows) == 3


def test_out_of_memory_in_an_exporter_is_exit_4_not_an_export_row(nets, tmp_path, monkeypatch):
    """Out of memory is never turned into an exporter failure (an information row, exit 0): exit 4, nothing written."""
    def oom(model, args, f, **kw):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9000000000 bytes")

    monkeypatch.setattr(torch.onnx, "export", oom)
    out = tmp_path / "o"
    code, stdout, stderr = _port(f"{nets / 'knets.py'}:relu_net", "--out", out, "--steps", "1")
    assert code == 4, stdout + stderr
    assert "ran out of memory" in stderr and not out.exists()


def test_torch_exporter_native_dump_stays_out_of_the_terminal(tmp_path, capfd):
    """torch's TorchScript exporter prints "Torch IR graph at exception" from C++ to file
    descriptor 1 when it fails (VGG's adaptive_avg_pool2d at 64x64): it goes into the
    failure's log, never to the user's terminal."""
    from shared.onnx.onnx_export import ExportError, atomic_export

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(3)).eval()

    def write(f):
        torch.onnx.export(module, (torch.randn(1, 3, 6, 6),), f, dynamo=False, opset_version=17)

    with pytest.raises(ExportError) as e:
        atomic_export(tmp_path / "m.onnx", write, framework="torch", model_name="pool_net")
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err, (out + err)[:500]
    assert "Torch IR graph at exception" in e.value.log and "pool_net" in str(e.value)
