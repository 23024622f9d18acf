"""Losses, probabilities and predictions per task, Keras side.

Every loss takes logits (the head is linear): `from_logits=True` is the
numerically stable path the seeds insist on. Twin of torch_impl/losses.py:
  multiclass -> SparseCategoricalCrossentropy(from_logits=True) | nn.CrossEntropyLoss
  multilabel -> BinaryCrossentropy(from_logits=True)            | nn.BCEWithLogitsLoss
  binary     -> BinaryCrossentropy(from_logits=True)            | nn.BCEWithLogitsLoss
  regression -> MeanSquaredError                                | nn.MSELoss
Keras reduces BCE and MSE over the last axis first, then over the batch; the
torch side takes reduction="none" then .mean(-1), so per-sample values line up
(TRAPS.md, Losses, "BCE / MSE reduction").
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["make_loss", "per_sample_loss", "mean_loss", "probabilities"]


def make_loss(task: str, reduction: str | None = "sum_over_batch_size", dtype: str | None = None) -> keras.losses.Loss:
    """The Keras loss object for `task` (mean over the batch by default).

    Args:
        dtype: the loss' compute dtype. A Keras Loss casts its inputs to its own
            dtype, which defaults to keras.backend.floatx() ("float32") whatever
            the model's dtype: a float64 model gets a float32 loss (1e-8
            differences) unless this is set (keras/src/losses/loss.py).
    """
    kw = dict(reduction=reduction, dtype=dtype)
    if task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, **kw)
    if task in ("multilabel", "binary"):
        return keras.losses.BinaryCrossentropy(from_logits=True, **kw)
    if task == "regression":
        return keras.losses.MeanSquaredError(**kw)
    raise ValueError(f"unknown task. Received: task={task!r}")


def per_sample_loss(task: str, logits, y):
    """One loss value per item, shape (B,), in the logits' dtype."""
    return make_loss(task, reduction=None, dtype=logits.dtype)(y, logits)


def mean_loss(task: str, logits, y):
    """The scalar training loss: the mean of per_sample_loss, in the logits' dtype."""
    return make_loss(task, dtype=logits.dtype)(y, logits)


def probabilities(task: str, logits):
    """softmax for multiclass, sigmoid for multilabel/binary, identity for regression."""
    if task == "multiclass":
        return keras.ops.softmax(logits, axis=-1)
    if task in ("multilabel", "binary"):
        return keras.ops.sigmoid(logits)
    return logits


def naive_per_sample_loss(task: str, logits, y):
    """The path the seeds warn against: probabilities first, then the loss on them.

    Keras clips probabilities to [1e-7, 1 - 1e-7] (loss cap 16.12, zero gradient
    beyond it). Used only to *show* the instability; never for training.
    """
    dtype = logits.dtype
    # keras.ops.sigmoid/softmax tag their result with the logits
    # (`_keras_logits`), and the probability losses then quietly use those
    # logits instead (keras/src/losses/losses.py). A round trip through numpy
    # strips the tag, so this really is the probability path.
    probs = keras.ops.convert_to_tensor(keras.ops.convert_to_numpy(probabilities(task, logits)))
    if task == "multiclass":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=False, reduction=None, dtype=dtype)
    elif task in ("multilabel", "binary"):
        loss = keras.losses.BinaryCrossentropy(from_logits=False, reduction=None, dtype=dtype)
    else:
        return per_sample_loss(task, logits, y)
    return loss(y, probs)


__all__.append("naive_per_sample_loss")


def loss_outputs(task: str, logits, y, naive: bool = False) -> dict:
    """Probabilities, per-sample and mean loss of numpy logits, as numpy (Keras' own code).

    Twin of torch_impl.losses.loss_outputs; with naive=True also "naive loss"
    (naive_per_sample_loss). The losses run in the logits' dtype.
    """
    ops = keras.ops
    lg, yy = ops.convert_to_tensor(logits), ops.convert_to_tensor(y)
    out = {
        "probabilities": ops.convert_to_numpy(probabilities(task, lg)),
        "per-sample loss": ops.convert_to_numpy(per_sample_loss(task, lg, yy)),
        "mean loss": np.asarray(ops.convert_to_numpy(mean_loss(task, lg, yy))),
    }
    if naive:
        out["naive loss"] = ops.convert_to_numpy(naive_per_sample_loss(task, lg, yy))
    return out


__all__.append("loss_outputs")
