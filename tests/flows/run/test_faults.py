"""The planted-bug catalog, torch side and data path, without the harness:
each fault changes what it says it changes, by the size asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.data.config import ModelConfig, TrainConfig
from shared.verdict.diagnose import diagnose
from shared.core.errors import UsageError
from shared.data.faults import FAULTS, DataFaultBackend, data_transform, parse_plant
from torch_impl import faults as tfaults
from torch_impl import models as tmodels
from torch_impl import train as ttrain

CNN = ModelConfig("cnn", "multilabel", (8, 8, 3), 4, conv_channels=(4, 8), dense_units=8)
MLP = ModelConfig("mlp", "multiclass", (6,), 3)
X_CNN = np.random.default_rng(0).normal(size=(6, 3, 8, 8)).astype(np.float32)
X_MLP = np.random.default_rng(1).normal(size=(6, 6)).astype(np.float32)


def test_catalog_has_twelve_kinds_across_layers_losses_optimizers_and_data():
    kinds = {f.kind for f in FAULTS.values()}
    assert len(FAULTS) >= 12 and kinds == {"model", "optimizer", "loss", "data"}


@pytest.mark.parametrize("spec, match", [
    ("nope", "unknown fault"), ("bn-epsilon=0", r"SIZE must be in \(0, 1\]"), ("bn-epsilon=x", "must be a number"),
    ("bn-epsilon=1.5", "SIZE must be in"),
])
def test_bad_plant_specs_are_usage_errors(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_plant(spec)


def test_plant_needs_a_model_that_has_the_layer():
    with pytest.raises(UsageError, match="bn-epsilon needs a cnn model; this pair's model is mlp"):
        parse_plant("bn-epsilon", model="mlp")
    with pytest.raises(UsageError, match="labels-off-by-one needs a multiclass task"):
        parse_plant("labels-off-by-one", model="mlp", task="binary")
    assert parse_plant("bn-epsilon=0.25", model="cnn") == (FAULTS["bn-epsilon"], 0.25)


def _outputs(config, x, fault=None, size=1.0, training=False):
    torch.manual_seed(0)
    m = tmodels.build_model(config)
    if fault:
        tfaults.plant_model(m, config, FAULTS[fault], size)
    return tmodels.forward(m, x, training=training)


@pytest.mark.parametrize("fault", [f.name for f in FAULTS.values() if f.kind == "model"])
def test_each_model_fault_changes_the_outputs_in_proportion_to_its_size(fault):
    config, x = (MLP, X_MLP) if "mlp" in FAULTS[fault].models else (CNN, X_CNN)
    training = fault in ("bn-momentum", "bn-unbiased-var")
    if training:  # these only move the moving statistics: look at them after a step
        def stats(f, s):
            torch.manual_seed(0)
            m = tmodels.build_model(config)
            if f:
                tfaults.plant_model(m, config, FAULTS[f], s)
            tmodels.forward(m, x, training=True)
            return m.bn1.running_var.numpy().copy(), m.bn1.running_mean.numpy().copy()
        ref, full, small = stats(None, 1), stats(fault, 1.0), stats(fault, 0.1)
        d_full = max(np.abs(full[i] - ref[i]).max() for i in range(2))
        d_small = max(np.abs(small[i] - ref[i]).max() for i in range(2))
    else:
        ref = _outputs(config, x)
        d_full = np.abs(_outputs(config, x, fault, 1.0) - ref).max()
        d_small = np.abs(_outputs(config, x, fault, 0.1) - ref).max()
    assert d_full > 1e-6, d_full
    assert 0 < d_small < d_full


def test_unbiased_variance_plant_is_exactly_n_over_n_minus_1_and_diagnosed():
    torch.manual_seed(0)
    good, bad = tmodels.build_model(CNN), tmodels.build_model(CNN)
    bad.load_state_dict(good.state_dict())
    tfaults.plant_model(bad, CNN, FAULTS["bn-unbiased-var"], 1.0)
    start = good.bn1.running_var.numpy().copy()
    tmodels.forward(good, X_CNN, training=True)
    tmodels.forward(bad, X_CNN, training=True)
    n = 6 * 8 * 8
    hint = diagnose("bn1.running_var", good.bn1.running_var.numpy(), bad.bn1.running_var.numpy(), count=n, start=start)
    assert hint and f"n = {n}" in hint


def _train(fault, tc, size=1.0):
    torch.manual_seed(0)
    m = tmodels.build_model(MLP)
    opt = tfaults.make_optimizer(m, tc, FAULTS.get(fault), size)
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = torch.from_numpy(rng.normal(size=(8, 6)).astype(np.float32) * 1e-3)
        y = torch.from_numpy(rng.integers(0, 3, 8))
        ttrain.train_step(m, MLP, opt, x, y)
    return torch.cat([p.detach().flatten() for p in m.parameters()]).numpy()


@pytest.mark.parametrize("fault, tc", [
    ("adam-epsilon", TrainConfig("adam", 1e-3)),
    ("sgd-momentum-form", TrainConfig("sgd", 0.01, lr_change_step=10, lr_change_factor=0.1)),
    ("coupled-weight-decay", TrainConfig("adam", 1e-3, weight_decay=0.05)),
    ("coupled-weight-decay", TrainConfig("sgd", 0.01, weight_decay=0.05)),
])
def test_each_optimizer_fault_moves_the_weights(fault, tc):
    ref = _train(None, tc)
    full, small = np.abs(_train(fault, tc) - ref).max(), np.abs(_train(fault, tc, 0.1) - ref).max()
    assert full > 1e-6 and 0 < small < full


def test_bce_on_probabilities_differs_only_at_extreme_logits():
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mild = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    good = tfaults.per_sample_loss("multilabel", mild, y)
    assert torch.allclose(good, tfaults.per_sample_loss("multilabel", mild, y, FAULTS["bce-probabilities"]), rtol=1e-5)
    extreme = mild * 1000
    bad = tfaults.per_sample_loss("multilabel", extreme, y, FAULTS["bce-probabilities"])
    assert (tfaults.per_sample_loss("multilabel", extreme, y) - bad).abs().max() > 100


def test_data_faults():
    x = np.random.default_rng(0).uniform(size=(2, 3, 4, 4)).astype(np.float32)
    fx, _ = data_transform(FAULTS["rgb-bgr"], 1.0)
    np.testing.assert_array_equal(fx(x), x[:, ::-1])
    fx, _ = data_transform(FAULTS["resize"], 1.0)
    assert fx(x).shape == x.shape and 0 < np.abs(fx(x) - x).max() < 1
    _, fy = data_transform(FAULTS["labels-off-by-one"], 0.5, num_classes=3)
    np.testing.assert_array_equal(fy(np.array([0, 1, 2, 0])), [1, 2, 2, 0])


class _Echo:
    name, dtype, task, can_train = "echo", "float32", "multiclass", True

    def forward(self, xs, training=False):
        return xs

    def with_dtype(self, dtype):
        return self


def test_data_fault_backend_feeds_the_transformed_inputs():
    x = np.random.default_rng(0).uniform(size=(2, 3, 2, 2))
    b = DataFaultBackend(_Echo(), FAULTS["rgb-bgr"], 1.0)
    np.testing.assert_array_equal(b.forward([x])[0], x[:, ::-1])
    assert b.name == "echo" and isinstance(b.with_dtype("float64"), DataFaultBackend)
