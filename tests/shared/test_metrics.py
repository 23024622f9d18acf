"""shared/verdict/metrics.py against numbers computed by hand (each derivation in a comment)."""

import math

import numpy as np
import pytest

from shared.verdict import metrics

# Multilabel example: 4 items x 4 classes; row 2 has no labels, class 3 no positives.
Y_ML = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=np.float32)
P_ML = np.array([
    [0.9, 0.5, 0.6, 0.7],   # > 0.5: [1, 0, 1, 1]  (0.5 is not > 0.5)
    [0.2, 0.7, 0.55, 0.1],  #        [0, 1, 1, 0]
    [0.1, 0.3, 0.2, 0.2],   #        [0, 0, 0, 0]
    [0.8, 0.45, 0.1, 0.3],  #        [1, 0, 0, 0]
])


def test_predictions_per_task():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    np.testing.assert_array_equal(metrics.predictions("multiclass", probs), [1, 0])
    # Strictly greater than the threshold: 0.5 is negative at 0.5.
    np.testing.assert_array_equal(metrics.predictions("multilabel", P_ML)[0], [1, 0, 1, 1])
    np.testing.assert_array_equal(metrics.predictions("binary", np.array([[0.5], [0.51]])), [[0], [1]])
    np.testing.assert_array_equal(metrics.predictions("binary", np.array([[0.3], [0.2]]), threshold=0.25), [[1], [0]])
    out = np.array([[1.5, -2.0]])
    assert metrics.predictions("regression", out) is out
    with pytest.raises(ValueError, match="unknown task"):
        metrics.predictions("ranking", probs)


def test_accuracy_multiclass_and_binary():
    # argmax rows: 0, 2, 2, 1 vs labels 0, 1, 2, 1 -> 3 of 4.
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])
    assert metrics.accuracy(np.array([0, 1, 2, 1]), metrics.predictions("multiclass", probs)) == 0.75
    # binary (N, 1): preds [1, 0, 0, 1, 1] vs [1, 0, 1, 0, 1] -> 3 of 5.
    y = np.array([[1], [0], [1], [0], [1]], dtype=np.float32)
    p = np.array([[0.7], [0.4], [0.3], [0.6], [0.51]])
    assert metrics.accuracy(y, metrics.predictions("binary", p)) == pytest.approx(0.6, abs=1e-15)
    assert metrics.metrics_for("binary", y, p) == {"accuracy": pytest.approx(0.6, abs=1e-15)}


def test_accuracy_multi_counts_every_element():
    # Wrong elements: row 0 class 3, row 1 class 2, row 3 class 1 -> 13 of 16.
    assert metrics.accuracy_multi(Y_ML, P_ML) == 13 / 16
    # At 0.05 every prob (all >= 0.1) is positive: right only where the label
    # is 1, 5 of the 16 elements.
    assert metrics.accuracy_multi(Y_ML, P_ML, threshold=0.05) == 5 / 16


def test_f1_samples_with_an_empty_row():
    # Per row (tp, fp, fn) -> F1 = 2tp / (2tp + fp + fn):
    #   row 0 (2, 1, 0) -> 4/5; row 1 (1, 1, 0) -> 2/3;
    #   row 2 no labels, no predictions -> zero_division=0 -> 0;
    #   row 3 (1, 0, 1) -> 2/3.  mean = (4/5 + 2/3 + 0 + 2/3) / 4 = 8/15.
    assert metrics.f1_multi(Y_ML, P_ML) == pytest.approx(8 / 15, abs=1e-12)
    # A labelled row with no prediction scores 0 as well.
    assert metrics.f1_multi(np.array([[1, 0]]), np.array([[0.2, 0.1]])) == 0.0


def test_map_skips_classes_without_positives():
    # class 0 scores [.9 .2 .1 .8], positives rows 0, 3 -> ranked first: AP 1.
    # class 1 scores [.5 .7 .3 .45], positives rows 1, 3 -> ranking pos, neg, pos:
    #   AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    # class 2 scores [.6 .55 .2 .1], positive row 0 ranked first: AP 1.
    # class 3 has no positive: left out.   mAP = (1 + 5/6 + 1) / 3 = 17/18.
    assert metrics.mean_average_precision(Y_ML, P_ML) == pytest.approx(17 / 18, abs=1e-12)
    assert math.isnan(metrics.mean_average_precision(np.zeros((2, 2)), np.full((2, 2), 0.5)))


def test_regression_errors():
    # errors [1, 0, 0, -2] -> MAE 3/4, RMSE sqrt(5/4).
    y = np.array([[0.0, 1.0], [2.0, 3.0]])
    out = np.array([[1.0, 1.0], [2.0, 1.0]])
    assert metrics.mae(y, out) == 0.75
    assert metrics.rmse(y, out) == pytest.approx(math.sqrt(1.25), abs=1e-15)
    assert metrics.metrics_for("regression", y, out) == {"mae": 0.75, "rmse": pytest.approx(math.sqrt(1.25), abs=1e-15)}


def test_metrics_for_multilabel_and_multiclass():
    got = metrics.metrics_for("multilabel", Y_ML, P_ML)
    assert got == {"accuracy_multi": 13 / 16, "f1_samples": pytest.approx(8 / 15, abs=1e-12),
                   "mAP": pytest.approx(17 / 18, abs=1e-12)}
    probs = np.array([[0.8, 0.2], [0.6, 0.4]])
    assert metrics.metrics_for("multiclass", np.array([0, 1]), probs) == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="unknown task"):
        metrics.metrics_for("ranking", Y_ML, P_ML)


def test_threshold_sweep_picks_the_best_and_the_lowest_on_ties():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.62, 0.42], [0.2, 0.8]])
    # Thresholds in [0.42, 0.62) classify all four elements right.
    th, accs, best = metrics.threshold_sweep(y, p, thresholds=[0.3, 0.5, 0.7])
    np.testing.assert_array_equal(accs, [0.75, 1.0, 0.75])  # 0.3: 0.42 wrong; 0.7: 0.62 wrong
    assert best == 0.5
    # Default grid 0.05..0.95 step 0.05: 0.45, 0.50, 0.55, 0.60 all reach 1.0 -> the lowest, 0.45.
    th, accs, best = metrics.threshold_sweep(y, p)
    assert len(th) == 19 and th[0] == pytest.approx(0.05) and th[-1] == pytest.approx(0.95)
    assert accs.max() == 1.0 and int((accs == 1.0).sum()) == 4
    assert best == pytest.approx(0.45, abs=1e-12)
