"""Planting the catalog's model, optimizer and loss bugs into the PyTorch twin.

The catalog (names, sizes, where each must be located) is shared/data/faults.py;
this module does the torch side of it. Never imports TensorFlow or Keras.
Every function takes the fault's SIZE in (0, 1]: 1 is the bug as a port
writes it, smaller values blend correct and broken behaviour.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from shared.graph import layout
from shared.data.config import KERAS_BN_EPSILON, ModelConfig, TrainConfig
from shared.data.faults import Fault
from torch_impl import losses as tlosses
from torch_impl import train as ttrain
from torch_impl.models import BatchNorm2dKeras

__all__ = ["plant_model", "make_optimizer", "mean_loss", "per_sample_loss"]

# torch/optim/adam.py default eps (added to the bias-corrected sqrt(v_hat)).
TORCH_ADAM_EPS = 1e-8
# torch's BatchNorm2d default eps (torch/nn/modules/batchnorm.py).
TORCH_BN_EPS = 1e-5


def _blend(t: torch.Tensor, broken: torch.Tensor, size: float) -> None:
    t.copy_((1 - size) * t + size * broken)


def _unbiased_forward(size: float):
    def forward(self, x):
        if not self.training:
            return nn.BatchNorm2d.forward(self, x)
        batch_mean = torch.zeros_like(self.running_mean)
        batch_var = torch.ones_like(self.running_var)
        y = F.batch_norm(x, batch_mean, batch_var, self.weight, self.bias, training=True, momentum=1.0, eps=self.eps)
        n = x.numel() // x.shape[1]
        biased = batch_var * ((n - 1) / n)
        stored = biased * (1 + size / (n - 1))  # size 1: n/(n-1) x biased = unbiased, as stock torch stores
        with torch.no_grad():
            m = self.keras_momentum
            self.running_mean.mul_(m).add_(batch_mean, alpha=1.0 - m)
            self.running_var.mul_(m).add_(stored, alpha=1.0 - m)
            self.num_batches_tracked.add_(1)
        return y
    return forward


def _symmetric_forward(size: float):
    def forward(self, x):
        correct = nn.Conv2d.forward(self, x if self.tf_pad is None else F.pad(x, self.tf_pad))
        sym = F.conv2d(x, self.weight, self.bias, self.stride, 1)  # padding=1 on every side
        if sym.shape != correct.shape:
            return correct
        return (1 - size) * correct + size * sym
    return forward


def plant_model(model: nn.Module, config: ModelConfig, fault: Fault, size: float = 1.0) -> None:
    """Apply a "model" fault to the built-in torch twin, in place (re-apply after loading weights)."""
    with torch.no_grad():
        if fault.name == "bn-epsilon":
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eps = KERAS_BN_EPSILON + size * (TORCH_BN_EPS - KERAS_BN_EPSILON)
        elif fault.name == "bn-momentum":
            for m in model.modules():
                if isinstance(m, BatchNorm2dKeras):
                    new_weight = (1 - config.bn_momentum) + size * (2 * config.bn_momentum - 1)
                    m.keras_momentum = 1 - new_weight
        elif fault.name == "bn-unbiased-var":
            for m in model.modules():
                if isinstance(m, BatchNorm2dKeras):
                    m.forward = types.MethodType(_unbiased_forward(size), m)
        elif fault.name == "same-padding":
            conv = model.conv2
            if conv.tf_pad is not None:  # only an even size makes TF's padding asymmetric
                conv.forward = types.MethodType(_symmetric_forward(size), conv)
        elif fault.name == "flatten-order":
            w = model.fc1.weight
            k = layout.flatten_dense_weight_to_kernel(w.numpy(), config.flatten_hwc)
            _blend(w, torch.from_numpy(layout.dense_kernel_to_weight(k)).to(w.dtype), size)
        elif fault.name == "conv-kernel":
            w = model.conv1.weight
            _blend(w, w.transpose(2, 3).clone(), size)
        elif fault.name == "conv-flip":
            w = model.conv1.weight
            _blend(w, torch.flip(w, dims=(2, 3)), size)
        elif fault.name == "dense-transpose":
            w = model.dense1.weight
            _blend(w, w.detach().clone().T.reshape(w.shape), size)
        else:
            raise ValueError(f"{fault.name} is not a model fault")


class _AdamTorchEps(ttrain.AdamKeras):
    """AdamKeras whose eps moves toward stock torch's (1e-8 on sqrt(v_hat))."""

    def __init__(self, *a, size: float, **kw):
        super().__init__(*a, **kw)
        self.size = size

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if "schedule" in group:
                group["lr"] = group["schedule"](group["keras_step"])
            group["keras_step"] += 1
            keras_t = ttrain.keras_adam_eps(group["keras_epsilon"], group["betas"][1], group["keras_step"])
            group["eps"] = (1 - self.size) * keras_t + self.size * TORCH_ADAM_EPS
        return torch.optim.AdamW.step(self, closure)


class _SGDTorchForm(ttrain.SGDKeras):
    """SGDKeras whose momentum buffer is rescaled only partly (size 1: not at all,
    stock torch's form) across a learning-rate change."""

    def __init__(self, *a, size: float, **kw):
        super().__init__(*a, **kw)
        self.size = size

    def _rescale_momentum(self, group, lr: float) -> None:
        if lr == group["applied_lr"]:
            return
        factor = (group["applied_lr"] / lr) ** (1 - self.size)
        for p in group["params"]:
            buf = self.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(factor)
        group["applied_lr"] = lr


class _CoupledDecay:
    """Moves a fraction `size` of the weight decay into the gradient (L2), as
    torch's Adam/SGD(weight_decay) do; the rest stays decoupled."""

    def __init__(self, opt, wd: float, size: float):
        self.opt, self.wd, self.size = opt, wd, size
        for group in opt.param_groups:
            if "decoupled_weight_decay" in group:
                group["decoupled_weight_decay"] = wd * (1 - size)
            else:
                group["weight_decay"] = wd * (1 - size)

    def __getattr__(self, name):
        return getattr(self.opt, name)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.add_(p, alpha=self.wd * self.size)
        return self.opt.step(closure)


def make_optimizer(model: nn.Module, train_config: TrainConfig, fault: Fault | None = None, size: float = 1.0):
    """torch_impl.train.make_optimizer, with an "optimizer" fault planted."""
    if fault is None or fault.kind != "optimizer":
        return ttrain.make_optimizer(model, train_config)
    tc = train_config
    if fault.name == "adam-epsilon" and tc.optimizer == "adam":
        opt = _AdamTorchEps(model.parameters(), lr=float(tc.learning_rate), betas=(float(tc.beta_1), float(tc.beta_2)),
                            keras_epsilon=float(tc.epsilon), weight_decay=float(tc.weight_decay), size=size)
    elif fault.name == "sgd-momentum-form" and tc.optimizer == "sgd":
        opt = _SGDTorchForm(model.parameters(), lr=float(tc.learning_rate), momentum=float(tc.momentum),
                            decoupled_weight_decay=float(tc.weight_decay), size=size)
    elif fault.name == "coupled-weight-decay" and tc.weight_decay:
        return _CoupledDecay(ttrain.make_optimizer(model, tc), float(tc.weight_decay), size)
    else:
        return ttrain.make_optimizer(model, tc)
    if tc.lr_change_step:
        for group in opt.param_groups:
            group["schedule"] = tc.lr_at
    return opt


def per_sample_loss(task: str, logits: torch.Tensor, y: torch.Tensor, fault: Fault | None = None,
                    size: float = 1.0) -> torch.Tensor:
    """torch_impl.losses.per_sample_loss, with a "loss" fault planted."""
    good = tlosses.per_sample_loss(task, logits, y)
    if fault is None or fault.name != "bce-probabilities" or task not in ("binary", "multilabel"):
        return good
    p = torch.sigmoid(logits)
    bad = F.binary_cross_entropy(p, y.to(p.dtype).reshape(p.shape), reduction="none")  # log clamped at -100
    bad = bad.mean(dim=-1) if bad.ndim > 1 else bad
    return (1 - size) * good + size * bad.reshape(good.shape)


def mean_loss(task: str, logits: torch.Tensor, y: torch.Tensor, fault: Fault | None = None,
              size: float = 1.0) -> torch.Tensor:
    return per_sample_loss(task, logits, y, fault, size).mean()

