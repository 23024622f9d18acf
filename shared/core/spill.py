"""Arrays parked on disk until a check reads them (issue 18), framework-free.

A port proof holds several full sets of arrays at once (a side's gradients of
every parameter, its tensor at every node, the float64 reference the float32
rows measure against); for a 133M-parameter model each set is 0.5-1 GB. A
`SpilledArrays` is a read-only mapping of the same names to the same arrays,
kept as .npy files in a temporary folder: each read loads one array (bit for
bit what was written), so at most the arrays a check is comparing are resident.
The folder goes when the mapping is closed or collected.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["SpilledArrays", "spill"]

SPILL_PREFIX = "ktp-spill-"  # temporary folder name prefix (in the system's temp dir)


class _Kept:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class SpilledArrays(Mapping):
    """{name: array} on disk; `m[name]` loads that array."""

    def __init__(self, arrays):
        """arrays: a mapping, or (name, array) pairs (a generator: one array made at a time)."""
        self._dir = tempfile.TemporaryDirectory(prefix=SPILL_PREFIX)
        self._files: dict = {}  # name -> .npy path, or the value itself (kept in memory: not a numeric ndarray)
        for i, (name, value) in enumerate(arrays.items() if isinstance(arrays, Mapping) else arrays):
            if not isinstance(value, np.ndarray) or value.dtype.hasobject:
                self._files[name] = _Kept(value)
                continue
            path = Path(self._dir.name) / f"{i}.npy"
            np.save(path, value, allow_pickle=False)
            self._files[name] = path

    def __getitem__(self, name):
        where = self._files[name]
        return where.value if isinstance(where, _Kept) else np.load(where, allow_pickle=False)

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, name) -> bool:
        return name in self._files

    def only(self, names) -> "SpilledArrays":
        """A lazy view of the names in `names` (in this mapping's order), loading on read as this one does."""
        names = set(names)
        view = SpilledArrays.__new__(SpilledArrays)
        view._dir = self._dir  # the folder lives while a view does; close() the whole, not a view
        view._files = {n: p for n, p in self._files.items() if n in names}
        return view

    def close(self) -> None:
        self._files.clear()
        self._dir.cleanup()


def spill(arrays) -> SpilledArrays:
    """The arrays of `arrays` (a dict, or (name, array) pairs) moved to disk: a
    dict is emptied, so its memory goes as soon as the caller holds no other
    reference to them."""
    out = SpilledArrays(arrays)
    if isinstance(arrays, dict):
        arrays.clear()
    return out
