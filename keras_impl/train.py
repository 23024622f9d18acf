"""Training the Keras twin: optimizers, one step, a loop, loss and gradients.

Twin of torch_impl/train.py (same names, same arguments, same results).

Why a custom step (tf.GradientTape + optimizer.apply in one tf.function) and
not `model.fit`:
  - fit reports the loss through `self._loss_tracker = metrics.Mean("loss")`
    (keras/src/trainers/trainer.py), reset once per epoch
    (keras/src/backend/tensorflow/trainer.py, `reset_metrics` in `fit`): both
    History and `on_train_batch_end` see the running mean of the epoch's
    batch losses, never the loss of one step. The comparison needs each
    step's own loss, taken in the forward pass *before* that step's update.
  - fit shuffles numpy input unless told `shuffle=False` and re-batches it
    itself; here the batches, and their order, come from shared.batches so
    that both frameworks consume the same bytes, which `TrainResult.fingerprints`
    proves.
  - fit's `jit_compile="auto"` turns XLA on for the TensorFlow backend whenever
    every layer supports it (keras/src/trainers/trainer.py,
    `model_supports_jit`). XLA on CPU does accept float64 (checked with
    TF 2.21: a jit-compiled float64 matmul and stride-2 conv run), so that is
    NOT the reason to avoid it; the reason is that XLA replaces the oneDNN /
    Eigen kernels that the forward-parity checks measured and fuses
    element-wise chains, which changes rounding (and adds compile time) for no
    benefit at these sizes. The step here runs `jit_compile=False`.
The step is traced once per (model, optimizer, input dtypes): its
input_signature has a free batch dimension and the data's dtypes, and the cast
to the model dtype happens inside.

Optimizer formulas (read in keras/src/optimizers/{sgd,adam,base_optimizer}.py
and keras/src/backend/tensorflow/optimizer.py of the installed Keras 3.15):
  - decoupled weight decay first, in `_apply_weight_decay`:
    w <- w - w * wd * lr, for every variable that has a gradient;
  - SGD: v <- mu * v - lr * g; w <- w + v;
  - Adam: m <- m + (g - m)(1 - b1); v <- v + (g^2 - v)(1 - b2);
    w <- w - m * lr * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps).
"""

from __future__ import annotations

import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_impl import losses
from keras_impl.data import to_keras_batches
from keras_impl import weights as kweights
from shared.data.config import ModelConfig, TrainConfig
from shared.data.dataset import array_fingerprint
from shared.graph.layout import nhwc_to_nchw
from shared.core.training import TrainResult

__all__ = ["make_optimizer", "to_framework", "from_framework", "train_step", "train", "loss_and_raw_grads", "loss_and_grads"]

# Traced step functions, per optimizer (an optimizer belongs to one model).
_STEP_FUNCTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _constant(value: float):
    """A learning rate that reaches each variable's dtype without a float32 detour.

    A float `learning_rate` is stored in a `backend.floatx()` (float32)
    variable (keras/src/optimizers/base_optimizer.py, `__init__`), so a float64
    model trains with float32(0.01) = 0.009999999776: a 2.2e-8 relative error
    that torch, which keeps the Python float, does not make (measured: 2.7e-11
    weight difference after one float64 SGD step, far above the float64
    training tolerance). A callable learning rate is called as is
    (`_get_current_learning_rate`), but a Python float it returns is still
    turned into a float32 tensor on the way to update_step (the TF backend
    passes it through `distribution.extended.update(..., args=(grad, lr))`,
    keras/src/backend/tensorflow/optimizer.py); a float64 tensor is not, and
    update_step's `ops.cast(learning_rate, variable.dtype)` then rounds it
    once, to the variable's own dtype: exact in float64, float32(lr) as before
    in float32.
    """
    return lambda: tf.constant(value, dtype=tf.float64)


def _schedule(train_config: TrainConfig, holder: list):
    """Like `_constant`, but lr * factor from step `lr_change_step` on (0-based:
    Keras' `iterations` counts the steps already applied)."""
    lr = float(train_config.learning_rate)
    if not train_config.lr_change_step:
        return _constant(lr)
    after = lr * float(train_config.lr_change_factor)
    at = int(train_config.lr_change_step)

    def rate():
        it = holder[0].iterations
        return tf.where(it >= at, tf.constant(after, tf.float64), tf.constant(lr, tf.float64))

    return rate


def _model_dtype(model: keras.Model) -> str:
    return str(model.trainable_variables[0].dtype)


def make_optimizer(model: keras.Model, train_config: TrainConfig) -> keras.optimizers.Optimizer:
    """The Keras optimizer for `train_config`, built on the model's variables.

    For a float64 model the hyperparameters go in as numpy float64: Keras'
    update steps read them through `ops.cast(python_float, variable.dtype)`,
    and `tf.cast` turns a Python float into a float32 tensor before casting, so
    momentum 0.9 became 0.899999976 and beta_2 0.999 became 0.999000013 in a
    float64 run (measured with TF 2.21: `ops.cast(0.01, "float64")` is
    0.009999999776). np.float64 is a `float` subclass (Keras' type checks pass)
    that tf.cast keeps in float64. float32 models get plain floats (the float32
    rounding is then the variable's own).

    Args:
        model: the model to train (the optimizer's slots are created for its
            trainable variables now, eagerly, not inside the traced step).
        train_config: optimizer name, learning rate, momentum / betas, epsilon
            (Keras placement, used as is) and weight decay (decoupled: Keras'
            only kind).

    Returns:
        keras.optimizers.SGD or keras.optimizers.Adam.
    """
    scalar = np.float64 if _model_dtype(model) == "float64" else float
    holder = []  # the optimizer, for a schedule that reads its step counter
    lr = _schedule(train_config, holder)
    wd = scalar(train_config.weight_decay) if train_config.weight_decay else None  # None: no decay step
    if train_config.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=scalar(train_config.momentum), weight_decay=wd)
    else:
        opt = keras.optimizers.Adam(
            learning_rate=lr,
            beta_1=scalar(train_config.beta_1),
            beta_2=scalar(train_config.beta_2),
            epsilon=scalar(train_config.epsilon),
            weight_decay=wd,
        )
    holder.append(opt)
    opt.build(model.trainable_variables)
    return opt


def to_framework(x: np.ndarray, y: np.ndarray) -> tuple:
    """numpy (x NHWC for images, y) -> the tensors the Keras step receives (no cast)."""
    return tf.convert_to_tensor(x), tf.convert_to_tensor(y)


def from_framework(x, y) -> tuple:
    """The tensors the step received -> canonical numpy (x NHWC), for fingerprints."""
    return keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)


def _spec(t) -> tf.TensorSpec:
    """A TensorSpec with a free batch dimension: one trace for every batch size."""
    return tf.TensorSpec((None, *t.shape[1:]), t.dtype)


def _step_function(model: keras.Model, model_config: ModelConfig, optimizer, x, y):
    """The traced step for these input dtypes/shapes (built once, then reused)."""
    key = (id(model), model_config.task, model_config.dtype, _spec(x), _spec(y))
    per_opt = _STEP_FUNCTIONS.setdefault(optimizer, {})
    if key in per_opt:
        return per_opt[key]
    task, dtype = model_config.task, model_config.dtype

    @tf.function(input_signature=[_spec(x), _spec(y)], jit_compile=False)
    def step(xb, yb):
        xb = tf.cast(xb, dtype)
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)  # BatchNorm: batch statistics, moving stats updated
            loss = losses.mean_loss(task, logits, yb)  # in the model dtype
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss  # the pre-update loss

    per_opt[key] = step
    return step


def train_step(model: keras.Model, model_config: ModelConfig, optimizer, x, y) -> float:
    """One optimizer step on one batch; returns that batch's pre-update loss.

    Args:
        model: the Keras model (trained in place).
        model_config: its config (task and dtype).
        optimizer: from `make_optimizer(model, ...)`.
        x, y: the batch as tensors (`to_framework`) or numpy; x NHWC for images.
    """
    if not isinstance(x, tf.Tensor):
        x, y = to_framework(x, y)
    return float(_step_function(model, model_config, optimizer, x, y)(x, y))


def train(model: keras.Model, model_config: ModelConfig, train_config: TrainConfig, batches: list,
          on_step=None, channels_first: bool = False) -> TrainResult:
    """One optimizer step per batch, in the given order, in training mode.

    Args:
        model: the Keras model (trained in place).
        model_config: its config.
        train_config: optimizer settings (`steps`/`batch_size`/`seed` are the
            caller's business: every batch given is used, once, in order).
        batches: list of (x, y) numpy tuples; images NHWC. They reach the step
            through keras_impl.data.KerasBatches, cast to the model dtype
            (class indices stay int64).
        on_step: optional callback `on_step(step, loss)` after each step.
        channels_first: the batches are NCHW (the engine's common layout):
            permuted to NHWC for the model, fingerprints taken back in NCHW.

    Returns:
        TrainResult with the per-step pre-update losses, the fingerprints of
        what the step received (in the batches' layout; equal to
        shared.data.batches.batch_fingerprints of cast_batches(batches, dtype)),
        and the loop's wall time. `model_config` may be any object with
        `task` and `dtype`.
    """
    optimizer = make_optimizer(model, train_config)
    feed = to_keras_batches(batches, model_config.dtype, channels_first)  # cast_batch rule, order kept
    losses_out, fingerprints = [], []
    start = time.perf_counter()
    for i in range(len(feed)):
        xt, yt = to_framework(*feed[i])
        xs, ys = from_framework(xt, yt)
        fingerprints.append(array_fingerprint(nhwc_to_nchw(xs) if channels_first else xs, ys))
        loss = train_step(model, model_config, optimizer, xt, yt)
        losses_out.append(loss)
        if on_step is not None:
            on_step(i, loss)
    return TrainResult(np.asarray(losses_out), fingerprints, time.perf_counter() - start)


def loss_and_raw_grads(model: keras.Model, task: str, x, y, training: bool = True) -> tuple:
    """Mean loss and its gradient for every trainable variable, model left unchanged.

    Args:
        model: any Keras model whose output is the logits.
        task: the loss (keras_impl.losses).
        x, y: inputs as the model takes them (x cast to the model dtype), targets.
        training: BatchNorm mode. In training mode Keras updates the moving
            statistics; they are restored afterwards so the call has no effect.

    Returns:
        (loss as float, gradients aligned with model.trainable_variables).
    """
    saved = [v.numpy() for v in model.non_trainable_variables]
    xt = tf.cast(tf.convert_to_tensor(x), _model_dtype(model))
    with tf.GradientTape() as tape:
        logits = model(xt, training=training)
        loss = losses.mean_loss(task, logits, tf.convert_to_tensor(y))
    grads = tape.gradient(loss, model.trainable_variables)
    for v, value in zip(model.non_trainable_variables, saved):
        v.assign(value)
    return float(loss), grads


def loss_and_grads(model: keras.Model, model_config: ModelConfig, x: np.ndarray, y: np.ndarray,
                   training: bool = True) -> tuple:
    """Mean loss and its gradient for every trainable tensor, model left unchanged.

    Args:
        model: the Keras model.
        model_config: its config.
        x: inputs, NHWC for images.
        y: targets.
        training: BatchNorm mode (see loss_and_raw_grads).

    Returns:
        (loss as float, {PyTorch name: gradient in PyTorch layout}).
    """
    loss, grads = loss_and_raw_grads(model, model_config.task, x, y, training)
    return loss, kweights.grads_to_portable(model, model_config, grads)
