"""Issue 19: the port's training steps reuse the dtype copies made for the proof.

The float64 training trains the float64 Keras copy and torch module that the
float64 forward/gradient checks made (shared/flows/port.py `_measure`, own=...),
instead of cloning them again; the float32 training still trains fresh copies,
so the given models stay untrained. Same rows, same numbers as with copies.
"""

from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import keras
import numpy as np
from keras import layers

import compare
from shared.flows import port as sp
from shared.data.config import TrainConfig


def _model():
    keras.utils.set_random_seed(3)
    i = keras.Input((8, 8, 2))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(i)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, layers.Dense(3, activation="softmax", name="head")(x), name="tiny")


def _rows(res):
    return [(c.check, c.dtype, c.passed, c.info, c.max_abs_diff, c.max_rel_diff, c.where) for c in res.checks]


def test_float64_training_reuses_the_proof_copies_same_rows(monkeypatch):
    from keras_impl import read

    model = _model()
    before = [w.numpy().copy() for w in model.weights]
    casts = []
    real_cast = read.cast_model
    monkeypatch.setattr(read, "cast_model", lambda m, dtype: casts.append(dtype) or real_cast(m, dtype))
    cfg = TrainConfig("sgd", steps=3)
    reused = compare.port_checks(model, train_config=cfg, batch=4)
    assert casts == ["float32", "float64"]  # float32 training copy, float64 proof copy (trained too); was 3
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))  # the given model: untrained
    trained = [c for c in reused.checks if c.check.startswith("trained ")]
    assert {c.dtype for c in trained} == {"float32", "float64"} and all(c.passed for c in trained)

    real_measure = sp._measure
    monkeypatch.setattr(sp, "_measure", lambda *a, **kw: real_measure(*a, **{**kw, "own": (False, False)}))
    copied = compare.port_checks(model, train_config=cfg, batch=4)
    assert casts == ["float32", "float64", "float32", "float64", "float64"]  # copies everywhere: one clone more
    assert _rows(reused) == _rows(copied) and len(_rows(reused)) > 20
