"""`compare.py port` on recurrent layers whose activations torch's fused
kernels do not compute (LSTM(activation="relu"), the time-series tutorials'
favourite; a hard_sigmoid recurrent activation; SimpleRNN with elu or linear):
the generated cell runs step by step with Keras' activations, and must agree
with Keras node by node, for the loss, the gradients (BPTT) and training, in
float32 and float64 (float64 within 1e-12 relative), on padded ids too."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow

import compare

sys.path.insert(0, str(Path(__file__).parents[2]))
from seq_models import padded_ids  # noqa: E402

FLOAT64_REL = 1e-12  # the float64 target


def _series_model():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    x_in = keras.Input((6, 3))
    x = L.LSTM(5, activation="relu", return_sequences=True, name="lstm_relu")(x_in)
    x = L.GRU(4, recurrent_activation="hard_sigmoid", name="gru_hard")(x)
    model = keras.Model(x_in, L.Dense(1, name="head")(x))
    model.compile(optimizer="adam", loss="mse")
    return model, [np.random.default_rng(0).standard_normal((4, 6, 3)).astype("float32")]  # (N, T, features)


def _masked_model():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(1)
    ids = keras.Input((7,), dtype="int32")
    x = L.Embedding(13, 4, mask_zero=True, name="emb")(ids)
    x = L.SimpleRNN(5, activation="elu", return_sequences=True, name="rnn_elu")(x)
    x = L.Bidirectional(L.LSTM(3, activation="linear", recurrent_activation="hard_sigmoid"), name="bi")(x)
    return keras.Model(ids, L.Dense(2, name="head")(x)), [padded_ids()]


def _failures(res):
    return [f"{c.check} [{c.dtype}]: {c.max_abs_diff:.3g} at {c.where}" for c in res.checks if not c.passed]


@pytest.mark.parametrize("build,written", [
    (_series_model, ["KerasLSTM(3, 5, return_sequences=True, return_state=False, go_backwards=False, activation=F.relu)",
                     "recurrent_activation=lambda x: F.relu6(x + 3.0) / 6.0"]),
    (_masked_model, ["activation=lambda x: F.elu(x, alpha=1.0)", "activation=lambda x: x, recurrent_activation="])],
    ids=["relu_lstm_hard_sigmoid_gru", "masked_elu_linear"])
def test_non_default_cell_activations_port_and_agree(build, written):
    model, data = build()
    res = compare.port_checks(model, data)
    assert not _failures(res), _failures(res)
    assert all(w in res.source for w in written), [w for w in written if w not in res.source]
    f64 = [c for c in res.checks if c.dtype == "float64"]
    assert any(c.check.startswith("grad") for c in f64), "no gradient was compared"
    worst = max(c.max_rel_diff for c in f64)
    assert worst <= FLOAT64_REL, f"float64 worst relative difference {worst:.3g}"


def test_activation_really_reaches_the_cell():
    """The same model with tanh written in place of relu must disagree: the
    activation is used, not dropped."""
    model, data = _series_model()
    res = compare.port_checks(model, data, train_config=None)
    module = res.module if hasattr(res, "module") else None
    assert module is not None
    lstm = module.lstm_relu
    x = torch.as_tensor(data[0])
    with torch.no_grad():
        relu_out = lstm(x)
        lstm.activation = torch.tanh
        tanh_out = lstm(x)
    assert float((relu_out - tanh_out).abs().max()) > 1e-3


# ---- initial_state: the Keras seq2seq pattern (an encoder's final states start the decoder)


def _seq2seq_model():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(2)
    enc_ids, dec_ids = keras.Input((7,), dtype="int32", name="enc"), keras.Input((5,), dtype="int32", name="dec")
    enc = L.Embedding(13, 4, mask_zero=True, name="enc_emb")(enc_ids)
    _, h, c = L.LSTM(6, return_state=True, name="encoder")(enc)
    dec = L.Embedding(11, 4, name="dec_emb")(dec_ids)
    seq = L.LSTM(6, return_sequences=True, name="decoder")(dec, initial_state=[h, c])
    cond = L.Dense(3, activation="tanh", name="cond")(h)
    gru = L.GRU(3, go_backwards=True, name="gru")(seq, initial_state=cond)
    out = L.Dense(11, name="head")(L.Concatenate(name="cat")([seq[:, -1], gru]))
    model = keras.Model([enc_ids, dec_ids], out)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dec_data = np.random.default_rng(3).integers(0, 11, size=(4, 5)).astype(np.int32)
    return model, [padded_ids(), dec_data]


def test_initial_state_of_a_seq2seq_decoder_ports_and_agrees():
    model, data = _seq2seq_model()
    res = compare.port_checks(model, data)
    assert not _failures(res), _failures(res)
    assert "initial_state=(" in res.source
    f64 = [c for c in res.checks if c.dtype == "float64"]
    worst = max(c.max_rel_diff for c in f64)
    assert worst <= FLOAT64_REL, f"float64 worst relative difference {worst:.3g}"
    # the states really start the decoder: zero them and the decoder's output moves
    import torch as T

    x = [T.as_tensor(a.astype(np.int64)) for a in data]
    with T.no_grad():
        full = res.module(*x)
        res.module.decoder.fused_state = lambda s: None  # drop the encoder's states
        dropped = res.module(*x)
    assert float((full - dropped).abs().max()) > 1e-3


# ---- Masking: the time-series padding layer (float steps equal to mask_value are skipped)


def _masking_model():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(4)
    x_in = keras.Input((6, 3))
    x = L.Masking(mask_value=-1.0, name="masking")(x_in)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.Bidirectional(L.GRU(3), name="bigru")(x)
    model = keras.Model(x_in, L.Dense(1, name="head")(x))
    model.compile(optimizer="adam", loss="mse")
    data = np.random.default_rng(5).standard_normal((4, 6, 3)).astype("float32")
    data[0, 4:] = -1.0  # right padding
    data[1, :2] = -1.0  # left padding
    data[2, 3] = -1.0   # a hole
    data[3, 2, 0] = -1.0  # one feature at the mask value: not masked (any over the features)
    return model, [data]


def test_masking_layer_ports_with_every_padding_pattern():
    model, data = _masking_model()
    res = compare.port_checks(model, data)
    assert not _failures(res), _failures(res)
    assert "!= -1.0).any(dim=-1" in res.source
    f64 = [c for c in res.checks if c.dtype == "float64"]
    worst = max(c.max_rel_diff for c in f64)
    assert worst <= FLOAT64_REL, f"float64 worst relative difference {worst:.3g}"
    # the mask is real: the same model on unpadded data differs at the padded rows
    import torch as T

    with T.no_grad():
        masked = res.module(T.as_tensor(data[0]))
        unmasked_input = data[0].copy()
        unmasked_input[unmasked_input == -1.0] = -0.999
        moved = res.module(T.as_tensor(unmasked_input))
    assert float((masked[:3] - moved[:3]).abs().max()) > 1e-4


# ---- unknown sequence length (keras.io's IMDB BiLSTM: keras.Input((None,), dtype="int32"))


def test_unknown_length_sequences_are_checked_at_a_default_length():
    import keras
    from keras import layers as L

    from shared.flows.port_check import UNKNOWN_SEQUENCE_STEPS

    keras.utils.set_random_seed(6)
    ids = keras.Input((None,), dtype="int32", name="ids")
    series = keras.Input((None, 2), name="series")
    x = L.Bidirectional(L.LSTM(4), name="bi")(L.Embedding(30, 5, name="emb")(ids))
    s = L.GRU(3, name="gru")(series)
    model = keras.Model([ids, series], L.Dense(1, activation="sigmoid", name="head")(L.Concatenate(name="cat")([x, s])))
    res = compare.port_checks(model)
    assert not _failures(res), _failures(res)
    assert res.graph.meta["assumed_steps"] == {"ids": UNKNOWN_SEQUENCE_STEPS, "series": UNKNOWN_SEQUENCE_STEPS}
    import torch as T

    with T.no_grad():  # model.py takes any length
        out = res.module(T.randint(1, 30, (2, 5)), T.randn(2, 9, 2))
    assert tuple(out.shape) == (2, 1)
