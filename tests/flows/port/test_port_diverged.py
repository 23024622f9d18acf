"""Training that blows up in both frameworks alike is not a porting difference (shared/verdict/policy.py
diverged_together): the finite steps are compared, the non-finite weights are an information row; a
divergence on one side only still fails."""

from __future__ import annotations

import numpy as np
import pytest

import compare
from shared.data.config import TrainConfig
from shared.verdict.policy import diverged_together


def test_diverged_together_is_the_same_first_non_finite_step():
    nan, inf = float("nan"), float("inf")
    assert diverged_together([1.0, 2.0, nan, nan], [1.0, 2.5, inf, nan]) == 2
    assert diverged_together([1.0, nan], [1.0, 2.0]) is None  # one side only: a disagreement
    assert diverged_together([1.0, nan, nan], [nan, nan, nan]) is None  # different steps
    assert diverged_together([1.0, 2.0], [1.0, 2.0]) is None


def _model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = keras.layers.Dense(8)(inp)
    return keras.Model(inp, keras.layers.Dense(3)(h))


@pytest.mark.parametrize("lr", [1e30])
def test_port_of_a_training_that_diverges_in_both_passes_with_the_reason(lr):
    res = compare.port_checks(_model(), batch=4, train_config=TrainConfig("sgd", lr, steps=12))
    failed = [c for c in res.checks if not c.passed and not c.info]
    assert failed == [], [(c.dtype, c.check, c.where) for c in failed][:4]
    info = [c for c in res.checks if c.info and "diverged in both" in c.check]
    assert {c.dtype for c in info} == {"float32", "float64"}, [c.check for c in res.checks if "training" in c.check]
    assert all("too large" in c.reason for c in info)
    prefix = [c for c in res.checks if "first" in c.check and c.check.startswith("training loss curve")]
    assert prefix and all(c.passed and np.isfinite(c.max_abs_diff) for c in prefix)
    assert not [c for c in res.checks if c.check.startswith("trained ")]  # non-finite weights: not compared


def test_verify_of_a_training_that_diverges_in_both_passes_with_the_reason():
    """The same rule in verify: a correct hand-written port whose Keras-compiled SGD step is far too large."""
    import keras
    import torch

    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e30), loss="mse")
    port = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 3))
    res = compare.verify_models(model, port, train_steps=12)
    failed = [c for c in res.checks if not c.passed and not c.info]
    assert failed == [], [(c.dtype, c.check, c.where) for c in failed][:4]
    info = [c for c in res.checks if c.info and "diverged in both" in c.check]
    assert info and all("too large" in c.reason for c in info)
    assert not [c for c in res.checks if "after training" in c.check]
