"""Near ties explain discrete disagreements; far-apart scores do not."""

from __future__ import annotations

import numpy as np
import pytest

from shared.verdict import metrics
from shared.verdict.ties import choice_explained, describe_ties, prediction_ties, rank_swaps

TOL = 1e-6


def test_multiclass_argmax_flip_on_a_near_tie_is_explained():
    pa = np.array([[0.4, 0.4 + 3e-7, 0.2 - 3e-7], [0.7, 0.2, 0.1]])
    pb = np.array([[0.4 + 3e-7, 0.4, 0.2 - 3e-7], [0.7, 0.2, 0.1]])
    explained, unexplained = prediction_ties("multiclass", pa, pb, TOL)
    assert [i for i, _ in explained] == [0] and not unexplained
    assert "class 1 vs 0" in explained[0][1]


def test_multiclass_flip_far_from_a_tie_is_not():
    pa = np.array([[0.6, 0.3, 0.1]])
    pb = np.array([[0.3, 0.6, 0.1]])
    explained, unexplained = prediction_ties("multiclass", pa, pb, TOL)
    assert not explained and [i for i, _ in unexplained] == [0]


def test_threshold_flip_needs_the_probability_at_the_threshold():
    pa = np.array([[0.5 + 2e-7, 0.9], [0.2, 0.6]])
    pb = np.array([[0.5 - 1e-7, 0.9], [0.2, 0.4]])
    explained, unexplained = prediction_ties("multilabel", pa, pb, TOL)
    assert [i for i, _ in explained] == [0] and [i for i, _ in unexplained] == [1]
    assert "[0, 0]" in explained[0][1] and "[1, 1]" in unexplained[0][1]


def test_map_change_from_a_swapped_near_tie_is_explained():
    """The issue's seed-1 case: two nearly tied scores swap places, mAP moves."""
    y = np.array([[1], [0], [1], [0]])
    sa = np.array([[0.9], [0.3000001], [0.3], [0.1]])
    sb = np.array([[0.9], [0.3], [0.3000001], [0.1]])
    assert metrics.mean_average_precision(y, sa) != metrics.mean_average_precision(y, sb)
    explained, unexplained = rank_swaps(y, sa, sb, TOL)
    assert len(explained) == 1 and not unexplained
    assert explained[0].startswith("class 0: items 1, 2")
    # The same swap with scores 0.1 apart is a real difference.
    sb_far = np.array([[0.9], [0.2], [0.3], [0.1]])
    sa_far = np.array([[0.9], [0.3], [0.2], [0.1]])
    explained, unexplained = rank_swaps(y, sa_far, sb_far, TOL)
    assert not explained and len(unexplained) == 1


def test_swaps_between_items_of_the_same_label_do_not_count():
    y = np.array([[1], [1], [0]])
    sa = np.array([[0.5], [0.6], [0.1]])
    sb = np.array([[0.6], [0.5], [0.1]])
    assert rank_swaps(y, sa, sb, TOL) == ([], [])


def test_threshold_choice_explained_only_by_ties_at_the_thresholds():
    y = np.array([[1, 0], [0, 1]])
    # Both sides agree except one probability right at 0.3 / 0.35.
    pa = np.array([[0.9, 0.1], [0.3 + 1e-7, 0.8]])
    pb = np.array([[0.9, 0.1], [0.3 - 1e-7, 0.8]])
    thr = np.array([0.25, 0.3, 0.35])
    _, _, best_a = metrics.threshold_sweep(y, pa, thr)
    _, _, best_b = metrics.threshold_sweep(y, pb, thr)
    assert (best_a, best_b) == (0.35, 0.3)
    ok, desc = choice_explained(y, pa, pb, thr, best_a, best_b, TOL)
    assert ok and "probabilities within" in desc, desc
    # 0.25 is never a best (it misclassifies [1, 0] whatever the tie does).
    ok, _ = choice_explained(y, pa, pb, thr, 0.25, 0.35, TOL)
    assert not ok


def test_describe_lists_at_most_five():
    s = describe_ties([(i, f"t{i}") for i in range(7)])
    assert s.startswith("7 near tie(s): t0; t1") and "(2 more)" in s
    assert describe_ties([]) == "no near ties"


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="regression"):
        prediction_ties("regression", [[1.0]], [[1.0]], TOL)
