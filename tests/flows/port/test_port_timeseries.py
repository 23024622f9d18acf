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


def test_a_zero_gradient_is_judged_by_its_own_float32_error():
    """keras.io's time-series Transformer: LayerNormalization over one feature
    gives gamma a zero gradient in exact arithmetic, 0 in TF and 8.1e-6 in
    torch in float32 (0 and 9.7e-15 in float64). The derived float32 tolerance
    (shared/verdict/policy.py) passes it: torch's own float32 error there is 8.1e-6;
    a real gradient off by the same amount, with both float32 results close to
    their float64 ones, stays a failure."""
    from shared.verdict import policy as verdict

    c = verdict.judge("grad norm.gamma", "gradient", "float32", np.zeros(1), np.array([8.1e-6]),
                      ref=(np.zeros(1), np.array([9.7e-15])))
    assert c.status == "pass" and c.tolerance >= 4 * 8.1e-6 and "derived" in c.tolerance_from
    g64 = np.full((2, 2), 0.3)
    bad = verdict.judge("grad dense.kernel", "gradient", "float32", g64.astype(np.float32).astype(np.float64),
                        g64 + 8.1e-6, ref=(g64, g64 + 8.1e-6))
    assert bad.status == "fail"
