"""Every optimizer trap the training code handles, shown both ways.

Each test trains the same Keras model twice against torch: once with the
handling in place (must agree within TRAINING[dtype]) and once with the
handling removed, the way a straightforward port would write it (must differ
by at least BROKEN_MARGIN times the tolerance). Traps: Adam's epsilon
placement, decoupled vs L2 weight decay (Adam and SGD), SGD momentum (equal at
constant lr, broken by an lr change), and float64 hyperparameters rounded
through float32 on the Keras side (TRAPS.md, "Optimizers").
"""

import torch  # noqa: F401  (torch before TensorFlow/Keras, as Keras' own tests do)

import keras
import numpy as np
import pytest

from helpers import random_inputs, random_targets
from keras_impl import models as kmodels
from keras_impl import train as ktrain
from keras_impl import weights as kweights
from shared.verdict import tolerances
from shared.data.batches import batch_plan, make_batches
from shared.verdict.checks import compare_named
from shared.data.config import KERAS_ADAM_EPSILON, TrainConfig
from shared.data.registry import PAIRS
from torch_impl import models as tmodels
from torch_impl import train as ttrain
from torch_impl import weights as tweights

STEPS = 50
ITEMS = 256
BROKEN_MARGIN = 10  # a broken port must miss the tolerance by 10x at least
TORCH_ADAM_EPS = 1e-8  # torch/optim/adam.py default
# Inputs scaled down so that first-layer gradients sit at 1e-6..1e-4, the range
# where the traps file measured 0.2%..82% per-step Adam differences.
SMALL_INPUT_SCALE = 1e-3
MLP = PAIRS[0]  # digits/mlp: 64 -> 25 -> 15 -> 10, multiclass


def _setup(dtype: str, input_scale: float = 1.0):
    config = MLP.config(dtype)
    kmodel = kmodels.build_model(config, seed=0)
    tensors = kweights.to_portable(kmodel, config)
    x = (random_inputs(config.replace(dtype="float32"), n=ITEMS, seed=5) * input_scale).astype(np.float32)
    y = random_targets(config, n=ITEMS, seed=6)
    return config, kmodel, tensors, make_batches(x, y, batch_plan(ITEMS, 32, STEPS, 0))


def _run_keras(kmodel, config, optimizer, batches, before_step=None) -> dict:
    optimizer.build(kmodel.trainable_variables)
    for i, (x, y) in enumerate(batches):
        if before_step:
            before_step(i, optimizer)
        ktrain.train_step(kmodel, config, optimizer, x, y)
    return kweights.to_portable(kmodel, config)


def _run_torch(config, tensors, make_opt, batches, before_step=None) -> dict:
    tmodel = tmodels.build_model(config)
    tweights.from_portable(tmodel, config, tensors)
    optimizer = make_opt(tmodel)
    for i, (x, y) in enumerate(batches):
        if before_step:
            before_step(i, optimizer)
        ttrain.train_step(tmodel, config, optimizer, x, y)
    return tweights.to_portable(tmodel, config)


def _worst(keras_w: dict, torch_w: dict, dtype: str) -> tuple:
    """(largest |diff| / allowed over all tensors, whether every tensor passed)."""
    checks = compare_named("final", keras_w, torch_w, tolerances.TRAINING[dtype])
    return max(c.max_abs_diff / c.tolerance for c in checks), all(c.passed for c in checks)


def _assert_fixed_and_broken(keras_w, fixed_w, broken_w, dtype):
    fixed_ratio, fixed_ok = _worst(keras_w, fixed_w, dtype)
    broken_ratio, broken_ok = _worst(keras_w, broken_w, dtype)
    print(f"\nfixed: {fixed_ratio:.3g} x tolerance, broken: {broken_ratio:.3g} x tolerance")
    assert fixed_ok, f"the handled port misses the tolerance ({fixed_ratio:.3g} x)"
    assert not broken_ok and broken_ratio > BROKEN_MARGIN, f"the broken port is only {broken_ratio:.3g} x the tolerance"


def test_adam_epsilon_placement():
    """Stock torch Adam (eps 1e-8 on sqrt(v_hat)) vs Keras Adam (1e-7 on sqrt(v)) on small gradients."""
    dtype = "float32"
    config, kmodel, tensors, batches = _setup(dtype, SMALL_INPUT_SCALE)
    _, grads = ttrain.loss_and_grads(tmodels.build_model(config), config, *batches[0])
    assert 1e-8 < np.abs(grads["dense1.weight"]).max() < 1e-3  # the small-gradient regime
    tc = TrainConfig(optimizer="adam", learning_rate=1e-3)
    keras_w = _run_keras(kmodel, config, ktrain.make_optimizer(kmodel, tc), batches)
    fixed_w = _run_torch(config, tensors, lambda m: ttrain.make_optimizer(m, tc), batches)
    broken_w = _run_torch(config, tensors, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, eps=TORCH_ADAM_EPS),
                          batches)
    _assert_fixed_and_broken(keras_w, fixed_w, broken_w, dtype)
    # Same placement, Keras' value: the conversion eps/sqrt(1-b2^t) is what matters.
    same_value_w = _run_torch(config, tensors, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3,
                                                                         eps=KERAS_ADAM_EPSILON), batches)
    assert _worst(keras_w, same_value_w, dtype)[0] > BROKEN_MARGIN


def test_keras_adam_eps_formula():
    # step 1: 1e-7 / sqrt(1 - 0.999) = 1e-7 / 0.0316227766 = 3.16227766e-6
    assert ttrain.keras_adam_eps(1e-7, 0.999, 1) == pytest.approx(3.16227766e-6, rel=1e-9)
    # large t: 1 - b2^t -> 1, so torch's eps tends to Keras' own.
    assert ttrain.keras_adam_eps(1e-7, 0.999, 100_000) == pytest.approx(1e-7, rel=1e-12)


class _AdamL2KerasEps(ttrain.AdamKeras):
    """torch Adam's L2 weight decay (grad += wd * w), with the epsilon already
    fixed, so that only the weight-decay trap is left in."""

    def __init__(self, params, wd):
        super().__init__(params, lr=1e-3, betas=(0.9, 0.999), keras_epsilon=KERAS_ADAM_EPSILON)
        for group in self.param_groups:
            group["weight_decay"] = wd
            group["decoupled_weight_decay"] = False  # torch/optim/adam.py: grad = grad.add(param, alpha=wd)


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_weight_decay_is_decoupled(opt):
    """Keras' weight_decay (w -= lr*wd*w before the update) vs torch's L2-in-gradient weight_decay."""
    dtype = "float32"
    wd = 0.1
    config, kmodel, tensors, batches = _setup(dtype)
    tc = TrainConfig(optimizer=opt, learning_rate=1e-3 if opt == "adam" else 0.01, weight_decay=wd)
    keras_w = _run_keras(kmodel, config, ktrain.make_optimizer(kmodel, tc), batches)
    fixed_w = _run_torch(config, tensors, lambda m: ttrain.make_optimizer(m, tc), batches)
    if opt == "adam":  # what a direct port writes: Adam(weight_decay=wd), epsilon already fixed
        broken_w = _run_torch(config, tensors, lambda m: _AdamL2KerasEps(m.parameters(), wd), batches)
    else:
        broken_w = _run_torch(config, tensors, lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9,
                                                                         weight_decay=wd), batches)
    _assert_fixed_and_broken(keras_w, fixed_w, broken_w, dtype)


def test_sgd_momentum_agrees_at_constant_lr_and_not_after_a_change():
    """Keras v = mu*v - lr*g; w += v  vs  torch b = mu*b + g; w -= lr*b: equal while lr is constant."""
    dtype = "float32"
    config, kmodel, tensors, batches = _setup(dtype)
    lr, lr_after, change_at = 0.01, 0.001, STEPS // 2
    keras_w = _run_keras(kmodel, config, keras.optimizers.SGD(learning_rate=lr, momentum=0.9), batches)
    stock_w = _run_torch(config, tensors, lambda m: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9), batches)
    ratio, ok = _worst(keras_w, stock_w, dtype)
    print(f"\nconstant lr: {ratio:.3g} x tolerance")
    assert ok

    def keras_change(i, opt):
        if i == change_at:
            opt.learning_rate = lr_after

    def torch_change(i, opt):
        if i == change_at:
            for group in opt.param_groups:
                group["lr"] = lr_after

    kmodel2 = kmodels.build_model(config)
    kweights.from_portable(kmodel2, config, tensors)
    keras_w = _run_keras(kmodel2, config, keras.optimizers.SGD(learning_rate=lr, momentum=0.9), batches, keras_change)
    torch_w = _run_torch(config, tensors, lambda m: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9), batches,
                         torch_change)
    ratio, ok = _worst(keras_w, torch_w, dtype)
    print(f"lr changed at step {change_at}: {ratio:.3g} x tolerance")
    # Keras' velocity carries the old lr (v ~ -lr_old * b), torch multiplies its buffer by the new one.
    assert not ok and ratio > BROKEN_MARGIN


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_float64_hyperparameters_are_not_rounded_through_float32(opt):
    """Stock Keras optimizers on a float64 model use float32(lr), float32(momentum), float32(beta_2)."""
    dtype = "float64"
    config, kmodel, tensors, batches = _setup(dtype)
    tc = TrainConfig(optimizer=opt, learning_rate=0.01 if opt == "sgd" else 1e-3)
    keras_w = _run_keras(kmodel, config, ktrain.make_optimizer(kmodel, tc), batches)
    torch_w = _run_torch(config, tensors, lambda m: ttrain.make_optimizer(m, tc), batches)

    kmodel2 = kmodels.build_model(config)
    kweights.from_portable(kmodel2, config, tensors)
    if opt == "sgd":
        stock = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    else:
        stock = keras.optimizers.Adam(learning_rate=1e-3)
    stock_w = _run_keras(kmodel2, config, stock, batches)
    # Here "fixed" and "broken" are both Keras runs against the same torch run.
    _assert_fixed_and_broken(torch_w, keras_w, stock_w, dtype)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_learning_rate_change_keeps_the_twins_together(opt):
    """TrainConfig.lr_change_step: both make_optimizer follow Keras' form across
    the change (SGDKeras rescales its momentum buffer by l0/l1), while stock
    torch SGD under the same change misses by far (the trap above)."""
    dtype = "float32"
    config, kmodel, tensors, batches = _setup(dtype)
    lr = 0.01 if opt == "sgd" else 1e-3
    tc = TrainConfig(optimizer=opt, learning_rate=lr, lr_change_step=STEPS // 2, lr_change_factor=0.1)
    assert tc.lr_at(STEPS // 2 - 1) == lr and tc.lr_at(STEPS // 2) == pytest.approx(lr * 0.1)
    keras_w = _run_keras(kmodel, config, ktrain.make_optimizer(kmodel, tc), batches)
    fixed_w = _run_torch(config, tensors, lambda m: ttrain.make_optimizer(m, tc), batches)
    if opt == "adam":
        ratio, ok = _worst(keras_w, fixed_w, dtype)
        print(f"\nadam, lr changed: {ratio:.3g} x tolerance")
        assert ok
        return

    def torch_change(i, o):
        for group in o.param_groups:
            group["lr"] = tc.lr_at(i)

    broken_w = _run_torch(config, tensors, lambda m: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9), batches,
                          torch_change)
    _assert_fixed_and_broken(keras_w, fixed_w, broken_w, dtype)
