"""`compare.py verify` on the model.py that `compare.py port` writes: the
generated twin must verify against its own Keras model. It reproduces Keras
where TF keeps float32 constants in float64 (leaky_relu's slope, gelu's
constant, MultiHeadAttention's 1/sqrt(key_dim)), where a hand-written port
computes them exactly; verify's float64 checks take whichever Keras copy the
port follows (shared/flows/verify_run.py _float64_keras). Its torch modules are
subclasses (KerasLSTM is an nn.LSTM) or cells of its own (KerasGRUResetBefore),
all matched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import torch  # noqa: F401  torch before TensorFlow

import compare

sys.path.insert(0, str(Path(__file__).parents[2]))
from seq_models import gru_variants, transformer_encoder  # noqa: E402

FLOAT64_REL = 1e-12


def _cnn():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(x_in)
    x = L.LeakyReLU(name="leaky")(x)
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="gelu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(x_in, L.Dense(3, name="head")(x))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, None


@pytest.mark.parametrize("build", [_cnn, transformer_encoder, gru_variants], ids=["leaky_gelu_cnn", "encoder", "gru_variants"])
def test_generated_twin_verifies_against_its_keras_model(build):
    model, _ = build()
    module, source = compare.keras_to_torch(model)
    assert "class Model(nn.Module)" in source
    res = compare.verify_models(model, module, train_steps=2)
    failed = [f"{c.check} [{c.dtype}] {c.max_abs_diff:.3g}" for c in res.checks if not (c.passed or c.info)]
    assert not failed, failed
    f64 = [c for c in res.checks if c.dtype == "float64" and not c.info]
    assert max(c.max_rel_diff for c in f64) <= FLOAT64_REL
    if build is not gru_variants:  # the generated twin keeps TF's float32 constants: the float64 checks say so
        assert any("keeps TF's float32 constants" in n for n in res.notes), res.notes
