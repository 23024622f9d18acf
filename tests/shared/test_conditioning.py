"""shared/verdict/conditioning.py: the float64 training rows re-judged by the optimizer-gain bound.

Framework-free: the backends are stand-ins that only report gradients.
"""

from __future__ import annotations


import numpy as np
import pytest

from shared.verdict.checks import compare_arrays
from shared.verdict.conditioning import CONDITIONING_FACTOR, optimizer_gain, rejudge_training
from shared.data.config import TrainConfig
from shared.flows.engine import worst
from shared.verdict.tolerances import for_check

STEPS = 10
CTX = dict(task="regression", model="cnn", dtype="float64")


class GradOnly:
    """A backend that only answers loss_and_grads, with fixed gradients."""

    def __init__(self, name, grads):
        self.name, self.grads, self.calls = name, grads, 0

    def loss_and_grads(self, x, y, training=True):
        self.calls += 1
        return 0.0, self.grads


def _weights_row(wa, wb):
    per = [compare_arrays(f"w {n}", wa[n], wb[n], for_check("training", "float64"), **CTX) for n in wa]
    return worst("trained weights (adam)", per, **CTX)


def _run(ga, gb, wa, wb, optimizer="adam"):
    a, b = GradOnly("keras", ga), GradOnly("torch", gb)
    tc = TrainConfig(optimizer=optimizer, learning_rate=1e-3, steps=STEPS)
    rows = [_weights_row(wa, wb)]
    batches = [(np.zeros((2, 1)), np.zeros(2))] * STEPS
    return rejudge_training(rows, a, b, batches, tc, ((np.zeros(STEPS), np.zeros(STEPS)), (wa, wb)), CTX, worst), a


def test_noise_level_gradient_under_adam_is_rounding_not_a_bug():
    # conv1's true gradient is 0 (flat images): both frameworks give ~1e-15 of noise.
    ga = {"conv1.weight": np.array([1e-15, -2e-15]), "fc.weight": np.array([0.3, -0.2])}
    gb = {"conv1.weight": np.array([-1e-15, 2e-15]), "fc.weight": np.array([0.3, -0.2])}
    wa = {"conv1.weight": np.array([0.05, 0.1]), "fc.weight": np.array([1.0, 2.0])}
    wb = {"conv1.weight": np.array([0.05 + 3e-10, 0.1]), "fc.weight": np.array([1.0, 2.0])}
    assert not _weights_row(wa, wb).passed  # the strict row alone: a false alarm
    rows, _ = _run(ga, gb, wa, wb)
    assert rows[0].passed
    assert "conv1.weight" in rows[0].where and "optimizer-gain bound" in rows[0].where
    # by hand: factor 4 x 10 steps x lr/(|g|+eps) = 1e-3/(2e-15+1e-7) x |dg| = 4e-15 -> 1.6e-9, + strict 1e-10
    assert CONDITIONING_FACTOR == 4.0
    assert "against 1.7e-09" in rows[0].where


def test_ordinary_gradient_keeps_the_strict_tolerance():
    # fc's gradient is ordinary (0.3): a 1e-8 weight difference is a formula bug, not noise.
    ga = {"fc.weight": np.array([0.3, -0.2])}
    gb = {"fc.weight": np.array([0.3 + 1e-16, -0.2])}
    wa = {"fc.weight": np.array([1.0, 2.0])}
    wb = {"fc.weight": np.array([1.0 + 1e-8, 2.0])}
    rows, _ = _run(ga, gb, wa, wb)
    assert not rows[0].passed
    assert rows[0].tolerance == pytest.approx(for_check("training", "float64").allowed(2.0))


def test_noise_tensor_with_a_real_bug_still_fails():
    # even a noise-gradient tensor fails when the difference exceeds the bound by far (1e-6 vs ~1.6e-9)
    ga, gb = {"conv1.weight": np.array([1e-15])}, {"conv1.weight": np.array([-1e-15])}
    wa, wb = {"conv1.weight": np.array([0.05])}, {"conv1.weight": np.array([0.05 + 1e-6])}
    rows, _ = _run(ga, gb, wa, wb)
    assert not rows[0].passed


def test_passing_rows_cost_nothing():
    g = {"fc.weight": np.array([0.3])}
    w = {"fc.weight": np.array([1.0])}
    rows, a = _run(g, g, w, w)
    assert rows[0].passed and a.calls == 0  # no gradients computed for a run that passed


def test_gain_per_optimizer():
    adam = TrainConfig(optimizer="adam", learning_rate=1e-3, epsilon=1e-7)
    sgd = TrainConfig(optimizer="sgd", learning_rate=1e-2, momentum=0.9)
    g = np.array([0.0, 1e-7, 1.0])
    np.testing.assert_allclose(optimizer_gain(adam, g), [1e4, 5e3, 1e-3 / (1 + 1e-7)])
    np.testing.assert_allclose(optimizer_gain(sgd, g), [0.1, 0.1, 0.1])
