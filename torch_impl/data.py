"""PyTorch side of the shared batch order: a Dataset whose item i is batch i.

Mirror of keras_impl/data.py (TorchBatches <-> KerasBatches,
to_torch_batches <-> to_keras_batches). Images become NCHW, PyTorch's native
layout; fingerprints_seen turns them back to NHWC before hashing.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.data.batches import cast_batches
from shared.data.dataset import array_fingerprint
from shared.graph.layout import nchw_to_nhwc, nhwc_to_nchw

__all__ = ["TorchBatches", "to_torch_batches", "fingerprints_seen"]


class TorchBatches(torch.utils.data.Dataset):
    """Batch i is the i-th (x, y) of the given list; no shuffling, no reordering.

    Args:
        batches: (x, y) numpy batches, e.g. from shared.batches.make_batches.
        dtype: "float32" or "float64" for x and for float targets; integer
            class indices stay torch.int64.
        channels_first: the batches are in torch layout already (NCHW, the
            engine's common layout) and go to the model as they are; False:
            4-D inputs are NHWC and permuted to NCHW.
    """

    def __init__(self, batches: list, dtype: str = "float32", channels_first: bool = False):
        super().__init__()
        self._batches = cast_batches(batches, dtype)
        self._to_model = (lambda x: x) if channels_first else nhwc_to_nchw

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int) -> tuple:
        if not 0 <= index < len(self._batches):
            raise IndexError(f"batch index {index} out of range for {len(self._batches)} batches")
        x, y = self._batches[index]
        return torch.from_numpy(self._to_model(x).copy()), torch.from_numpy(y.copy())


def to_torch_batches(batches: list, dtype: str = "float32", channels_first: bool = False) -> torch.utils.data.DataLoader:
    """The PyTorch feed for `batches`: a DataLoader that yields them as they are.

    Args:
        batches: (x, y) numpy batches.
        dtype: "float32" or "float64".
        channels_first: the batches are NCHW already (see TorchBatches).

    Returns:
        DataLoader(TorchBatches(...), batch_size=None, shuffle=False).
    """
    return torch.utils.data.DataLoader(TorchBatches(batches, dtype=dtype, channels_first=channels_first),
                                       batch_size=None, shuffle=False)


def _to_canonical(x: torch.Tensor) -> np.ndarray:
    """What the model receives, back as numpy in the canonical NHWC layout."""
    return nchw_to_nhwc(x.detach().cpu().numpy())


def fingerprints_seen(loader: torch.utils.data.DataLoader) -> list:
    """array_fingerprint(x, y) of what iterating `loader` yields, batch by batch.

    Args:
        loader: the feed.

    Returns:
        One fingerprint per batch; equal to shared.data.batches.batch_fingerprints
        of the (cast) input batches.
    """
    return [array_fingerprint(_to_canonical(x), y.detach().cpu().numpy()) for x, y in loader]
