"""Discrete outputs under float32 rounding: which disagreements near ties explain.

Predictions, the chosen threshold and rank metrics (mAP) are discontinuous in
the scores: two scores closer than the float32 tolerance can come out in
either order, or on either side of a threshold, in the two frameworks. Such a
disagreement is rounding; one where the scores were far apart is a bug. Every
function here returns the ties it used, so the report can list them.

Framework-free (numpy only).
"""

from __future__ import annotations

import numpy as np

__all__ = ["prediction_ties", "threshold_ties", "rank_swaps", "choice_explained", "describe_ties"]

# At most this many ties are listed in a report row (the count is always given).
MAX_LISTED = 5


def prediction_ties(task: str, pa, pb, tol: float, threshold: float = 0.5) -> tuple:
    """Items whose hard predictions differ, split into explained and unexplained.

    Args:
        task: "multiclass" (argmax) or "binary"/"multilabel" (p > threshold).
        pa, pb: (N, C) probabilities from the two frameworks.
        tol: the float32 tolerance on probabilities.
        threshold: for binary/multilabel.

    A multiclass disagreement is explained when, on both sides, the two
    classes picked are within tol of each other; a thresholded one when both
    probabilities are within tol of the threshold.

    Returns:
        (explained, unexplained): lists of (item index, description).
    """
    pa, pb = np.asarray(pa, np.float64), np.asarray(pb, np.float64)
    explained, unexplained = [], []
    if task == "multiclass":
        ca, cb = pa.argmax(-1), pb.argmax(-1)
        for i in np.flatnonzero(ca != cb):
            i, j, k = int(i), int(ca[i]), int(cb[i])
            gap = max(abs(pa[i, j] - pa[i, k]), abs(pb[i, j] - pb[i, k]))
            desc = f"item {i}: class {j} vs {k}, scores {pa[i, j]:.9g}/{pa[i, k]:.9g} vs {pb[i, j]:.9g}/{pb[i, k]:.9g}"
            (explained if gap <= tol else unexplained).append((i, desc))
        return explained, unexplained
    if task in ("binary", "multilabel"):
        da, db = pa > threshold, pb > threshold
        for idx in np.argwhere(da != db):
            idx = tuple(int(v) for v in idx)
            near = max(abs(pa[idx] - threshold), abs(pb[idx] - threshold))
            desc = f"{list(idx)}: {pa[idx]:.9g} vs {pb[idx]:.9g} at threshold {threshold:g}"
            (explained if near <= tol else unexplained).append((idx[0], desc))
        return explained, unexplained
    raise ValueError(f"no discrete predictions for task {task!r}")


def threshold_ties(pa, pb, thresholds, tol: float) -> np.ndarray:
    """Per threshold, how many probabilities (either side) lie within tol of it: (T,) ints."""
    p = np.concatenate([np.asarray(pa, np.float64).ravel(), np.asarray(pb, np.float64).ravel()])
    return np.array([int(np.sum(np.abs(p - t) <= tol)) for t in np.asarray(thresholds, np.float64)])


def choice_explained(y, pa, pb, thresholds, choice_a: float, choice_b: float, tol: float) -> tuple:
    """Whether near ties can explain two different threshold choices.

    Each threshold's accuracy_multi is bounded by letting every probability
    within tol of it count either way: [lb, ub]. A threshold is a possible
    best when ub >= max(lb) over all thresholds. The two choices are
    explained when both are possible bests.

    Returns:
        (explained: bool, description with the ties at both thresholds).
    """
    y = np.asarray(y) > 0.5
    pa, pb = np.asarray(pa, np.float64), np.asarray(pb, np.float64)
    thresholds = np.asarray(thresholds, np.float64)
    n = y.size
    lb, ub = [], []
    for t in thresholds:
        near = (np.abs(pa - t) <= tol) | (np.abs(pb - t) <= tol)
        right = ((pa > t) == y) & ~near
        lb.append(right.sum() / n)
        ub.append((right.sum() + near.sum()) / n)
    lb, ub = np.array(lb), np.array(ub)
    best = lb.max()
    ia, ib = int(np.argmin(np.abs(thresholds - choice_a))), int(np.argmin(np.abs(thresholds - choice_b)))
    ok = bool(ub[ia] >= best and ub[ib] >= best)
    counts = threshold_ties(pa, pb, thresholds[[ia, ib]], tol)
    desc = (f"thresholds {choice_a:g} / {choice_b:g}: accuracy within [{lb[ia]:.6g}, {ub[ia]:.6g}] / "
            f"[{lb[ib]:.6g}, {ub[ib]:.6g}] given {counts[0]} / {counts[1]} probabilities within {tol:.2g} of them")
    return ok, desc


def rank_swaps(y, sa, sb, tol: float, *, max_items: int = 4096) -> tuple:
    """Pairs of items whose order differs between the two score sets, per class.

    A rank metric (average precision) changes only when two items change
    order. A swap is explained when the two scores are within tol on both
    sides (a near tie); only pairs with different labels can move the metric,
    so only those are counted.

    Args:
        y: (N, C) multi-hot targets.
        sa, sb: (N, C) scores from the two frameworks.
        tol: the float32 tolerance on the scores.
        max_items: above this many items the pairwise scan is skipped (ValueError).

    Returns:
        (explained, unexplained): lists of "class c: items i, j: a_i/a_j vs b_i/b_j".
    """
    y = np.asarray(y) > 0.5
    sa, sb = np.asarray(sa, np.float64), np.asarray(sb, np.float64)
    if sa.ndim == 1:
        y, sa, sb = y.reshape(-1, 1), sa.reshape(-1, 1), sb.reshape(-1, 1)
    if len(sa) > max_items:
        raise ValueError(f"rank_swaps scans item pairs; {len(sa)} items exceed max_items={max_items}")
    explained, unexplained = [], []
    for c in range(sa.shape[1]):
        a, b, lab = sa[:, c], sb[:, c], y[:, c]
        da = np.sign(a[:, None] - a[None, :])
        db = np.sign(b[:, None] - b[None, :])
        swap = (da != db) & (lab[:, None] != lab[None, :])
        swap = np.triu(swap, 1)
        for i, j in np.argwhere(swap):
            i, j = int(i), int(j)
            tied = max(abs(a[i] - a[j]), abs(b[i] - b[j])) <= tol  # near-tied on both sides
            desc = f"class {c}: items {i}, {j}: {a[i]:.9g}/{a[j]:.9g} vs {b[i]:.9g}/{b[j]:.9g}"
            (explained if tied else unexplained).append(desc)
    return explained, unexplained


def describe_ties(ties: list) -> str:
    """'N near tie(s): first, second, ...' (at most MAX_LISTED listed)."""
    if not ties:
        return "no near ties"
    items = [t[1] if isinstance(t, tuple) else t for t in ties]
    more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{len(items)} near tie(s): " + "; ".join(items[:MAX_LISTED]) + more
