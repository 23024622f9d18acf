"""Tiny Keras sequence models for the port tests (tests/flows/port/test_port_sequences.py)
and the sequence benchmark; each builder returns (model, inputs) with inputs in
PyTorch's layout. Padded token ids: right padding, left padding and zeros in
the middle, so every masking rule is exercised; no row is fully padded unless
the builder says so."""

from __future__ import annotations

import numpy as np

__all__ = ["BUILDERS", "padded_ids", "right_padded_ids", "lstm_classifier", "transformer_encoder"]

VOCAB, STEPS = 13, 7


def right_padded_ids(batch: int = 4, steps: int = STEPS, vocab: int = VOCAB, seed: int = 0) -> np.ndarray:
    """Token ids, each row valid steps then zeros (lengths steps, steps-1, ..., at least 1)."""
    ids = np.random.default_rng(seed).integers(1, vocab, size=(batch, steps)).astype(np.int32)
    for i in range(batch):
        ids[i, max(1, steps - 2 * i):] = 0
    return ids


def padded_ids(batch: int = 4, steps: int = STEPS, vocab: int = VOCAB, seed: int = 0) -> np.ndarray:
    """Token ids in [1, vocab) with zeros (padding): row 0 right-padded, row 1
    left-padded, row 2 with holes, the rest unpadded."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(batch, steps)).astype(np.int32)
    ids[0, steps - 3:] = 0
    if batch > 1:
        ids[1, :2] = 0
    if batch > 2:
        ids[2, 1] = ids[2, 4] = 0
    return ids


def _keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras, keras.layers


def _finish(keras, inputs, outputs, name, data):
    return keras.Model(inputs, outputs, name=name), data


def lstm_gru():
    keras, L = _keras()
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 5, mask_zero=True, name="emb")(ids)
    x = L.LSTM(6, return_sequences=True, name="lstm")(x)
    x = L.GRU(4, name="gru")(x)
    return _finish(keras, ids, L.Dense(3, activation="softmax", name="head")(x), "lstm_gru", [padded_ids()])


def bidirectional_modes():
    keras, L = _keras()
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 5, mask_zero=True, name="emb")(ids)
    x = L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode="concat", name="bi_concat")(x)
    a = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum", name="bi_sum")(x)
    b = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="mul", name="bi_mul")(a)
    c = L.Bidirectional(L.GRU(3, reset_after=False), merge_mode="ave", name="bi_ave")(b)
    return _finish(keras, ids, L.Dense(2, name="head")(c), "bidirectional_modes", [padded_ids()])


def bidirectional_states():
    keras, L = _keras()
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 5, mask_zero=True, name="emb")(ids)
    outs = L.Bidirectional(L.LSTM(4, return_sequences=True, return_state=True), merge_mode=None, name="bi")(x)
    y, y_rev, h_f, c_f, h_b, c_b = outs
    merged = L.Concatenate(name="cat")([L.GlobalAveragePooling1D(name="pool_f")(y), L.GlobalAveragePooling1D(name="pool_b")(y_rev), h_f, c_b])
    merged = L.Concatenate(name="cat2")([merged, h_b, c_f])
    return _finish(keras, ids, L.Dense(2, name="head")(merged), "bidirectional_states", [padded_ids()])


def gru_variants():
    keras, L = _keras()
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 5, mask_zero=True, name="emb")(ids)
    x = L.GRU(4, reset_after=False, return_sequences=True, go_backwards=True, name="gru_before")(x)
    y, h = L.GRU(3, return_state=True, go_backwards=True, name="gru_after")(x)
    z, h2 = L.SimpleRNN(3, activation="relu", return_state=True, name="rnn_relu")(x)
    w = L.LSTM(2, use_bias=False, go_backwards=True, name="lstm_nobias")(x)
    cat = L.Concatenate(name="cat")([y, h, z, h2, w])
    return _finish(keras, ids, L.Dense(2, name="head")(cat), "gru_variants", [padded_ids()])


def conv_series():
    keras, L = _keras()
    x_in = keras.Input((12, 3), name="series")
    x = L.Conv1D(6, 3, padding="same", activation="relu", name="conv")(x_in)
    x = L.MaxPooling1D(2, name="max_pool")(x)
    x = L.AveragePooling1D(2, padding="same", name="avg_pool")(x)
    x = L.LayerNormalization(name="norm")(x)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.TimeDistributed(L.Dense(4, activation="tanh"), name="td_dense")(x)
    x = L.GlobalMaxPooling1D(name="gmax")(x)
    data = [np.random.default_rng(1).standard_normal((4, 3, 12)).astype("float32")]  # channels first (conv input)
    return _finish(keras, x_in, L.Dense(1, name="head")(x), "conv_series", data)


def time_distributed_conv():
    keras, L = _keras()
    x_in = keras.Input((3, 6, 6, 2), name="frames")
    x = L.TimeDistributed(L.Conv2D(3, 3, activation="relu"), name="td_conv")(x_in)
    x = L.TimeDistributed(L.Flatten(), name="td_flat")(x)
    x = L.GRU(4, name="gru")(x)
    data = [np.random.default_rng(2).standard_normal((2, 3, 6, 6, 2)).astype("float32")]
    return _finish(keras, x_in, L.Dense(2, name="head")(x), "time_distributed_conv", data)


def encoder_block(keras, L, x, i, *, heads=2, key_dim=3, ffn=8, dropout=0.0, causal=False):
    d = x.shape[-1]
    att = L.MultiHeadAttention(heads, key_dim, dropout=dropout, name=f"mha{i}")(x, x, use_causal_mask=causal)
    x = L.LayerNormalization(epsilon=1e-6, name=f"norm{i}a")(L.Add(name=f"res{i}a")([x, att]))
    f = L.Dense(ffn, activation="relu", name=f"ffn{i}a")(x)  # gelu: the port is 5e-9 off in float64 (core activations)
    f = L.Dense(d, name=f"ffn{i}b")(f)
    return L.LayerNormalization(epsilon=1e-6, name=f"norm{i}b")(L.Add(name=f"res{i}b")([x, f]))


def transformer_encoder(blocks=2, vocab=VOCAB, steps=STEPS, d=8, heads=2, key_dim=3, ffn=16, classes=3, batch=4,
                        mask_zero=True):
    """Embedding + `blocks` post-norm encoder blocks (key_dim independent of
    d / heads), average pooling. With mask_zero, MultiHeadAttention deletes
    its inputs' masks (keras_impl/masks.py): the residual Add after it sees
    none, so the next block and the pooling run unmasked, exactly as in Keras."""
    keras, L = _keras()
    ids = keras.Input((steps,), dtype="int32", name="ids")
    x = L.Embedding(vocab, d, mask_zero=mask_zero, name="tok")(ids)
    x = L.Dense(d, name="proj")(x)
    for i in range(blocks):
        x = encoder_block(keras, L, x, i, heads=heads, key_dim=key_dim, ffn=ffn)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    return _finish(keras, ids, L.Dense(classes, activation="softmax", name="head")(x), "transformer_encoder",
                   [padded_ids(batch, steps, vocab)])


def attention_options():
    keras, L = _keras()
    q_ids = keras.Input((5,), dtype="int32", name="q_ids")
    v_in = keras.Input((STEPS, 4), name="memory")
    gate = keras.Input((5, STEPS), dtype="bool", name="allowed")
    q = L.Embedding(VOCAB, 6, name="q_emb")(q_ids)
    qm = L.Embedding(VOCAB, 6, mask_zero=True, name="q_masked")(q_ids)
    a = L.MultiHeadAttention(3, 2, value_dim=5, output_shape=7, use_bias=False, name="cross")(q, v_in, attention_mask=gate)
    b = L.MultiHeadAttention(2, 4, dropout=0.3, name="dropout_path")(q, q, use_causal_mask=True)
    c = L.MultiHeadAttention(1, 3, name="with_key")(qm, v_in, v_in)
    d = L.MultiHeadAttention(2, 3, name="after_delete")(qm, qm)  # qm's mask was deleted by with_key
    cat = L.Add(name="sum")([L.Dense(6, name="a_proj")(a), b, c, d])
    rng = np.random.default_rng(3)
    allowed = rng.random((4, 5, STEPS)) > 0.3
    allowed[:, :, 0] = True
    data = [padded_ids(4, 5), rng.standard_normal((4, STEPS, 4)).astype("float32"), allowed]
    return _finish(keras, [q_ids, v_in, gate], L.Dense(2, name="head")(L.GlobalAveragePooling1D(name="pool")(cat)),
                   "attention_options", data)


def lstm_classifier(layers=2, vocab=VOCAB, steps=STEPS, emb=8, units=8, classes=3, batch=4):
    """Embedding(mask_zero) + `layers` stacked Bidirectional LSTMs + softmax."""
    keras, L = _keras()
    ids = keras.Input((steps,), dtype="int32", name="ids")
    x = L.Embedding(vocab, emb, mask_zero=True, name="emb")(ids)
    for i in range(layers):
        x = L.Bidirectional(L.LSTM(units, return_sequences=i < layers - 1), name=f"bilstm{i}")(x)
    return _finish(keras, ids, L.Dense(classes, activation="softmax", name="head")(x), "bilstm_classifier",
                   [padded_ids(batch, steps, vocab)])


def tagger():
    """A sequence output carrying the mask: Keras' loss skips padded steps."""
    keras, L = _keras()
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 5, mask_zero=True, name="emb")(ids)
    x = L.Bidirectional(L.GRU(4, return_sequences=True), name="bigru")(x)
    return _finish(keras, ids, L.TimeDistributed(L.Dense(3, activation="softmax"), name="tags")(x), "tagger", [padded_ids()])


BUILDERS = {f.__name__: f for f in (tagger, lstm_gru, bidirectional_modes, bidirectional_states, gru_variants, conv_series,
                                    time_distributed_conv, transformer_encoder, attention_options, lstm_classifier)}
