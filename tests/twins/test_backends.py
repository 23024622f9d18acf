"""keras_impl/backend.py and torch_impl/backend.py: the default run's Sides, name for name,
numpy in the common (torch) layout, state untouched by training-mode passes; and
torch's two ONNX exporters (TorchScript by default, dynamo as the fallback)."""

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow (as Keras' own tests do)

from keras_impl import backend as kb
from shared.flows.side import Side
from shared.data.config import ModelConfig
from shared.onnx.onnx_check import ONNX_OPSET, ExportError
from shared.verdict.tolerances import FORWARD
from torch_impl import backend as tb
from torch_impl import export as tx

CNN = ModelConfig("cnn", "multilabel", (8, 8, 3), 4)


def _pair(config=CNN):
    k = kb.from_config(config, seed=0)
    t = tb.from_config(config)
    t.set_weights(k.get_weights())
    return k, t


def _x(config=CNN, n=6):
    h, w, c = config.input_shape
    return np.random.default_rng(0).random((n, c, h, w), dtype=np.float32)  # NCHW: the common layout


def test_both_backends_are_sides_name_for_name():
    k, t = _pair()
    assert isinstance(k, Side) and isinstance(t, Side)
    public = lambda cls: {n for n in vars(cls) if not n.startswith("_")}  # noqa: E731
    assert public(kb.KerasBackend) == public(tb.TorchBackend)


def test_layer_outputs_share_names_and_layout():
    k, t = _pair()
    x = _x()
    lk, lt = k.values([x]), t.values([x])
    assert list(lk) == list(lt) == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool", "flatten", "fc1",
                                    "relu3", "head"]
    for name in lk:
        assert lk[name].shape == lt[name].shape, name
        assert np.abs(lk[name] - lt[name]).max() < 1e-5, name
    np.testing.assert_array_equal(lk["head"], k.forward([x])[0])


def test_training_mode_passes_leave_the_moving_statistics_alone():
    k, t = _pair()
    before_k, before_t = k.get_weights(), t.get_weights()
    x = _x()
    k.forward([x], training=True), t.forward([x], training=True)
    k.values([x], training=True), t.values([x], training=True)
    k.loss_and_grads([x], np.zeros((len(x), 4), np.float32)), t.loss_and_grads([x], np.zeros((len(x), 4), np.float32))
    for side, before in ((k, before_k), (t, before_t)):
        after = side.get_weights()
        for n in before:
            np.testing.assert_array_equal(after[n], before[n], err_msg=f"{side.name} {n}")


def test_with_dtype_widens_exactly_and_copy_copies():
    k, t = _pair()
    for side in (k, t):
        wide = side.with_dtype("float64")
        assert wide.dtype == "float64" and side.dtype == "float32"
        for n, v in side.get_weights().items():
            assert wide.get_weights()[n].dtype == np.float64
            np.testing.assert_array_equal(wide.get_weights()[n], v.astype(np.float64))
        twin = side.copy()
        assert twin.model is not side.model
        for n, v in side.get_weights().items():
            np.testing.assert_array_equal(twin.get_weights()[n], v)


def test_planted_fault_survives_reloading_weights():
    k = kb.from_config(CNN, seed=0)
    t = tb.from_config(CNN, fault="conv-kernel")
    w = k.get_weights()
    t.set_weights(w)
    np.testing.assert_array_equal(t.get_weights()["conv1.weight"], w["conv1.weight"].transpose(0, 1, 3, 2))
    clone = t.copy()
    clone.set_weights(w)
    np.testing.assert_array_equal(clone.get_weights()["conv1.weight"], t.get_weights()["conv1.weight"])


def test_torch_export_default_is_torchscript(tmp_path):
    _, t = _pair()
    info = {}
    path = t.export_onnx(tmp_path / "torch.onnx", ONNX_OPSET, info=info)
    assert info["exporter"] == "torchscript" and info["fallback_from"] == {}
    x = _x()
    diff = np.abs(t.onnx_side(path).forward([x])[0] - t.forward([x])[0]).max()
    assert diff <= FORWARD["float32"].allowed(1.0)


def test_torch_export_falls_back_to_dynamo(tmp_path, monkeypatch):
    cfg = ModelConfig("mlp", "binary", (5,), 1)
    _, t = _pair(cfg)
    real = tx._run_exporter

    def broken_torchscript(model, example, tmp, opset, exporter):
        if exporter == "torchscript":
            raise RuntimeError("simulated TorchScript failure")
        return real(model, example, tmp, opset, exporter)

    monkeypatch.setattr(tx, "_run_exporter", broken_torchscript)
    info = {}
    path = t.export_onnx(tmp_path / "torch.onnx", ONNX_OPSET, info=info)
    assert info["exporter"] == "dynamo"
    assert "simulated TorchScript failure" in info["fallback_from"]["torchscript"]
    x = np.random.default_rng(2).random((7, 5), dtype=np.float32)
    diff = np.abs(t.onnx_side(path).forward([x])[0] - t.forward([x])[0]).max()
    assert diff <= FORWARD["float32"].allowed(1.0), diff


def test_torch_export_reports_every_exporter_when_all_fail(tmp_path, monkeypatch):
    _, t = _pair(ModelConfig("mlp", "binary", (5,), 1))

    def broken(model, example, tmp, opset, exporter):
        raise RuntimeError(f"{exporter} broke")

    monkeypatch.setattr(tx, "_run_exporter", broken)
    with pytest.raises(ExportError, match="torchscript broke.*dynamo broke"):
        t.export_onnx(tmp_path / "torch.onnx", ONNX_OPSET)
    assert not (tmp_path / "torch.onnx").exists()
