"""shared/core/spill.py (arrays parked on disk) and compare_arrays' lean path for
finite float arrays (issue 18): same arrays back, same Check rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.verdict import checks
from shared.verdict.checks import compare_arrays
from shared.core.memory import MemoryLog, peak_rss_mib, rss_mib
from shared.core.spill import SpilledArrays, spill
from shared.verdict.tolerances import Tolerance


@pytest.mark.parametrize("min_bytes", [0, None])  # on disk; in memory (a small set, issue 19)
def test_spill_round_trip_bit_exact_and_empties_the_dict(min_bytes):
    rng = np.random.default_rng(0)
    arrays = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5).astype(np.float32), "i": np.arange(4)}
    kept = {k: v.copy() for k, v in arrays.items()}
    s = spill(arrays, min_bytes)
    assert s.on_disk == (min_bytes == 0)
    assert arrays == {} and list(s) == ["a", "b", "i"] and len(s) == 3 and "a" in s and "z" not in s
    for k, v in kept.items():
        assert s[k].dtype == v.dtype and np.array_equal(s[k], v)
    view = s.only(["i", "a"])
    assert list(view) == ["a", "i"] and np.array_equal(view["i"], kept["i"])
    s.close()


def test_spill_takes_pairs_one_at_a_time():
    s = SpilledArrays(((str(i), np.full(2, i)) for i in range(3)), min_bytes=0)
    assert s.on_disk and [int(s[k][0]) for k in s] == [0, 1, 2]
    s.close()


def test_spill_held_in_memory_until_the_set_outgrows_min_bytes():
    """Under min_bytes nothing touches the disk and reads are snapshots; the
    array that passes it sends the held ones to disk too (issue 19)."""
    source = np.arange(4.0)  # 32 bytes
    small = spill({"a": source, "s": "text"}, min_bytes=64)
    source[0] = 99.0  # the caller reuses its buffer: the set keeps what it was given
    got = small["a"]
    got[1] = -1.0  # a read is the caller's own array
    assert not small.on_disk and np.array_equal(small["a"], np.arange(4.0)) and small["s"] == "text"
    big = SpilledArrays(((n, np.full(4, float(i))) for i, n in enumerate("abc")), min_bytes=64)  # 32 + 32 + 32 bytes
    assert big.on_disk and all(isinstance(p, Path) and p.is_file() for p in big._files.values())
    assert [big[n][0] for n in big] == [0.0, 1.0, 2.0]
    folder = Path(big._dir.name)
    big.close()
    small.close()
    assert not folder.exists()


@pytest.mark.parametrize("da,db", [(np.float32, np.float32), (np.float32, np.float64), (np.float64, np.float64)])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_lean_compare_equals_the_float64_path(monkeypatch, da, db, shape):
    rng = np.random.default_rng(1)
    a = rng.normal(size=shape).astype(da)
    b = (a + rng.normal(scale=1e-6, size=shape)).astype(db)
    tol = Tolerance(rel=1e-6, abs=1e-7)
    lean = compare_arrays("x", a, b, tol, model="m", dtype="float32")
    monkeypatch.setattr(checks, "_lean_dtype", lambda x: False)
    assert compare_arrays("x", a, b, tol, model="m", dtype="float32") == lean


def test_memory_log_records_stages():
    log = MemoryLog()
    log.mark("one")
    assert rss_mib() > 0 and peak_rss_mib() >= log.stages["one"]["rss"] * 0.5
    assert set(log.stages["one"]) == {"rss", "peak", "child_peak"}


def test_lean_compare_chunks_keep_the_first_largest(monkeypatch):
    monkeypatch.setattr(checks, "_COMPARE_CHUNK", 4)
    a = np.zeros((3, 5))
    b = np.zeros((3, 5))
    b[0, 3] = b[2, 1] = 1.0  # two equal largest differences, in different chunks: the first is named
    lean = compare_arrays("x", a, b, Tolerance(rel=0.0))
    monkeypatch.setattr(checks, "_lean_dtype", lambda x: False)
    assert compare_arrays("x", a, b, Tolerance(rel=0.0)) == lean  # np.argmax over the whole: the first


def test_spill_keeps_what_is_not_a_numeric_array():
    s = spill({"f": 1.5, "o": np.array([None, 1], dtype=object), "a": np.ones(2)}, min_bytes=0)
    assert s["f"] == 1.5 and s["o"][0] is None and np.array_equal(s["a"], np.ones(2))
    s.close()
