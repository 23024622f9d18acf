"""Keras side of the shared batch order: a PyDataset that replays it verbatim.

Mirror of torch_impl/data.py (KerasBatches <-> TorchBatches,
to_keras_batches <-> to_torch_batches). Images stay NHWC, Keras' native layout.
"""

from __future__ import annotations

import keras
import numpy as np

from shared.data.batches import cast_batches
from shared.data.dataset import array_fingerprint
from shared.graph.layout import nchw_to_nhwc

__all__ = ["KerasBatches", "to_keras_batches", "fingerprints_seen"]


class KerasBatches(keras.utils.PyDataset):
    """Batch i is the i-th (x, y) of the given list; no shuffling, no reordering.

    Args:
        batches: (x, y) numpy batches, e.g. from shared.batches.make_batches.
        dtype: "float32" or "float64" for x and for float targets; integer
            class indices stay int64.
        channels_first: the batches are in torch layout (NCHW, the engine's
            common layout) and 4-D inputs are permuted to NHWC here; False:
            they are NHWC already.
        **kwargs: passed to keras.utils.PyDataset (workers, ...).
    """

    def __init__(self, batches: list, dtype: str = "float32", channels_first: bool = False, **kwargs):
        super().__init__(**kwargs)
        self._batches = cast_batches(batches, dtype)
        if channels_first:
            self._batches = [(nchw_to_nhwc(x), y) for x, y in self._batches]

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int) -> tuple:
        if not 0 <= index < len(self._batches):
            raise IndexError(f"batch index {index} out of range for {len(self._batches)} batches")
        x, y = self._batches[index]
        return x.copy(), y.copy()


def to_keras_batches(batches: list, dtype: str = "float32", channels_first: bool = False) -> KerasBatches:
    """The Keras feed for `batches` (pass it to model.fit without shuffle effects).

    Args:
        batches: (x, y) numpy batches.
        dtype: "float32" or "float64".
        channels_first: the batches are NCHW (see KerasBatches).

    Returns:
        A KerasBatches over them.
    """
    return KerasBatches(batches, dtype=dtype, channels_first=channels_first)


def _to_canonical(x) -> np.ndarray:
    """What the model receives, back as numpy in the canonical NHWC layout."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def fingerprints_seen(pydataset: KerasBatches) -> list:
    """array_fingerprint(x, y) of what __getitem__ returns, batch by batch.

    Args:
        pydataset: the feed.

    Returns:
        One fingerprint per batch; equal to shared.data.batches.batch_fingerprints
        of the (cast) input batches.
    """
    out = []
    for i in range(len(pydataset)):
        x, y = pydataset[i]
        out.append(array_fingerprint(_to_canonical(x), np.asarray(keras.ops.convert_to_numpy(y))))
    return out
