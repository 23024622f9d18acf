"""Arrays parked on disk until a check reads them (issue 18), framework-free.

A port proof holds several full sets of arrays at once (a side's gradients of
every parameter, its tensor at every node, the float64 reference the float32
rows measure against); for a 133M-parameter model each set is 0.5-1 GB. A
`SpilledArrays` is a read-only mapping of the same names to the same arrays,
kept as .npy files in a temporary folder: each read loads one array (bit for
bit what was written), so at most the arrays a check is comparing are resident.
The folder goes when the mapping is closed or collected.

A set smaller than SPILL_MIN_BYTES stays in memory (issue 19): parking it
would cost a write, a read and an unlink (ext4 with `discard` here: seconds
for ResNet50's sets) to save memory that does not matter at that size. A read still returns a fresh copy, as
np.load does, so the mapping behaves the same either way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["SpilledArrays", "spill"]

SPILL_PREFIX = "ktp-spill-"  # temporary folder name prefix (in the system's temp dir)
# A set whose numeric arrays total at most this stays in memory (see above).
# The port holds up to 12 sets (values, gradients, trained weights; 2 sides,
# 2 dtypes), so at most 1.5 GiB more is resident; ResNet50 at 64x64 keeps its
# node values and float32 gradients/weights (49-97 MB each) and parks its
# float64 gradients and weights (189 MB); VGG's sets (0.5-1 GB) go to disk (issue 18).
SPILL_MIN_BYTES = 128 << 20


class _Kept:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class SpilledArrays(Mapping):
    """{name: array} on disk; `m[name]` loads that array."""

    def __init__(self, arrays, min_bytes: int | None = None):
        """arrays: a mapping, or (name, array) pairs (a generator: one array made at a time).
        min_bytes: the set stays in memory up to this many bytes of arrays (default SPILL_MIN_BYTES)."""
        self._dir = None  # the folder, made when the set outgrows min_bytes
        self._files: dict = {}  # name -> .npy path, or _Kept(value): in memory
        self._saved = 0  # .npy files written
        limit = SPILL_MIN_BYTES if min_bytes is None else min_bytes
        held = 0
        for name, value in arrays.items() if isinstance(arrays, Mapping) else arrays:
            if not _numeric(value):
                self._files[name] = _Kept(value)
                continue
            held += value.nbytes
            if self._dir is None and held <= limit:  # a snapshot, as the file would be: the caller may reuse the buffer
                self._files[name] = _Kept(np.array(value, copy=True))
                continue
            if self._dir is None:  # outgrown: what was held goes to disk too
                self._dir = tempfile.TemporaryDirectory(prefix=SPILL_PREFIX)
                for n, kept in list(self._files.items()):
                    if _numeric(kept.value):
                        self._files[n] = self._save(kept.value)
            self._files[name] = self._save(value)

    def _save(self, value) -> Path:
        path = Path(self._dir.name) / f"{self._saved}.npy"
        self._saved += 1
        np.save(path, value, allow_pickle=False)
        return path

    def __getitem__(self, name):
        where = self._files[name]
        if isinstance(where, _Kept):  # a fresh copy, as np.load gives: the caller may write to it
            return where.value.copy() if _numeric(where.value) else where.value
        return np.load(where, allow_pickle=False)

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

    @property
    def on_disk(self) -> bool:
        """Whether the arrays went to disk (the set outgrew min_bytes)."""
        return self._dir is not None

    def close(self) -> None:
        self._files.clear()
        if self._dir is not None:
            self._dir.cleanup()


def _numeric(value) -> bool:
    return isinstance(value, np.ndarray) and not value.dtype.hasobject


def spill(arrays, min_bytes: int | None = None) -> SpilledArrays:
    """The arrays of `arrays` (a dict, or (name, array) pairs) moved to disk
    (kept in memory when they total at most min_bytes, default SPILL_MIN_BYTES):
    a dict is emptied, so its memory goes as soon as the caller holds no other
    reference to them."""
    out = SpilledArrays(arrays, min_bytes)
    if isinstance(arrays, dict):
        arrays.clear()
    return out
