"""Losses, probabilities and predictions per task, PyTorch side.

Twin of keras_impl/losses.py (see its docstring for the table). Per-element
losses are averaged over the last axis first, as Keras does, so that per-sample
values are comparable; the mean over the batch then equals torch's default
"mean" reduction.
"""

from __future__ import annotations

import torch
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


def per_sample_loss(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One loss value per item, shape (B,)."""
    if task != "multiclass":
        y = y.view_as(logits)  # (B,) targets against (B,1) logits would broadcast to BxB
    values = make_loss(task, reduction="none")(logits, y)
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
