"""shared/verdict/judge.py: the tolerance policy and the near-tie verdicts of discrete rows."""

from __future__ import annotations

import numpy as np
import pytest

from shared.verdict import metrics
from shared.verdict.judge import Judge
from shared.verdict.tolerances import FORWARD, TRAINING, TRAINING_BATCHNORM, Tolerance

TOL = 1e-6


def test_override_judges_everything_and_says_so():
    j = Judge(Tolerance(rel=0.0, abs=0.0))
    t = j.tolerance("forward", "float32", [1.0], [1.0], [1.0], [1.0])
    assert t.abs == 0 and t.rel == 0 and t.derivation == "user: --atol 0 --rtol 0"
    c = j.compare("onnx logits", "onnx", [1.0 + 1.19e-7], [1.0], dtype="float32")
    assert not c.passed and c.tolerance_from == "user: --atol 0 --rtol 0"


def test_derived_when_float64_references_exist_named_otherwise():
    j = Judge(batchnorm=True)
    a32, b32 = np.array([1.0 + 2e-7]), np.array([1.0])
    a64, b64 = np.array([1.0 + 1e-7]), np.array([1.0 - 1e-7])
    assert j.tolerance("forward", "float32", a32, b32, a64, b64).derivation.startswith("derived: 4 x (keras 1e-07")
    assert j.tolerance("forward", "float32", a32, b32) == FORWARD["float32"]
    assert j.tolerance("forward", "float64", a32, b32, a64, b64) == FORWARD["float64"]
    assert j.named("training", "float32") == TRAINING_BATCHNORM["float32"]
    assert Judge().named("training", "float32") == TRAINING["float32"]


def test_trajectory_uses_the_envelope():
    steps = np.arange(10.0)
    a64 = b64 = np.exp(-steps / 5)
    a32, b32 = a64 + 1e-6 * steps, a64 - 1e-6 * steps
    c = Judge().trajectory("training loss curve (sgd)", a32, b32, a64, b64, dtype="float32")
    assert c.passed and c.tolerance_from.startswith("derived step by step")
    bad = Judge().trajectory("training loss curve (sgd)", a32, b32 + 1e-3, a64, b64 + 1e-3, dtype="float32")
    assert not bad.passed


def test_prediction_flip_at_a_near_tie_passes_and_is_listed():
    pa = np.array([[0.4, 0.4 + 3e-7, 0.2 - 3e-7], [0.7, 0.2, 0.1]])
    pb = np.array([[0.4 + 3e-7, 0.4, 0.2 - 3e-7], [0.7, 0.2, 0.1]])
    c = Judge().predictions(pa, pb, TOL, ["a.png", "b.png"], task="multiclass")
    assert c.passed and c.where == "1 of 2 differ, all at near ties" and "1 near tie(s): item 0" in c.detail["ties"]
    far = Judge().predictions(pa[:, [2, 1, 0]], pb, TOL, ["a.png", "b.png"], task="multiclass")
    assert not far.passed and far.where.startswith("2 of 2 differ away from any tie; first: item 0 (a.png)")


def test_map_swap_of_two_nearly_tied_scores_passes_the_issue_case():
    """Seed 1's multilabel metrics row: mAP 0.16508 vs 0.16516 from two nearly tied scores."""
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    pa = np.array([[0.9, 0.2], [0.3000001, 0.8], [0.3, 0.1], [0.1, 0.3]])
    pb = np.array([[0.9, 0.2], [0.3, 0.8], [0.3000001, 0.1], [0.1, 0.3]])
    assert metrics.mean_average_precision(y, pa) != metrics.mean_average_precision(y, pb)
    c = Judge().metrics(y, pa, pb, TOL, task="multilabel")
    assert c.passed and "mAP" in " ".join(c.detail["ties"]) and "swap places" in c.where
    # A swap of scores 0.1 apart is a real difference.
    pa_far = pa.copy()
    pa_far[1, 0] = 0.4
    bad = Judge().metrics(y, pa_far, pb, TOL, task="multilabel")
    assert not bad.passed and "rank swap(s) away from ties" in bad.where


def test_regression_metrics_held_to_the_outputs_tolerance():
    y = np.array([[1.0], [2.0]])
    c = Judge().metrics(y, np.array([[1.1], [2.2]]), np.array([[1.1 + 5e-7], [2.2]]), TOL, task="regression")
    assert c.passed
    assert not Judge().metrics(y, np.array([[1.1], [2.2]]), np.array([[1.1 + 1e-5], [2.2]]), TOL, task="regression").passed


def test_chosen_threshold_by_near_ties():
    y = np.array([[1, 0], [0, 1]])
    pa = np.array([[0.9, 0.1], [0.3 + 1e-7, 0.8]])
    pb = np.array([[0.9, 0.1], [0.3 - 1e-7, 0.8]])
    thr = np.array([0.25, 0.3, 0.35])
    c = Judge().chosen_threshold(y, pa, pb, thr, 0.35, 0.3, TOL, which="test")
    assert c.passed and c.max_abs_diff == 0 and "within" in c.where
    bad = Judge().chosen_threshold(y, pa, pb, thr, 0.25, 0.35, TOL, which="test")
    assert not bad.passed and bad.max_abs_diff == pytest.approx(0.1)
