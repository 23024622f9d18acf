"""Losses, probabilities and predictions per task, PyTorch side.

Twin of keras_impl/losses.py (see its docstring for the table). Per-element
losses are averaged over the last axis first, as Keras does, so that per-sample
values are comparable; the mean over the batch then equals torch's default
"mean" reduction.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["make_loss", "per_sample_loss", "mean_loss", "probabilities"]


def make_loss(task: str, reduction: str = "mean") -> nn.Module:
    """The torch loss module for `task`."""
    if task == "multiclass":
        return nn.CrossEntropyLoss(reduction=reduction)
    if task in ("multilabel", "binary"):
        return nn.BCEWithLogitsLoss(reduction=reduction)
    if task == "regression":
        return nn.MSELoss(reduction=reduction)
    raise ValueError(f"unknown task. Received: task={task!r}")


# The functional forms of make_loss' modules (the same kernels): the training
# step calls this every step, and building a loss module each time cost ~17%
# of an MLP step (torch_impl bench).
_PER_ELEMENT = {
    "multiclass": F.cross_entropy,
    "multilabel": F.binary_cross_entropy_with_logits,
    "binary": F.binary_cross_entropy_with_logits,
    "regression": F.mse_loss,
}


def per_sample_loss(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One loss value per item, shape (B,)."""
    if task not in _PER_ELEMENT:
        raise ValueError(f"unknown task. Received: task={task!r}")
    if task != "multiclass":
        y = y.view_as(logits)  # (B,) targets against (B,1) logits would broadcast to BxB
    values = _PER_ELEMENT[task](logits, y, reduction="none")
    return values if task == "multiclass" else values.mean(dim=-1)


def mean_loss(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The scalar training loss: the mean of per_sample_loss."""
    return per_sample_loss(task, logits, y).mean()


def probabilities(task: str, logits: torch.Tensor) -> torch.Tensor:
    """softmax for multiclass, sigmoid for multilabel/binary, identity for regression."""
    if task == "multiclass":
        return torch.softmax(logits, dim=-1)
    if task in ("multilabel", "binary"):
        return torch.sigmoid(logits)
    return logits


def naive_per_sample_loss(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The path the seeds warn against: probabilities first, then the loss on them.

    torch's BCELoss clamps log at -100 (loss cap 100); for multiclass,
    log(softmax) goes to -inf once a probability underflows. Used only to
    *show* the instability; never for training.
    """
    probs = probabilities(task, logits)
    if task == "multiclass":
        return nn.NLLLoss(reduction="none")(torch.log(probs), y)
    if task in ("multilabel", "binary"):
        return nn.BCELoss(reduction="none")(probs, y.view_as(probs)).mean(dim=-1)
    return per_sample_loss(task, logits, y)


__all__.append("naive_per_sample_loss")


def loss_outputs(task: str, logits, y, naive: bool = False) -> dict:
    """Probabilities, per-sample and mean loss of numpy logits, as numpy (torch's own code).

    Twin of keras_impl.losses.loss_outputs; with naive=True also "naive loss"
    (naive_per_sample_loss).
    """
    lg, yy = torch.as_tensor(np.asarray(logits)), torch.as_tensor(np.asarray(y))
    with torch.no_grad():
        out = {
            "probabilities": probabilities(task, lg).numpy(),
            "per-sample loss": per_sample_loss(task, lg, yy).numpy(),
            "mean loss": mean_loss(task, lg, yy).numpy(),
        }
        if naive:
            out["naive loss"] = naive_per_sample_loss(task, lg, yy).numpy()
    return out


__all__.append("loss_outputs")
