"""`compare.py verify` on models with a per-step output (taggers, sequence
regression): targets get one entry per step, and for a masked model Keras'
loss weighs the steps by the output's mask (keras/src/losses/loss.py
apply_mask: masked steps 0, kept ones total/valid), so the torch loss takes
the same mask and the model output is compared at the kept steps. Without
that a correct packed port failed every loss, gradient and training row."""

from __future__ import annotations

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow
from torch import nn

import compare
from shared.core.errors import UsageError

FLOAT64_REL = 1e-12  # the float64 target


def _tagger(bidirectional: bool, mask_zero: bool = True):
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    ids = keras.Input((7,), dtype="int32")
    x = L.Embedding(13, 5, mask_zero=mask_zero, name="emb")(ids)
    lstm = L.LSTM(6, return_sequences=True, name="lstm")
    x = L.Bidirectional(lstm, name="bi")(x) if bidirectional else lstm(x)
    model = keras.Model(ids, L.Dense(4, name="tags")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class TaggerPort(nn.Module):
    def __init__(self, bidirectional: bool, pack: bool = True):
        super().__init__()
        self.pack = pack
        self.emb = nn.Embedding(13, 5)
        self.lstm = nn.LSTM(5, 6, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(12 if bidirectional else 6, 4)
        for name, p in self.lstm.named_parameters():  # Keras' LSTM has one bias
            if name.startswith("bias_hh"):
                p.requires_grad_(False)

    def forward(self, ids):
        x = self.emb(ids)
        if not self.pack:
            return self.fc(self.lstm(x)[0])
        lengths = (ids != 0).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.shape[1])
        return self.fc(y)


def _hard_failures(res):
    return [f"{c.check} [{c.dtype}] {c.max_abs_diff:.3g}" for c in res.checks if not (c.passed or c.info)]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["lstm", "bilstm"])
def test_masked_tagger_port_verifies_with_the_keras_loss_mask(bidirectional):
    res = compare.verify_models(_tagger(bidirectional), TaggerPort(bidirectional))
    assert not _hard_failures(res), _hard_failures(res)
    out = [c for c in res.checks if c.check.startswith("model output")]
    assert out and all("steps the Keras mask keeps" in c.check for c in out)
    f64 = [c for c in res.checks if c.dtype == "float64" and not c.info]
    assert any(c.check.startswith("training loss") for c in f64)
    assert max(c.max_rel_diff for c in f64) <= FLOAT64_REL


def test_the_loss_mask_matters():
    """The same correct port with the mask left out of the torch loss: every
    loss row differs (so the mask really reaches the loss)."""
    from keras_impl.side import KerasSide
    from torch_impl.side import TorchSide

    ks, ts = KerasSide.for_verify(_tagger(False)).with_dtype("float64"), TorchSide(TaggerPort(False), dtype="float64")
    from shared.flows.verify import match

    ids = np.array([[3, 4, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7]])
    y = np.random.default_rng(0).integers(0, 4, (2, 7))
    mapping = match(ks.records(), ts.trace(ids))
    ts.set_record_weights({p.torch: ks.record_weights()[p.keras] for p in mapping.pairs})
    spec = ks.loss_spec()
    keras_loss = ks.record_loss_and_grads(ids, y, spec)[0]
    with_mask = ts.record_loss_and_grads(ids, y, spec, ks.output_mask(ids))[0]
    without = ts.record_loss_and_grads(ids, y, spec)[0]
    assert abs(keras_loss - with_mask) <= 1e-12 * abs(keras_loss)
    assert abs(keras_loss - without) > 1e-5 * abs(keras_loss)  # measured 1.6e-4: padded steps hold the head bias only


def test_unpacked_bidirectional_tagger_is_caught_at_the_lstm():
    res = compare.verify_models(_tagger(True), TaggerPort(True, pack=False))
    assert not res.passed
    assert res.localisation["first_differing"].startswith("bi"), res.localisation


def test_unmasked_per_step_targets_and_a_bad_target_shape():
    model = _tagger(False, mask_zero=False)
    res = compare.verify_models(model, TaggerPort(False, pack=False))
    assert not _hard_failures(res), _hard_failures(res)
    ids = np.random.default_rng(1).integers(1, 13, (4, 7)).astype("int32")
    with pytest.raises(UsageError, match=r"shape \(4, 7\)"):
        compare.verify_models(_tagger(False, mask_zero=False), TaggerPort(False, pack=False), ids,
                              targets=np.zeros(4, dtype=np.int64))


# ---- Keras Masking (float time series padded with mask_value) against a packing torch port


class MaskingPort(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.fc = nn.Linear(5, 1)
        self.lstm.bias_hh_l0.requires_grad_(False)

    def forward(self, x):
        lengths = (x != -1.0).any(-1).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.fc(h[-1])


def test_masking_time_series_port_verifies_on_padded_data():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(4)
    x_in = keras.Input((6, 3))
    x = L.LSTM(5, name="lstm")(L.Masking(mask_value=-1.0, name="masking")(x_in))
    model = keras.Model(x_in, L.Dense(1, name="head")(x))
    model.compile(optimizer="adam", loss="mse")
    data = np.random.default_rng(5).standard_normal((4, 6, 3)).astype("float32")
    data[0, 4:] = -1.0
    data[2, 2:] = -1.0
    res = compare.verify_models(model, MaskingPort(), data)
    assert not _hard_failures(res), _hard_failures(res)
    f64 = [c for c in res.checks if c.dtype == "float64" and not c.info]
    assert max(c.max_rel_diff for c in f64) <= FLOAT64_REL


def test_left_padded_data_against_a_packed_port_names_the_rows():
    """Keras skips masked steps anywhere; a packed port assumes right padding.
    Given left-padded rows the two differ by design, and verify says which rows."""
    ids = np.array([[0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [2, 3, 0, 0, 0, 0, 0], [0, 5, 6, 7, 8, 9, 1]],
                   dtype="int32")
    res = compare.verify_models(_tagger(True), TaggerPort(True), ids, gradients=False, train_steps=0)
    assert not res.passed
    notes = [d for d in res.diagnoses if "not right-padded" in d]
    assert notes and "[0, 3]" in notes[0], res.diagnoses
