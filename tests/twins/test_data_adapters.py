"""keras_impl/data.py and torch_impl/data.py replay the shared batch plan:
same order, same bytes (fingerprints), the documented dtypes and layouts."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow/Keras, as Keras' own tests do
keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402

from keras_impl import data as kdata  # noqa: E402
from shared.data.batches import batch_fingerprints, batch_plan, cast_batches, make_batches  # noqa: E402
from torch_impl import data as tdata  # noqa: E402


def _image_batches(y_kind: str, n: int = 20, batch: int = 4, steps: int = 7):
    rng = np.random.default_rng(0)
    x = rng.random((n, 6, 5, 3), dtype=np.float32)  # NHWC, H != W to catch a wrong permute
    if y_kind == "multiclass":
        y = rng.integers(0, 10, n).astype(np.int64)
    elif y_kind == "multilabel":
        y = (rng.random((n, 4)) > 0.5).astype(np.float32)
    else:
        y = rng.standard_normal((n, 2)).astype(np.float32)
    return make_batches(x, y, batch_plan(n, batch, steps, seed=3))


def _tabular_batches():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((15, 8)).astype(np.float32)
    y = rng.integers(0, 2, (15, 1)).astype(np.float32)
    return make_batches(x, y, batch_plan(15, 5, 4, seed=0))


@pytest.mark.parametrize("y_kind", ["multiclass", "multilabel", "regression"])
def test_both_feeds_match_the_plan_float32(y_kind):
    batches = _image_batches(y_kind)
    want = batch_fingerprints(batches)
    assert kdata.fingerprints_seen(kdata.to_keras_batches(batches)) == want
    assert tdata.fingerprints_seen(tdata.to_torch_batches(batches)) == want


def test_tabular_feeds_match():
    batches = _tabular_batches()
    want = batch_fingerprints(batches)
    assert kdata.fingerprints_seen(kdata.to_keras_batches(batches)) == want
    assert tdata.fingerprints_seen(tdata.to_torch_batches(batches)) == want


@pytest.mark.parametrize("y_kind", ["multiclass", "regression"])
def test_float64_feeds_match_each_other(y_kind):
    batches = _image_batches(y_kind)
    want = batch_fingerprints(cast_batches(batches, "float64"))
    k = kdata.fingerprints_seen(kdata.to_keras_batches(batches, dtype="float64"))
    t = tdata.fingerprints_seen(tdata.to_torch_batches(batches, dtype="float64"))
    assert k == t == want
    assert want != batch_fingerprints(batches)


def test_keras_layout_order_and_dtypes():
    batches = _image_batches("multiclass")
    feed = kdata.to_keras_batches(batches, dtype="float64")
    assert isinstance(feed, keras.utils.PyDataset) and len(feed) == 7
    for i, (x_ref, y_ref) in enumerate(batches):
        x, y = feed[i]
        assert x.shape == (4, 6, 5, 3) and x.dtype == np.float64  # NHWC kept
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    with pytest.raises(IndexError, match="batch index 7 out of range for 7 batches"):
        feed[7]


def test_torch_layout_order_and_dtypes():
    batches = _image_batches("multilabel")
    loader = tdata.to_torch_batches(batches)
    assert isinstance(loader, torch.utils.data.DataLoader) and len(loader) == 7
    seen = list(loader)
    assert len(seen) == 7
    for (x, y), (x_ref, y_ref) in zip(seen, batches):
        assert tuple(x.shape) == (4, 3, 6, 5) and x.dtype == torch.float32  # NCHW
        assert x.is_contiguous() and y.dtype == torch.float32
        np.testing.assert_array_equal(x.numpy(), np.transpose(x_ref, (0, 3, 1, 2)))
        np.testing.assert_array_equal(y.numpy(), y_ref)
    x64, y64 = tdata.TorchBatches(_image_batches("multiclass"), dtype="float64")[0]
    assert x64.dtype == torch.float64 and y64.dtype == torch.int64


def test_feeds_do_not_alias_the_inputs():
    batches = _image_batches("regression")
    feed, loader = kdata.to_keras_batches(batches), tdata.to_torch_batches(batches)
    want = batch_fingerprints(batches)
    batches[0][0][:] = 0.0  # mutate the caller's arrays afterwards
    feed[1][0][:] = 0.0  # and what a consumer got back
    next(iter(loader))[0].zero_()
    assert kdata.fingerprints_seen(feed) == want
    assert tdata.fingerprints_seen(loader) == want


def test_modules_mirror_each_other():
    rename = {"KerasBatches": "TorchBatches", "to_keras_batches": "to_torch_batches"}
    assert [rename.get(n, n) for n in kdata.__all__] == tdata.__all__
    kpriv = sorted(rename.get(n, n) for n in vars(kdata) if n.startswith("_") and not n.startswith("__"))
    tpriv = sorted(n for n in vars(tdata) if n.startswith("_") and not n.startswith("__"))
    assert kpriv == tpriv
