"""One batch, same weights: the loss and every parameter's gradient agree.

For each built-in pair and dtype the Keras model is built (seeded), BatchNorm
tensors are made non-trivial, the weights are ported to torch, and
`loss_and_grads` runs on both sides in training mode (BatchNorm batch
statistics). Losses are held to FORWARD, gradients to GRADIENT, per dtype.
Run with -s to see the largest differences per dtype.
"""

import torch  # noqa: F401  (torch before TensorFlow/Keras, as Keras' own tests do)

import numpy as np
import pytest

from helpers import max_record, pair_dtype_params, random_inputs, random_targets, randomise_bn
from keras_impl import models as kmodels
from keras_impl import train as ktrain
from keras_impl import weights as kweights
from shared.verdict import tolerances
from shared.verdict.checks import assert_checks, compare_arrays, compare_named, format_check
from shared.data.config import trainable_names
from torch_impl import models as tmodels
from torch_impl import train as ttrain
from torch_impl import weights as tweights

BATCH = 32  # the default TrainConfig batch size
LARGEST: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _report_largest():
    yield
    for (check, dtype), value in sorted(LARGEST.items()):
        print(f"\nlargest {check} diff, {dtype}: {value:.3g}")


def _twins(pair, dtype):
    """(config, keras model, torch model) with identical, non-trivial weights."""
    config = pair.config(dtype)
    kmodel = kmodels.build_model(config, seed=0)
    tensors = randomise_bn(kweights.to_portable(kmodel, config), config)
    kweights.from_portable(kmodel, config, tensors)
    tmodel = tmodels.build_model(config)
    tweights.from_portable(tmodel, config, tensors)
    return config, kmodel, tmodel


@pytest.mark.parametrize("pair,dtype", pair_dtype_params())
def test_loss_and_gradients_agree(pair, dtype):
    config, kmodel, tmodel = _twins(pair, dtype)
    x = random_inputs(config, n=BATCH, seed=3)  # NHWC for images: both sides take it so
    y = random_targets(config, n=BATCH, seed=4)
    k_loss, k_grads = ktrain.loss_and_grads(kmodel, config, x, y)
    t_loss, t_grads = ttrain.loss_and_grads(tmodel, config, x, y)

    assert list(k_grads) == trainable_names(config)
    assert list(t_grads) == trainable_names(config)
    ctx = dict(task=config.task, model=config.model, dtype=dtype)
    checks = [compare_arrays("loss", k_loss, t_loss, tolerances.FORWARD[dtype], **ctx)]
    checks += compare_named("grad", k_grads, t_grads, tolerances.GRADIENT[dtype], **ctx)
    max_record(LARGEST, ("loss", dtype), checks[0].max_abs_diff)
    max_record(LARGEST, ("gradient", dtype), max(c.max_abs_diff for c in checks[1:]))
    for c in checks:
        print(format_check(c))
    assert_checks(checks)
    # The gradients are not trivially zero: a zeroed port would "agree" too.
    assert all(np.abs(g).max() > 0 for g in t_grads.values())


@pytest.mark.parametrize("pair,dtype", pair_dtype_params()[:1] + pair_dtype_params()[-2:-1])
def test_loss_and_grads_leave_the_model_unchanged(pair, dtype):
    """Training-mode BatchNorm updates moving statistics; loss_and_grads restores them."""
    config, kmodel, tmodel = _twins(pair, dtype)
    x, y = random_inputs(config, n=BATCH), random_targets(config, n=BATCH)
    k_before, t_before = kweights.to_portable(kmodel, config), tweights.to_portable(tmodel, config)
    ktrain.loss_and_grads(kmodel, config, x, y)
    ttrain.loss_and_grads(tmodel, config, x, y)
    for name, value in kweights.to_portable(kmodel, config).items():
        np.testing.assert_array_equal(value, k_before[name], err_msg=f"keras {name}")
    for name, value in tweights.to_portable(tmodel, config).items():
        np.testing.assert_array_equal(value, t_before[name], err_msg=f"torch {name}")
    assert all(p.grad is None for p in tmodel.parameters())
    assert not tmodel.training
