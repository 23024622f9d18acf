"""`compare.py port` on keras.io's "Timeseries classification with a
Transformer model" (its encoder block, reduced): MultiHeadAttention over
(steps, 1) inputs, LayerNormalization over a single feature, kernel-size-1
Conv1D feed-forward, GlobalAveragePooling1D(data_format="channels_first").

The LayerNormalization over one feature makes its gamma's gradient zero in
exact arithmetic (x - mean(x) = 0), and float32 rounding noise amplified by
1/sqrt(eps): TF gives 0, torch 8e-6. That row must be information (float64
proves the port exact there), not a false alarm."""

from __future__ import annotations

import numpy as np

import torch  # noqa: F401  torch before TensorFlow

import compare


def _timeseries_transformer():
    """keras.io's model, as published (smaller sizes): two encoder blocks."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)

    def encoder(inputs, head_size, num_heads, ff_dim, dropout=0.0):
        x = layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=dropout)(inputs, inputs)
        x = layers.Dropout(dropout)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        res = x + inputs
        x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
        x = layers.Dropout(dropout)(x)
        x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        return x + res

    inputs = keras.Input(shape=(20, 1))
    x = inputs
    for _ in range(2):
        x = encoder(x, 8, 2, 4, 0.25)
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(x))
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(1e-4))
    return model


def test_keras_io_timeseries_transformer_ports_without_false_alarms():
    res = compare.port_checks(_timeseries_transformer())
    failed = [f"{c.check} [{c.dtype}] {c.max_abs_diff:.3g} / {c.tolerance:.3g}" for c in res.checks if not (c.passed or c.info)]
    assert not failed, failed
    f64 = [c for c in res.checks if c.dtype == "float64" and not c.info]
    assert max(c.max_rel_diff for c in f64) <= 1e-12


def _row(name, dtype, passed, diff=1e-5):
    from shared.checks import Check

    return Check(f"grad {name}", "keras", "torch", diff, diff, 7.6e-6, passed, "[0]", dtype=dtype)


def test_only_zero_gradients_with_an_exact_float64_row_are_excused():
    from shared.port_check import excuse_zero_gradients

    keras64 = {"norm.gamma": np.zeros(1), "dense.kernel": np.full((2, 2), 0.3), "tiny.bias": np.array([1e-6])}
    torch64 = {"norm.gamma": np.array([9.7e-15]), "dense.kernel": np.full((2, 2), 0.3), "tiny.bias": np.array([1e-6])}
    rows = [_row(n, d, d == "float64") for n in keras64 for d in ("float32", "float64")]
    rows.append(_row("late.w", "float32", False))  # no float64 row passed for it
    out = {(c.check, c.dtype): c for c in excuse_zero_gradients(rows, keras64, torch64)}
    assert out[("grad norm.gamma", "float32")].info and "a zero gradient" in out[("grad norm.gamma", "float32")].where
    assert not out[("grad dense.kernel", "float32")].info  # a real gradient: a float32 failure stays one
    assert not out[("grad tiny.bias", "float32")].info  # small but real (1e-6 of 1): not float64 noise
    assert not out[("grad late.w", "float32")].info
