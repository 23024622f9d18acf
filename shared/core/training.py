"""What a training run reports, identical for both frameworks.

`keras_impl.train.train` and `torch_impl.train.train` both return a
`TrainResult`, so the harness and the tests compare two instances field by
field: loss curves with `shared.verdict.checks.compare_arrays`, fingerprints with `==`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrainResult", "stock_training_row", "SPARSE_ADAM_NOTE"]


@dataclass
class TrainResult:
    """One training run.

    Args:
        losses: (steps,) float64; entry i is the loss of batch i computed in the
            forward pass *before* step i's update (the value the gradient of
            step i was taken from), not a running mean as `model.fit` logs.
        fingerprints: `shared.data.dataset.array_fingerprint(x_nhwc, y)` of each batch
            the loop consumed, computed from the tensors the framework received,
            converted back to canonical numpy (images NHWC). The feeds cast to
            the model dtype (shared.data.batches.cast_batch), so this equals
            batch_fingerprints(cast_batches(batches, dtype)): the batches' own
            fingerprints for float32 data and a float32 model. Equal lists on
            both sides prove both frameworks saw the same bytes in the same order.
        seconds: wall time of the loop (conversion, steps, loss read-back),
            excluding the optimizer construction.
    """

    losses: np.ndarray
    fingerprints: list = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self):
        self.losses = np.asarray(self.losses, dtype=np.float64).reshape(-1)  # (steps,)
        self.fingerprints = list(self.fingerprints)

    @property
    def steps(self) -> int:
        return int(self.losses.shape[0])

    def to_dict(self) -> dict:
        return {"losses": [float(v) for v in self.losses], "fingerprints": list(self.fingerprints),
                "seconds": float(self.seconds)}


def stock_training_row(rows: list, optimizer: str):
    """One information row from the trained-weight rows of Keras against torch
    trained with torch's dense Embedding gradient: the worst of them, named
    and explained (TRAPS.md, "Keras' Adam on an Embedding"). `rows`:
    shared.verdict.checks.Check rows; the worst is returned as an information row."""
    worst = max(rows, key=lambda c: c.max_rel_diff)
    return dataclasses.replace(
        worst, check=(f"stock torch {optimizer} (dense Embedding gradient) vs Keras' sparse update, "
                      f"worst of {len(rows)} trained weights: {worst.check}"),
        info=True, reason="a stock torch loop, not the port: Keras' sparse Embedding update (TRAPS.md)",
        b="stock torch", detail={**worst.detail, "diagnosis": SPARSE_ADAM_NOTE})


SPARSE_ADAM_NOTE = ("Keras (TF) gets an Embedding's gradient as IndexedSlices, one slice per looked-up id, and its "
                    "Adam adds the sum of the slices' squares to v where torch's dense gradient adds the square of "
                    "their sum; the training rows use that rule (torch_impl/train.py AdamKeras with "
                    "KerasEmbeddingGrads). A stock torch Adam on this port trains differently by this much whenever "
                    "a batch repeats an id; not a port bug. To match Keras, use nn.Embedding(sparse=True) with an Adam "
                    "that adds summed per-slice squares (TRAPS.md, \"Keras' Adam on an Embedding\")")

