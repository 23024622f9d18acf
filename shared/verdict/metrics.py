"""Task metrics on numpy arrays (numpy + scikit-learn only), shared by both sides.

Both frameworks' outputs are turned into probabilities by their own
`losses.probabilities` (softmax / sigmoid / identity); everything here starts
from those numpy arrays, so a metric can never differ because of the framework
that computed it.

Thresholds act on probabilities (sigmoid already applied), as fastai's
`accuracy_multi(thresh=0.5, sigmoid=True)` does; Keras' `BinaryAccuracy`
thresholds the raw value, which on logits is sigmoid 0.62
(TRAPS.md, "Numerics, metrics, export").
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

__all__ = [
    "DEFAULT_THRESHOLD",
    "SWEEP_THRESHOLDS",
    "predictions",
    "accuracy",
    "accuracy_multi",
    "f1_multi",
    "mean_average_precision",
    "mae",
    "rmse",
    "metrics_for",
    "threshold_sweep",
]

# fastai's accuracy_multi default (fastai/metrics.py: thresh=0.5).
DEFAULT_THRESHOLD = 0.5
# 0.05, 0.10, ..., 0.95: the grid fastbook ch. 6 sweeps (`xs = torch.linspace(0.05, 0.95, 29)`
# there; 19 points here put every threshold on a round 0.05 step).
SWEEP_THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)  # rounded: 0.45, not 0.44999999999999996


def _labels(y) -> np.ndarray:
    """Targets as a flat int array: (N,) or (N, 1) -> (N,)."""
    y = np.asarray(y)
    return (y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y).astype(np.int64)


def predictions(task: str, probs, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Hard predictions from probabilities.

    Args:
        task: "multiclass" -> argmax over the last axis, (N,) int64;
            "multilabel"/"binary" -> (probs > threshold) as int64, same shape;
            "regression" -> the outputs unchanged.
        probs: (N, C) probabilities (or regression outputs).
        threshold: strict lower bound for a positive (multilabel/binary).
    """
    probs = np.asarray(probs)
    if task == "multiclass":
        return probs.argmax(axis=-1).astype(np.int64)
    if task in ("multilabel", "binary"):
        return (probs > threshold).astype(np.int64)
    if task == "regression":
        return probs
    raise ValueError(f"unknown task. Received: task={task!r}")


def accuracy(y, preds) -> float:
    """Fraction of items whose hard prediction equals the label.

    Args:
        y: class indices (N,) or binary labels (N,) / (N, 1).
        preds: hard predictions of the same length (from `predictions`).
    """
    return float(np.mean(_labels(y) == _labels(preds)))


def accuracy_multi(y, probs, threshold: float = DEFAULT_THRESHOLD) -> float:
    """fastai's accuracy_multi with the sigmoid already applied.

    mean over all N*C elements of ((probs > threshold) == y), so a row without
    labels counts its C correct negatives too.

    Args:
        y: (N, C) multi-hot targets.
        probs: (N, C) probabilities.
        threshold: strict lower bound for a positive.
    """
    y = np.asarray(y)
    return float(np.mean((np.asarray(probs) > threshold) == (y > 0.5)))


def f1_multi(y, probs, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Sample-averaged F1 (sklearn average="samples", zero_division=0).

    A row with no true and no predicted labels has an undefined F1; with
    zero_division=0 sklearn scores it 0 (not 1), so empty rows pull the mean
    down. A row with labels but no prediction (or the reverse) scores 0 too.

    Args:
        y: (N, C) multi-hot targets.
        probs: (N, C) probabilities.
        threshold: strict lower bound for a positive.
    """
    y_true = (np.asarray(y) > 0.5).astype(np.int64)
    y_pred = (np.asarray(probs) > threshold).astype(np.int64)
    return float(f1_score(y_true, y_pred, average="samples", zero_division=0))


def mean_average_precision(y, probs) -> float:
    """Macro average precision over the classes that have at least one positive.

    sklearn's average_precision_score is undefined for a class without
    positives (it warns and returns 0 or nan by version), so such classes are
    left out; NaN if no class has a positive.

    Args:
        y: (N, C) multi-hot targets.
        probs: (N, C) scores.
    """
    y_true = (np.asarray(y) > 0.5).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    keep = y_true.sum(axis=0) > 0  # (C,)
    if not keep.any():
        return float("nan")
    return float(average_precision_score(y_true[:, keep], probs[:, keep], average="macro"))


def mae(y, outputs) -> float:
    """Mean absolute error over all elements."""
    return float(np.mean(np.abs(np.asarray(outputs, np.float64) - np.asarray(y, np.float64))))


def rmse(y, outputs) -> float:
    """Root mean squared error over all elements."""
    return float(np.sqrt(np.mean((np.asarray(outputs, np.float64) - np.asarray(y, np.float64)) ** 2)))


def metrics_for(task: str, y, probs_or_outputs, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The task's metrics, by name.

    Args:
        task: one of shared.data.config.TASKS.
        y: targets in the Dataset conventions.
        probs_or_outputs: probabilities (classification) or outputs (regression).
        threshold: for multilabel/binary.

    Returns:
        multiclass: {"accuracy"}; binary: {"accuracy"};
        multilabel: {"accuracy_multi", "f1_samples", "mAP"};
        regression: {"mae", "rmse"}.
    """
    p = probs_or_outputs
    if task == "multiclass":
        return {"accuracy": accuracy(y, predictions(task, p))}
    if task == "binary":
        return {"accuracy": accuracy(y, predictions(task, p, threshold))}
    if task == "multilabel":
        return {"accuracy_multi": accuracy_multi(y, p, threshold), "f1_samples": f1_multi(y, p, threshold),
                "mAP": mean_average_precision(y, p)}
    if task == "regression":
        return {"mae": mae(y, p), "rmse": rmse(y, p)}
    raise ValueError(f"unknown task. Received: task={task!r}")


def threshold_sweep(y, probs, thresholds=SWEEP_THRESHOLDS) -> tuple:
    """accuracy_multi at each threshold, and the best one (fastbook ch. 6).

    Plot `accuracies` against `thresholds` and pick the best; the curve is
    usually flat near the top, so the choice is not fragile. Ties go to the
    lowest threshold (np.argmax returns the first maximum), a fixed rule so
    that both frameworks, given equal probabilities, pick the same value.

    Args:
        y: (N, C) multi-hot targets.
        probs: (N, C) probabilities.
        thresholds: increasing thresholds to try.

    Returns:
        (thresholds as np.ndarray, accuracies as np.ndarray, best_threshold float).
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    accs = np.array([accuracy_multi(y, probs, t) for t in thresholds])
    return thresholds, accs, float(thresholds[int(np.argmax(accs))])
