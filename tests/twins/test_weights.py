"""Portable weights (safetensors in PyTorch layout + JSON sidecar): both
directions through a file, bitwise round trips, and every refusal naming the
tensor or field at fault while leaving the model untouched."""

import torch  # noqa: I001  (torch before TensorFlow/Keras, as Keras' own tests do)

import json
import os

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from helpers import pair_dtype_params, randomise_bn
from keras_impl import models as kmodels
from keras_impl import weights as kweights
from shared.data.config import ModelConfig, parameter_spec
from shared.core.errors import WeightsError
from shared.data.portable import FORMAT, sidecar_path
from torch_impl import models as tmodels
from torch_impl import weights as tweights

PARAMS = pair_dtype_params()


# ---- the two sides behind one interface ------------------------------------

class KerasSide:
    name = "keras"
    build = staticmethod(kmodels.build_model)
    save = staticmethod(kweights.save_weights)
    load = staticmethod(kweights.load_weights)
    to_portable = staticmethod(kweights.to_portable)
    from_portable = staticmethod(kweights.from_portable)

    @staticmethod
    def snapshot(model) -> dict:
        """Every Keras variable, native layout, by path."""
        return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}


class TorchSide:
    name = "torch"
    build = staticmethod(tmodels.build_model)
    save = staticmethod(tweights.save_weights)
    load = staticmethod(tweights.load_weights)
    to_portable = staticmethod(tweights.to_portable)
    from_portable = staticmethod(tweights.from_portable)

    @staticmethod
    def snapshot(model) -> dict:
        """The whole state_dict (num_batches_tracked included)."""
        return {n: t.detach().numpy().copy() for n, t in model.state_dict().items()}


SIDES = [pytest.param(KerasSide, id="keras"), pytest.param(TorchSide, id="torch")]


def assert_bitwise_equal(a: dict, b: dict) -> None:
    """Same names, dtypes, shapes and bytes (np.array_equal; NaN would fail)."""
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), f"{name}: max |diff| {np.max(np.abs(a[name] - b[name]))}"


def assert_some_differ(a: dict, b: dict) -> None:
    """Precondition: the destination's own init differs from the source, so an
    equality after loading is the load's doing."""
    assert any(not np.array_equal(a[n], b[n]) for n in a if n in b)


def build_randomised(side, config, seed):
    """A model from its own initialiser with BatchNorm gamma/beta/stats randomised."""
    model = side.build(config, seed=seed)
    side.from_portable(model, config, randomise_bn(side.to_portable(model, config), config, seed=seed + 100))
    return model


# ---- both directions and the round trips, every pair x dtype -----------------

@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_keras_to_torch_through_file(tmp_path, pair, dtype):
    config = pair.config(dtype)
    k = build_randomised(KerasSide, config, seed=0)
    t = tmodels.build_model(config, seed=1)
    assert_some_differ(kweights.to_portable(k, config), tweights.to_portable(t, config))
    path = tmp_path / "model.safetensors"
    kweights.save_weights(k, config, path)
    tweights.load_weights(t, config, path)
    assert_bitwise_equal(tweights.to_portable(t, config), kweights.to_portable(k, config))
    # The file itself holds exactly the spec, in PyTorch layout.
    on_disk = load_file(path)
    assert {n: a.shape for n, a in on_disk.items()} == parameter_spec(config)
    assert_bitwise_equal({n: on_disk[n] for n in parameter_spec(config)}, tweights.to_portable(t, config))


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_torch_to_keras_through_file(tmp_path, pair, dtype):
    config = pair.config(dtype)
    t = build_randomised(TorchSide, config, seed=0)
    k = kmodels.build_model(config, seed=1)
    assert_some_differ(tweights.to_portable(t, config), kweights.to_portable(k, config))
    path = tmp_path / "model.safetensors"
    tweights.save_weights(t, config, path)
    kweights.load_weights(k, config, path)
    assert_bitwise_equal(kweights.to_portable(k, config), tweights.to_portable(t, config))


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_round_trip_keras_torch_keras_is_bitwise(tmp_path, pair, dtype):
    config = pair.config(dtype)
    k1 = build_randomised(KerasSide, config, seed=3)
    t = tmodels.build_model(config, seed=4)
    k2 = kmodels.build_model(config, seed=5)
    assert_some_differ(KerasSide.snapshot(k1), KerasSide.snapshot(k2))
    kweights.save_weights(k1, config, tmp_path / "a.safetensors")
    tweights.load_weights(t, config, tmp_path / "a.safetensors")
    tweights.save_weights(t, config, tmp_path / "b.safetensors")
    kweights.load_weights(k2, config, tmp_path / "b.safetensors")
    # Native Keras variables (HWIO kernels, (H,W,C)-ordered fc1), not the port.
    assert_bitwise_equal(KerasSide.snapshot(k2), KerasSide.snapshot(k1))


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_round_trip_torch_keras_torch_is_bitwise(tmp_path, pair, dtype):
    config = pair.config(dtype)
    t1 = build_randomised(TorchSide, config, seed=3)
    k = kmodels.build_model(config, seed=4)
    t2 = tmodels.build_model(config, seed=5)
    assert_some_differ(TorchSide.snapshot(t1), TorchSide.snapshot(t2))
    tweights.save_weights(t1, config, tmp_path / "a.safetensors")
    kweights.load_weights(k, config, tmp_path / "a.safetensors")
    kweights.save_weights(k, config, tmp_path / "b.safetensors")
    tweights.load_weights(t2, config, tmp_path / "b.safetensors")
    want = {n: a for n, a in TorchSide.snapshot(t1).items() if not n.endswith("num_batches_tracked")}
    got = {n: a for n, a in TorchSide.snapshot(t2).items() if not n.endswith("num_batches_tracked")}
    assert_bitwise_equal(got, want)


# ---- refusals ---------------------------------------------------------------

# A tiny cnn: every kind of tensor (conv, BN stats, flattened fc1) in ~1k numbers.
TINY = ModelConfig("cnn", "multilabel", (8, 8, 3), 3, conv_channels=(2, 4), dense_units=5)


@pytest.fixture
def saved(tmp_path):
    """A valid TINY file written by Keras; returns its path."""
    path = tmp_path / "model.safetensors"
    kweights.save_weights(build_randomised(KerasSide, TINY, seed=0), TINY, path)
    return path


def rewrite_tensors(path, edit) -> None:
    """Apply `edit(dict)` to the tensors of `path` and write them back (sidecar kept)."""
    tensors = dict(load_file(path))
    edit(tensors)
    save_file(tensors, path)


def assert_refused(side, config, path, message):
    """Loading `path` raises WeightsError matching `message`; weights unchanged."""
    model = side.build(config, seed=7)
    before = side.snapshot(model)
    with pytest.raises(WeightsError, match=message):
        side.load(model, config, path)
    assert_bitwise_equal(side.snapshot(model), before)


@pytest.mark.parametrize("side", SIDES)
def test_refuses_missing_tensor(saved, side):
    rewrite_tensors(saved, lambda t: t.pop("bn2.running_var"))
    assert_refused(side, TINY, saved, r"missing tensor 'bn2.running_var' \(expected shape \(4,\)\)")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_unexpected_tensor(saved, side):
    # What a raw torch state_dict save would add.
    rewrite_tensors(saved, lambda t: t.update({"bn1.num_batches_tracked": np.array(3, dtype=np.int64)}))
    assert_refused(side, TINY, saved, r"unexpected tensor 'bn1.num_batches_tracked'")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_wrong_shape(saved, side):
    # fc1 left in Keras layout (in, out) = (2*2*4, 5) instead of torch (5, 16).
    rewrite_tensors(saved, lambda t: t.update({"fc1.weight": np.ascontiguousarray(t["fc1.weight"].T)}))
    assert_refused(side, TINY, saved, r"tensor 'fc1.weight' has shape \(16, 5\), expected \(5, 16\)")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_wrong_tensor_dtype(saved, side):
    # float64 tensors under a float32 sidecar: copy_ would silently cast.
    rewrite_tensors(saved, lambda t: t.update({n: a.astype(np.float64) for n, a in t.items()}))
    assert_refused(side, TINY, saved, r"tensor 'conv1.weight' has dtype float64, expected float32")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_float64_file_into_float32_model(tmp_path, side):
    path = tmp_path / "model.safetensors"
    f64 = TINY.replace(dtype="float64")
    side.save(side.build(f64, seed=0), f64, path)
    assert_refused(side, TINY, path, r"model config differs .*'dtype': \('float64', 'float32'\)")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_garbage_bytes(saved, side):
    saved.write_bytes(b"\x00garbage, not a safetensors header" * 4)
    assert_refused(side, TINY, saved, r"model.safetensors: not a safetensors file")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_missing_sidecar(saved, side):
    sidecar_path(saved).unlink()
    assert_refused(side, TINY, saved, r"sidecar model.json is missing")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_missing_weights_file(tmp_path, side):
    assert_refused(side, TINY, tmp_path / "nothing.safetensors", r"nothing.safetensors: no such weights file")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_sidecar_for_another_task(saved, side):
    # Same shapes (3 outputs), so only the sidecar can tell.
    other = TINY.replace(task="regression")
    assert_refused(side, other, saved, r"written for task='multilabel', but the model to load into has task='regression'")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_sidecar_for_another_model(tmp_path, side):
    path = tmp_path / "model.safetensors"
    mlp = ModelConfig("mlp", "multilabel", (12,), 3)
    side.save(side.build(mlp, seed=0), mlp, path)
    assert_refused(side, TINY, path, r"written for model='mlp', but the model to load into has model='cnn'")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_other_config_same_task_and_model(saved, side):
    other = TINY.replace(dense_units=6)
    assert_refused(side, other, saved, r"model config differs .*'dense_units': \(5, 6\)")


@pytest.mark.parametrize("side", SIDES)
def test_refuses_sidecar_of_another_format(saved, side):
    side_file = sidecar_path(saved)
    side_file.write_text(json.dumps({**json.loads(side_file.read_text()), "format": "something-else"}))
    assert_refused(side, TINY, saved, r"not a keras-torch-parity/portable-weights sidecar \(format='something-else'\)")


@pytest.mark.parametrize("side", SIDES)
def test_from_portable_refuses_before_assigning(side):
    """The in-memory path checks every tensor before it sets any: a bad last
    tensor must not leave the first ones overwritten."""
    model = build_randomised(side, TINY, seed=0)
    before = side.snapshot(model)
    tensors = randomise_bn(side.to_portable(side.build(TINY, seed=9), TINY), TINY, seed=9)
    tensors["bn2.running_var"] = tensors["bn2.running_var"][:2]  # last in spec order
    with pytest.raises(WeightsError, match=r"tensor 'bn2.running_var' has shape \(2,\), expected \(4,\)"):
        side.from_portable(model, TINY, tensors)
    assert_bitwise_equal(side.snapshot(model), before)


# ---- sidecar and atomic writes -----------------------------------------------

@pytest.mark.parametrize("side", SIDES)
def test_sidecar_content(tmp_path, side):
    path = tmp_path / "model.safetensors"
    classes = ["cat", "dog", "person"]
    side.save(side.build(TINY, seed=0), TINY, path, classes=classes)
    sidecar = json.loads(sidecar_path(path).read_text())
    version = keras.__version__ if side is KerasSide else torch.__version__
    assert sidecar["format"] == FORMAT
    assert sidecar["task"] == "multilabel"
    assert sidecar["model"] == "cnn"
    assert sidecar["config"] == TINY.to_dict()
    assert ModelConfig.from_dict(sidecar["config"]) == TINY
    assert sidecar["classes"] == classes
    assert sidecar["dtype"] == "float32"
    assert sidecar["layout"] == "pytorch"
    assert sidecar["framework"] == side.name
    assert sidecar["framework_version"] == version
    assert sidecar["tensors"] == {n: list(s) for n, s in parameter_spec(TINY).items()}
    # load_weights hands the sidecar back.
    assert side.load(side.build(TINY), TINY, path) == sidecar


@pytest.mark.parametrize("side", SIDES)
def test_save_leaves_no_temporary_files(tmp_path, side):
    path = tmp_path / "model.safetensors"
    model = side.build(TINY, seed=0)
    side.save(model, TINY, path)
    side.save(model, TINY, path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    """A save that dies before its rename leaves the previous file byte-identical
    and no temporary behind (writes go to a sibling, then os.replace)."""
    path = tmp_path / "model.safetensors"
    kweights.save_weights(kmodels.build_model(TINY, seed=0), TINY, path)
    old = (path.read_bytes(), sidecar_path(path).read_bytes())

    def no_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="simulated"):
        kweights.save_weights(kmodels.build_model(TINY, seed=1), TINY, path)
    monkeypatch.undo()
    assert (path.read_bytes(), sidecar_path(path).read_bytes()) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
