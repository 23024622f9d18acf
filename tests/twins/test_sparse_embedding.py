"""Keras' optimizers on an Embedding's sparse gradient, and the torch twin.

TF gives Keras an Embedding's gradient as a tf.IndexedSlices: one slice per
looked-up id, repeats kept. Keras 3.15's Adam adds the *sum of the slices'
squares* to its second moment where a dense gradient adds the square of their
sum; SGD (with or without momentum) and weight decay come out dense
(torch_impl/train.py, the comment above SLICE_SENSITIVE; TRAPS.md, "Keras'
Adam on an Embedding"). Each test states the rule as a numpy formula and
checks it both ways: the handled side matches to float64 rounding, the dense
formula misses by a measured margin (so removing the sparse handling fails).
"""

from __future__ import annotations

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow
import torch.nn.functional as F

import compare
from torch_impl.train import AdamKeras, KerasEmbeddingGrads, SGDKeras

ROUNDING = 1e-15  # float64: a few ulp of the table's largest entry
# Measured on this table and these ids (lr 0.125, one step): the dense Adam
# update misses Keras' by 4.4e-2 relative (2 steps: 9.3e-2); require 1e-2.
DENSE_MISS = 1e-2
LR, WD = 0.125, 0.0625  # exact in float32: Keras' learning-rate variable is float32
BETAS, EPS = (0.9, 0.999), 1e-7
W0 = np.random.default_rng(0).normal(size=(5, 3))
IDS = np.array([[1, 1, 3], [1, 4, 4]])  # row 1 three times, 4 twice, 3 once; 0 and 2 never
UPSTREAM = np.random.default_rng(1).normal(size=(2, 3, 3))  # d loss / d looked-up vector


def _sums():
    g = np.zeros_like(W0)
    np.add.at(g, IDS.reshape(-1), UPSTREAM.reshape(-1, 3))
    sq = np.zeros_like(W0)
    np.add.at(sq, IDS.reshape(-1), UPSTREAM.reshape(-1, 3) ** 2)
    return g, sq


def reference(optimizer: str, steps: int, wd: float, sparse: bool = True, momentum: float = 0.0) -> np.ndarray:
    """Keras' update in numpy: the loss is sum(table[IDS] * UPSTREAM), so every step has the same slices."""
    w, m, v = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    g, sq = _sums()
    for t in range(1, steps + 1):
        w = w - w * wd * LR
        if optimizer == "sgd":
            m = momentum * m - LR * g
            w = w + m
            continue
        m = m + (g - m) * (1 - BETAS[0])
        v = v + ((sq if sparse else g * g) - v) * (1 - BETAS[1])
        w = w - m * (LR * np.sqrt(1 - BETAS[1] ** t) / (1 - BETAS[0] ** t)) / (np.sqrt(v) + EPS)
    return w


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _keras_table(make, steps: int) -> np.ndarray:
    import keras
    import tensorflow as tf

    var = keras.Variable(W0.copy(), dtype="float64")
    opt = make(keras)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(var.value, IDS) * UPSTREAM)  # what an Embedding computes
        grad = tape.gradient(loss, var.value)
        assert isinstance(grad, tf.IndexedSlices) and grad.values.shape[0] == IDS.size  # repeats kept
        opt.apply([grad], [var])
    return var.numpy()


F64 = np.float64  # Keras rounds Python-float hyperparameters through float32 (keras_impl/train.py make_optimizer)
KERAS = {
    "adam": lambda k, wd: k.optimizers.Adam(LR, beta_1=F64(BETAS[0]), beta_2=F64(BETAS[1]), epsilon=F64(EPS),
                                            weight_decay=F64(wd) if wd else None),
    "adamw": lambda k, wd: k.optimizers.AdamW(LR, beta_1=F64(BETAS[0]), beta_2=F64(BETAS[1]), epsilon=F64(EPS),
                                              weight_decay=F64(wd)),
}


@pytest.mark.parametrize("name,wd", [("adam", 0.0), ("adam", WD), ("adamw", WD)])
@pytest.mark.parametrize("steps", [1, 2])
def test_keras_adam_squares_indexed_slices_slice_by_slice(name, wd, steps):
    table = _keras_table(lambda k: KERAS[name](k, wd), steps)
    assert _rel(table, reference("adam", steps, wd)) <= ROUNDING
    assert _rel(table, reference("adam", steps, wd, sparse=False)) > DENSE_MISS


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.0, WD), (0.9, 0.0), (0.9, WD)])
def test_keras_sgd_on_indexed_slices_equals_dense(momentum, wd):
    table = _keras_table(lambda k: k.optimizers.SGD(LR, momentum=F64(momentum), weight_decay=F64(wd) if wd else None), 2)
    assert _rel(table, reference("sgd", 2, wd, momentum=momentum)) <= ROUNDING


def _torch_table(make, steps: int, sparse: bool = True, functional: bool = False) -> tuple:
    emb = torch.nn.Embedding(5, 3).double()
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(W0))
    opt = make(emb.parameters())
    ids, up = torch.from_numpy(IDS), torch.from_numpy(UPSTREAM)
    repeated = 0
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        mode = KerasEmbeddingGrads() if sparse else None
        if mode is not None:
            with mode:
                out = F.embedding(ids, emb.weight) if functional else emb(ids)
            repeated += mode.repeated
        else:
            out = emb(ids)
        (out * up).sum().backward()
        assert emb.weight.grad.is_sparse == sparse
        opt.step()
    assert not emb.sparse  # the module itself is untouched
    return emb.weight.detach().numpy(), repeated


@pytest.mark.parametrize("wd", [0.0, WD])
@pytest.mark.parametrize("functional", [False, True])
def test_torch_adam_keras_follows_the_slices(wd, functional):
    make = lambda p: AdamKeras(p, lr=LR, betas=BETAS, keras_epsilon=EPS, weight_decay=wd)  # noqa: E731
    table, repeated = _torch_table(make, 2, functional=functional)
    assert repeated == 2  # one lookup with repeated ids per step
    assert _rel(table, reference("adam", 2, wd)) <= ROUNDING
    dense, _ = _torch_table(make, 2, sparse=False)  # the stock dense gradient: Keras' rule is not followed
    assert _rel(dense, reference("adam", 2, wd, sparse=False)) <= ROUNDING
    assert _rel(dense, reference("adam", 2, wd)) > DENSE_MISS


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, WD)])
def test_torch_sgd_keras_densifies_sparse_gradients(momentum, wd):
    table, _ = _torch_table(lambda p: SGDKeras(p, lr=LR, momentum=momentum, decoupled_weight_decay=wd), 2)
    assert _rel(table, reference("sgd", 2, wd, momentum=momentum)) <= ROUNDING


# ---- the port and verify training checks on a tiny Embedding model
TRAINING_F64 = 1e-10  # shared/verdict/tolerances.py TRAINING float64


def _tiny_keras(compile_adam: bool = False):
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    ids = keras.Input((4,), dtype="int32")
    x = L.GlobalAveragePooling1D(name="pool")(L.Embedding(6, 3, name="emb")(ids))
    model = keras.Model(ids, L.Dense(2, name="head")(x))
    if compile_adam:
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


TINY_IDS = np.array([[1, 1, 2, 5], [3, 1, 5, 5], [0, 4, 4, 2]], dtype="int32")  # repeats within rows and across


def _stock(res):
    return [c for c in res.checks if c.check.startswith("stock torch")]


def test_port_training_follows_keras_sparse_adam_and_measures_the_dense_one():
    from shared.data.config import TrainConfig

    res = compare.port_checks(_tiny_keras(), [TINY_IDS], dtypes=("float64",), train_config=TrainConfig("adam", 0.05, steps=3))
    trained = [c for c in res.checks if c.check.startswith(("training", "trained")) and not c.info]
    assert any(c.check == "trained emb.weight" for c in trained)
    assert max(c.max_rel_diff for c in trained) <= TRAINING_F64, [(c.check, c.max_rel_diff) for c in trained]
    (row,) = _stock(res)
    assert row.info and not row.passed and row.max_rel_diff > DENSE_MISS and "IndexedSlices" in row.detail["diagnosis"]
    assert "nn.Embedding(" in res.source and "sparse" not in res.source  # the generated code stays as users read it


def test_port_sgd_has_no_dense_row():
    from shared.data.config import TrainConfig

    res = compare.port_checks(_tiny_keras(), [TINY_IDS], dtypes=("float64",), train_config=TrainConfig("sgd", 0.05, steps=2))
    assert not _stock(res) and not [c for c in res.checks if not (c.passed or c.info)]


class _TinyTorch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(6, 3)
        self.head = torch.nn.Linear(3, 2)

    def forward(self, ids):
        return self.head(self.emb(ids).mean(1))


def test_verify_training_follows_keras_sparse_adam_and_notes_the_dense_one():
    module = _TinyTorch()
    res = compare.verify_models(_tiny_keras(compile_adam=True), module, TINY_IDS)
    trained = [c for c in res.checks if c.dtype == "float64" and ("after training" in c.check or "training loss" in c.check)]
    assert any(c.check.startswith("emb.") for c in trained)
    assert max(c.max_rel_diff for c in trained) <= TRAINING_F64, [(c.check, c.max_rel_diff) for c in trained]
    (row,) = _stock(res)
    assert row.info and row.max_rel_diff > DENSE_MISS
    assert any(n.startswith("stock torch Adam") and "IndexedSlices" in n for n in res.notes), res.notes
    assert not module.emb.sparse  # the user's model is untouched
