"""Keras' losses in torch for `compare.py verify` (keras/src/losses/losses.py and
loss.py): per-item loss, label smoothing, the reduction and an output mask, as
Keras computes them; several outputs sum their losses, as keras_impl/verify/__init__.py
does on the Keras side."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shared.core.errors import UsageError

__all__ = ["torch_loss", "total_loss", "KERAS_EPSILON"]

KERAS_EPSILON = 1e-7  # keras.backend.epsilon() (keras/src/backend/config.py): the loss clip


def total_loss(spec: dict, out, y, dtype: str, mask=None) -> torch.Tensor:
    """torch_loss of one output, or its sum over several (y: one target per output), as Keras' side sums them."""
    if not isinstance(out, list):
        return torch_loss(spec, out, _target(y, spec, dtype), mask)
    return sum(torch_loss(spec, o, _target(t, spec, dtype)) for o, t in zip(out, y))


def _target(y, spec: dict, dtype: str) -> torch.Tensor:
    y = np.asarray(y)
    return torch.as_tensor(y.astype(np.int64) if spec["kind"] == "sparse_ce" else y.astype(dtype))


def torch_loss(spec: dict, out: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Keras' loss for `spec` (keras/src/losses/losses.py): per-item loss over the
    last axis (an item is a sample, or a step of a per-step output), label
    smoothing as Keras applies it, then the reduction (keras/src/losses/loss.py
    reduce_values: "sum", or "sum_over_batch_size" / "mean": the sum over the
    number of items).

    mask: the Keras mask of the model output (boolean over the items), as
    `apply_mask` weighs them: masked items 0, kept ones total/valid, so the
    mean runs over the kept items only."""
    kind, logits, ls = spec["kind"], spec["from_logits"], spec.get("label_smoothing", 0.0)
    if kind in ("sparse_ce", "ce"):
        if logits:
            logp = torch.log_softmax(out, dim=-1)
        else:  # Keras renormalises, then clips at epsilon
            logp = torch.log(torch.clamp(out / out.sum(-1, keepdim=True), KERAS_EPSILON, 1 - KERAS_EPSILON))
        if kind == "sparse_ce":
            per = -logp.gather(-1, y.reshape(*out.shape[:-1], 1)).squeeze(-1)
        else:
            y = y * (1 - ls) + ls / out.shape[-1] if ls else y
            per = -(y * logp).sum(-1)
    elif kind == "bce":
        y = y * (1 - ls) + 0.5 * ls if ls else y
        if logits:
            per = F.binary_cross_entropy_with_logits(out, y, reduction="none").mean(-1)
        else:
            p = torch.clamp(out, KERAS_EPSILON, 1 - KERAS_EPSILON)
            per = (-(y * torch.log(p) + (1 - y) * torch.log(1 - p))).mean(-1)
    elif kind == "mse":
        per = ((out - y.reshape(out.shape)) ** 2).mean(-1)
    elif kind == "mae":
        per = (out - y.reshape(out.shape)).abs().mean(-1)
    else:
        raise UsageError(f"loss kind {kind!r} is not supported by verify")
    total = per.numel()
    if mask is not None:
        keep = torch.as_tensor(np.asarray(mask, dtype=bool)).reshape(per.shape)
        if spec["reduction"] == "sum":
            per = per * keep.to(per.dtype)
        else:
            valid = int(keep.sum())
            weight = torch.tensor(total / valid if valid else 0.0, dtype=per.dtype)  # not a float32 scalar
            per = per * torch.where(keep, weight, torch.zeros((), dtype=per.dtype))
    return per.sum() if spec["reduction"] == "sum" else per.sum() / total
