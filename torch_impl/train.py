"""Training the PyTorch twin: optimizers, one step, a loop, loss and gradients.

Twin of keras_impl/train.py (same names, same arguments, same results). The
optimizers are stock torch ones with the two Keras conventions added
(formulas read in torch/optim/{sgd,adam,adamw}.py of the installed torch 2.13,
`_single_tensor_*`, the path CPU tensors take):

  - Adam epsilon. Keras adds eps to the raw sqrt(v) and puts the bias
    correction into the step size: w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps).
    torch adds eps to the corrected sqrt(v_hat) = sqrt(v)/sqrt(1-b2^t):
    w -= lr/(1-b1^t) * m/(sqrt(v)/sqrt(1-b2^t) + eps_t). The two are equal
    exactly when eps_t = eps / sqrt(1-b2^t) (multiply torch's fraction by
    sqrt(1-b2^t)/sqrt(1-b2^t)). `AdamKeras` sets its group's eps to that value
    before every step. Chosen over a hand-written Keras-update optimizer
    because the rest of the update stays torch's own, tested code (and the
    state_dict stays loadable into stock AdamW): the fix is one line, which is
    what a torch user would write.
  - Decoupled weight decay. Keras decays every variable that has a gradient
    *before* the update: w <- w - w*wd*lr (keras/src/optimizers/
    base_optimizer.py, `_apply_weight_decay`, called in
    `_backend_apply_gradients` before `_backend_update_step`). torch's
    AdamW does param.mul_(1 - lr*wd) before its update: the same order
    (`AdamKeras` derives from AdamW). torch's SGD(weight_decay) is L2 in the
    gradient instead, so `SGDKeras` keeps weight_decay=0 and decays
    explicitly, in Keras' order, before the stock SGD step.
  - SGD momentum: Keras v <- mu*v - lr*g, w <- w + v; torch b <- mu*b + g,
    w <- w - lr*b (b starts as g). With a constant lr, v = -lr*b at every
    step, so stock torch SGD agrees; an lr change would break it.
  - Embedding gradients (TRAPS.md, "Keras' Adam on an Embedding"): TF hands
    Keras an Embedding's gradient as a tf.IndexedSlices, one row per
    looked-up id with repeats kept, and Keras' Adam squares it slice by
    slice. Inside `KerasEmbeddingGrads` every F.embedding (nn.Embedding
    included) returns the same information as a sparse COO gradient, and
    both optimizers here apply Keras' rule to a sparse gradient (`slice_sums`).
"""

from __future__ import annotations

import inspect
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import _get_scalar_dtype
from torch.overrides import TorchFunctionMode

from shared.data.config import ModelConfig, TrainConfig, parameter_spec
from shared.data.dataset import array_fingerprint
from shared.graph.layout import nchw_to_nhwc, nhwc_to_nchw
from shared.core.training import TrainResult
from torch_impl import losses
from torch_impl.data import to_torch_batches
from torch_impl.models import TORCH_DTYPES

__all__ = ["AdamKeras", "SGDKeras", "KerasEmbeddingGrads", "SLICE_SENSITIVE", "slice_sums", "keras_adam_eps",
           "make_optimizer", "to_framework", "from_framework", "train_step", "train", "loss_and_raw_grads",
           "loss_and_grads"]


# --------------------------------------------------------------------------
# Keras' optimizers on an IndexedSlices gradient (Keras 3.15, TF 2.21; measured
# bitwise in float64 against this formula, tests/twins/test_sparse_embedding.py; sizes
# in TRAPS.md, "Keras' Adam on an Embedding").
# The update steps call keras.ops, whose TF kernels keep an IndexedSlices per
# slice or densify it (keras/src/backend/tensorflow/sparse.py):
#   - ops.square is `elementwise_unary` (numpy.py:3521): it squares each
#     slice's values, indices (repeats) kept (sparse.py:382-386);
#   - ops.subtract / ops.add are `elementwise_binary_union` (numpy.py:477,
#     :95): with a dense other operand the IndexedSlices is densified by
#     tf.convert_to_tensor, which sums the repeated rows (sparse.py:487-492);
#   - ops.multiply by a scalar keeps the slices (sparse.py:599-604); the TF
#     optimizer's assign_sub of an IndexedSlices is scatter_sub, which adds
#     repeated rows one by one (keras/src/backend/tensorflow/optimizer.py:65-72).
# Hence, for a row looked up k times with slice gradients g_1..g_k:
#   Adam/AdamW (keras/src/optimizers/adam.py:119-127):
#     m += (sum g_i - m)(1 - b1)          as a dense gradient
#     v += (sum g_i^2 - v)(1 - b2)        a dense gradient adds (sum g_i)^2
#   SGD (keras/src/optimizers/sgd.py:103-123): with momentum subtract(m*mu,
#     g*lr) densifies; without, scatter_sub adds lr*g_i per slice: both equal
#     the dense update (rounding aside).
#   weight decay (keras/src/backend/tensorflow/optimizer.py:89-98): dense,
#     every row of the table, as for any variable.
# Rows not looked up have m, v decayed like a dense zero gradient (the
# densified tensor is zero there); torch's SparseAdam, which skips them, is a
# third behaviour.
SLICE_SENSITIVE = ("adam", "adamw")  # lower-case optimizer names whose sparse update differs from the dense one


def slice_sums(grad: torch.Tensor) -> tuple:
    """(sum_i g_i, sum_i g_i^2) per row of a sparse COO gradient, duplicates kept
    apart until summed: Keras' densified IndexedSlices and its densified
    per-slice square (see above). Dense tensors, the gradient's shape."""
    indices, values = grad._indices(), grad._values()
    squares = torch.sparse_coo_tensor(indices, values * values, grad.shape, check_invariants=True)
    return grad.to_dense(), squares.to_dense()  # to_dense adds repeated indices


class KerasEmbeddingGrads(TorchFunctionMode):
    """Within it, every F.embedding call (nn.Embedding's forward included) makes a
    sparse gradient: one row per looked-up id, repeats kept (torch's
    `sparse=True`), the information TF's IndexedSlices carries to Keras.
    The module is not touched. `repeated` counts the lookups whose ids repeat
    (only there does Adam's sparse update differ from the dense one)."""

    _SIGNATURE = inspect.signature(F.embedding)

    def __init__(self):
        super().__init__()
        self.lookups = self.repeated = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.embedding:
            bound = self._SIGNATURE.bind(*args, **kwargs)
            bound.arguments["sparse"] = True
            ids = bound.arguments["input"]
            self.lookups += 1
            self.repeated += int(ids.numel() > torch.unique(ids).numel())
            return func(*bound.args, **bound.kwargs)
        return func(*args, **kwargs)


def keras_adam_eps(keras_epsilon: float, beta_2: float, step: int) -> float:
    """torch's eps at 1-based `step` that reproduces Keras' epsilon placement."""
    return keras_epsilon / math.sqrt(1.0 - beta_2**step)


class AdamKeras(torch.optim.AdamW):
    """torch AdamW (decoupled decay, as Keras) with Keras' epsilon placement.

    Args:
        params: parameters to optimise.
        lr, betas, weight_decay: as torch.optim.AdamW (weight_decay decoupled).
        keras_epsilon: epsilon in Keras' placement (added to the raw sqrt(v)).
    """

    def __init__(self, params, lr: float, betas: tuple, keras_epsilon: float, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=betas, eps=keras_epsilon, weight_decay=weight_decay, foreach=False)
        for group in self.param_groups:
            group["keras_epsilon"] = keras_epsilon
            group["keras_step"] = 0  # Keras' `iterations`: one per step() call

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if "schedule" in group:  # TrainConfig.lr_at, 0-based
                group["lr"] = group["schedule"](group["keras_step"])
            group["keras_step"] += 1
            group["eps"] = keras_adam_eps(group["keras_epsilon"], group["betas"][1], group["keras_step"])
        sparse = {p: p.grad for g in self.param_groups for p in g["params"] if p.grad is not None and p.grad.is_sparse}
        for p in sparse:
            p.grad = None  # stock AdamW rejects sparse gradients: stepped below, Keras' way
        try:
            super().step()
        finally:
            for p, grad in sparse.items():
                p.grad = grad
        for group in self.param_groups:
            for p in group["params"]:
                if p in sparse:
                    self._slices_step(p, sparse[p], group)
        return loss

    def _slices_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        """Keras' Adam on an IndexedSlices gradient: torch's own single-tensor
        AdamW step (torch/optim/adam.py, `_single_tensor_adam`, decoupled decay,
        no amsgrad) with the second moment fed the summed per-slice squares
        (see SLICE_SENSITIVE above). Same state keys as AdamW."""
        state = self.state[p]
        if not state:  # as AdamW._init_group (CPU, neither capturable nor fused)
            state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        g_sum, g_sq = slice_sums(grad)
        (beta1, beta2), lr, eps = group["betas"], group["lr"], group["eps"]
        state["step"] += 1
        step = float(state["step"])
        p.mul_(1 - lr * group["weight_decay"])
        state["exp_avg"].lerp_(g_sum, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).add_(g_sq, alpha=1 - beta2)  # dense: addcmul_(g, g, 1 - beta2)
        denom = (state["exp_avg_sq"].sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**step))


class SGDKeras(torch.optim.SGD):
    """torch SGD with momentum plus Keras' decoupled weight decay before the step.

    Args:
        params: parameters to optimise.
        lr, momentum: as torch.optim.SGD (lr must stay constant, see the module
            docstring).
        decoupled_weight_decay: Keras' weight_decay: w <- w - w*wd*lr first.
    """

    def __init__(self, params, lr: float, momentum: float, decoupled_weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=0.0, foreach=False)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = decoupled_weight_decay
            group["keras_step"] = 0
            group["applied_lr"] = lr

    def _rescale_momentum(self, group, lr: float) -> None:
        """Keras' v = mu v - lr g against torch's b = mu b + g, w -= lr b: equal
        while lr is constant (v = -lr b). When lr changes from l0 to l1, the
        Keras form is kept by scaling torch's buffer by l0 / l1 first
        (TRAPS.md, Optimizers, "SGD momentum form")."""
        if lr == group["applied_lr"]:
            return
        for p in group["params"]:
            buf = self.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(group["applied_lr"] / lr)
        group["applied_lr"] = lr

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if "schedule" in group:  # TrainConfig.lr_at, 0-based
                group["lr"] = group["schedule"](group["keras_step"])
            group["keras_step"] += 1
            self._rescale_momentum(group, group["lr"])
            wd, lr = group["decoupled_weight_decay"], group["lr"]
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    p.grad = p.grad.to_dense()  # Keras' SGD on IndexedSlices = dense (see SLICE_SENSITIVE)
            if wd:
                for p in group["params"]:
                    if p.grad is not None:
                        p.sub_(p * wd * lr)  # Keras: variable.assign_sub(variable * wd * lr)
        return super().step(closure)


def make_optimizer(model: nn.Module, train_config: TrainConfig) -> torch.optim.Optimizer:
    """The torch optimizer that reproduces Keras' for `train_config`.

    Args:
        model: the model to train.
        train_config: optimizer name, learning rate, momentum / betas, epsilon
            (Keras placement; converted per step), weight decay (decoupled).

    Returns:
        SGDKeras or AdamKeras over model.parameters().
    """
    lr = float(train_config.learning_rate)
    wd = float(train_config.weight_decay)
    if train_config.optimizer == "sgd":
        opt = SGDKeras(model.parameters(), lr=lr, momentum=float(train_config.momentum), decoupled_weight_decay=wd)
    else:
        opt = AdamKeras(model.parameters(), lr=lr, betas=(float(train_config.beta_1), float(train_config.beta_2)),
                        keras_epsilon=float(train_config.epsilon), weight_decay=wd)
    if train_config.lr_change_step:
        for group in opt.param_groups:
            group["schedule"] = train_config.lr_at
    return opt


def to_framework(x: np.ndarray, y: np.ndarray) -> tuple:
    """numpy (x NHWC for images, y) -> the tensors the torch step receives:
    x NCHW for images, no dtype cast."""
    return torch.from_numpy(nhwc_to_nchw(np.ascontiguousarray(x))), torch.from_numpy(np.ascontiguousarray(y))


def from_framework(x: torch.Tensor, y: torch.Tensor) -> tuple:
    """The tensors the step received -> canonical numpy (x NHWC), for fingerprints."""
    return nchw_to_nhwc(x.detach().cpu().numpy()), y.detach().cpu().numpy()


def _cast(model_config: ModelConfig, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """x to the model dtype; float targets too (class indices stay int64)."""
    dtype = TORCH_DTYPES[model_config.dtype]
    return x.to(dtype), (y if model_config.task == "multiclass" else y.to(dtype))


def train_step(model: nn.Module, model_config: ModelConfig, optimizer, x, y, loss_fn=None) -> float:
    """One optimizer step on one batch; returns that batch's pre-update loss.

    Args:
        model: the torch model (trained in place, left in training mode).
        model_config: its config (task and dtype).
        optimizer: from `make_optimizer(model, ...)`.
        x, y: the batch as tensors (`to_framework`, NCHW) or numpy (x NHWC).
    """
    if not isinstance(x, torch.Tensor):
        x, y = to_framework(x, y)
    x, y = _cast(model_config, x, y)
    if not model.training:  # .train() walks every module (24 us a call, bench)
        model.train()  # BatchNorm: batch statistics, running stats updated
    optimizer.zero_grad(set_to_none=True)
    loss = (loss_fn or losses.mean_loss)(model_config.task, model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train(model: nn.Module, model_config: ModelConfig, train_config: TrainConfig, batches: list,
          on_step=None, channels_first: bool = False, optimizer_factory=None, loss_fn=None) -> TrainResult:
    """One optimizer step per batch, in the given order, in training mode.

    Args:
        model: the torch model (trained in place; left in eval mode).
        model_config: its config.
        train_config: optimizer settings (every batch given is used once, in order).
        batches: list of (x, y) numpy tuples; images NHWC. They reach the step
            through torch_impl.data.TorchBatches: NCHW, cast to the model
            dtype (class indices stay int64).
        on_step: optional callback `on_step(step, loss)` after each step.
        channels_first: the batches are NCHW already (the engine's common
            layout): fed as they are, fingerprints taken in NCHW.
        optimizer_factory, loss_fn: replace make_optimizer(model, train_config)
            and losses.mean_loss(task, logits, y) (a planted fault, torch_impl/faults.py).

    Returns:
        TrainResult with the per-step pre-update losses, the fingerprints of
        what the step received (back in the batches' layout; equal to
        shared.data.batches.batch_fingerprints of cast_batches(batches, dtype)),
        and the loop's wall time. `model_config` may be any object with
        `task` and `dtype`.
    """
    optimizer = (optimizer_factory or make_optimizer)(model, train_config)
    feed = to_torch_batches(batches, model_config.dtype, channels_first)  # cast_batch rule, order kept
    seen = (lambda x, y: (x.numpy(), y.numpy())) if channels_first else from_framework
    losses_out, fingerprints = [], []
    start = time.perf_counter()
    for i, (xt, yt) in enumerate(feed):
        fingerprints.append(array_fingerprint(*seen(xt, yt)))
        loss = train_step(model, model_config, optimizer, xt, yt, loss_fn)
        losses_out.append(loss)
        if on_step is not None:
            on_step(i, loss)
    seconds = time.perf_counter() - start
    model.eval()
    return TrainResult(np.asarray(losses_out), fingerprints, seconds)


def loss_and_raw_grads(model: nn.Module, task: str, x: torch.Tensor, y: torch.Tensor, training: bool = True,
                       loss_fn=None) -> tuple:
    """Mean loss and `param.grad` of every parameter, model left unchanged.

    Args:
        model: any torch module whose output is the logits.
        task: the loss (torch_impl.losses).
        x, y: tensors as the model takes them (x cast to the model dtype).
        training: BatchNorm mode. Training mode updates the running statistics;
            they, the grads and the train/eval mode are restored afterwards.

    Returns:
        (loss as float, {parameter name: gradient as numpy}).
    """
    was_training = model.training
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.zero_grad(set_to_none=True)
    model.train(training)
    loss = (loss_fn or losses.mean_loss)(task, model(x), y)
    loss.backward()
    grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(saved[name])
    model.train(was_training)
    return float(loss.detach()), grads


def loss_and_grads(model: nn.Module, model_config: ModelConfig, x: np.ndarray, y: np.ndarray,
                   training: bool = True) -> tuple:
    """Mean loss and its gradient for every trainable tensor, model left unchanged.

    Args:
        model: the torch model.
        model_config: its config.
        x: inputs, NHWC for images (converted here).
        y: targets.
        training: BatchNorm mode (see loss_and_raw_grads).

    Returns:
        (loss as float, {PyTorch name: gradient}).
    """
    xt, yt = _cast(model_config, *to_framework(x, y))
    loss, grads = loss_and_raw_grads(model, model_config.task, xt, yt, training)
    return loss, {name: grads[name] for name in parameter_spec(model_config) if name in grads}
