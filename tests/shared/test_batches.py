"""shared/data/batches.py: the one batch order both frameworks replay."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.batches import batch_fingerprints, batch_plan, cast_batch, cast_batches, make_batches
from shared.data.dataset import array_fingerprint


def test_each_epoch_is_a_permutation_without_repeats():
    plan = batch_plan(n_items=10, batch_size=3, steps=9, seed=0)
    assert len(plan) == 9 and all(b.shape == (3,) and b.dtype == np.int64 for b in plan)
    # 10 // 3 = 3 full batches per epoch; the 10th item of each epoch is dropped.
    rng = np.random.default_rng(0)
    for epoch in range(3):
        perm = rng.permutation(10)
        got = np.concatenate(plan[3 * epoch : 3 * epoch + 3])
        np.testing.assert_array_equal(got, perm[:9])
        assert len(set(got.tolist())) == 9


def test_steps_cut_mid_epoch():
    plan = batch_plan(8, 4, 3, seed=7)
    full = batch_plan(8, 4, 4, seed=7)
    assert len(plan) == 3
    for a, b in zip(plan, full):
        np.testing.assert_array_equal(a, b)
    assert sorted(np.concatenate(full[:2]).tolist()) == list(range(8))
    assert sorted(np.concatenate(full[2:]).tolist()) == list(range(8))


def test_same_seed_same_plan_other_seed_other_plan():
    a, b, c = (batch_plan(100, 16, 20, s) for s in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_zero_steps_and_exact_fit():
    assert batch_plan(5, 5, 0, 0) == []
    plan = batch_plan(5, 5, 2, 0)
    assert [sorted(b.tolist()) for b in plan] == [[0, 1, 2, 3, 4]] * 2


def test_too_few_items_names_the_numbers():
    with pytest.raises(ValueError, match=r"batch_size=32 is larger than the dataset \(20 items\)"):
        batch_plan(20, 32, 5, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batch_plan(20, 0, 5, 0)


def test_make_batches_copies_contiguous():
    x = np.asfortranarray(np.arange(60, dtype=np.float32).reshape(10, 6))
    y = np.arange(10, dtype=np.int64)
    plan = batch_plan(10, 4, 3, seed=1)
    batches = make_batches(x, y, plan)
    for (bx, by), idx in zip(batches, plan):
        assert bx.flags.c_contiguous and by.flags.c_contiguous
        np.testing.assert_array_equal(bx, x[idx])
        np.testing.assert_array_equal(by, idx)
        assert not np.shares_memory(bx, x)
    x[:] = -1
    assert batches[0][0].min() >= 0


def test_fingerprints_match_array_fingerprint():
    rng = np.random.default_rng(0)
    x = rng.random((12, 4, 4, 3), dtype=np.float32)
    y = rng.integers(0, 3, 12)
    batches = make_batches(x, y, batch_plan(12, 5, 4, 0))
    fps = batch_fingerprints(batches)
    assert fps == [array_fingerprint(bx, by) for bx, by in batches]
    assert len(set(fps)) == 4 and all(len(f) == 16 for f in fps)


def test_cast_rule():
    x = np.ones((2, 3), np.float32)
    xi, yi = cast_batch(x, np.array([1, 2], np.int64), "float64")
    assert xi.dtype == np.float64 and yi.dtype == np.int64
    _, yf = cast_batch(x, np.zeros((2, 1), np.float32), "float64")
    assert yf.dtype == np.float64
    (xc, _), = cast_batches([(x, yf)], "float32")
    assert xc.dtype == np.float32 and not np.shares_memory(xc, x)
    with pytest.raises(ValueError, match="dtype must be one of"):
        cast_batch(x, yf, "float16")
