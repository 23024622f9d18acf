"""`compare.py verify` on hand-written torch sequence models (issue 13):
nn.Embedding / nn.LSTM / nn.GRU matched to Keras' Embedding / LSTM / GRU by
execution order, weights moved with the gate reorder (GRU z,r,h -> r,z,n) and
transposes of the neutral graph; a GRU whose weights were copied in Keras' gate
order fails, is located at the GRU and the note names the fix."""

from __future__ import annotations

import numpy as np
import pytest

import torch
from torch import nn

import compare


def _keras_model():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    ids = keras.Input((7,), dtype="int32")
    x = L.Embedding(13, 5, name="emb")(ids)
    x = L.LSTM(6, return_sequences=True, name="lstm")(x)
    x = L.GRU(4, name="gru")(x)
    model = keras.Model(ids, L.Dense(3, activation="softmax", name="head")(x))
    # Adam: Keras squares the Embedding's IndexedSlices gradient slice by slice;
    # verify's torch training follows it (TRAPS.md, "Keras' Adam on an Embedding")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


class HandWritten(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(13, 5)
        self.lstm = nn.LSTM(5, 6, batch_first=True)
        self.gru = nn.GRU(6, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)
        self.lstm.bias_hh_l0.requires_grad_(False)  # Keras' LSTM has one bias

    def forward(self, ids):
        y, _ = self.lstm(self.emb(ids))
        _, h = self.gru(y)
        return torch.softmax(self.fc(h[0]), dim=-1)


IDS = np.random.default_rng(0).integers(1, 13, size=(4, 7)).astype("int32")


def test_hand_written_lstm_gru_classifier_verifies():
    res = compare.verify_models(_keras_model(), HandWritten(), IDS)
    kinds = [p.kind for p in res.mapping.pairs]
    assert kinds == ["embedding", "rnn_lstm", "rnn_gru", "linear"], kinds
    failed = [f"{c.check} [{c.dtype}] {c.max_abs_diff:.3g}" for c in res.checks if not (c.passed or c.info)]
    assert not failed, failed
    f64 = [c for c in res.checks if c.dtype == "float64" and not c.info]
    assert f64 and max(c.max_rel_diff for c in f64) <= 1e-10
    assert any("after training" in c.check and c.check.startswith("emb.") for c in f64)
    stock = [c for c in res.checks if c.check.startswith("stock torch")]  # the dense update, measured
    assert len(stock) == 1 and stock[0].info and stock[0].max_rel_diff > 1e-3, stock
    assert any(n.startswith("stock torch Adam") for n in res.notes), res.notes


def test_gru_weights_in_keras_gate_order_fail_and_are_located():
    keras_model = _keras_model()
    port = HandWritten()
    from keras_impl.read import read_graph

    graph = read_graph(keras_model)
    sd = {}
    for node in graph.nodes:
        for k, v in node.weights.items():
            sd[f"{node.name}.{k}"] = torch.from_numpy(np.asarray(v, dtype=np.float32))
    names = {"emb": "emb", "lstm": "lstm", "gru": "gru", "head": "fc"}
    state = {}
    for key, v in sd.items():
        layer, w = key.split(".", 1)
        if layer in names:
            state[f"{names[layer]}.{w}"] = v
    for w in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):  # the bug: r,z,n -> back to Keras' z,r,h
        a = state[f"gru.{w}"]
        h = a.shape[0] // 3
        state[f"gru.{w}"] = torch.cat([a[h:2 * h], a[:h], a[2 * h:]])
    port.load_state_dict(state, strict=True)
    res = compare.verify_models(keras_model, port, IDS, weights="as-is")
    assert not res.passed
    assert res.localisation is not None and "gru" in str(res.localisation)
    assert any("Keras' order z,r,h" in n for n in res.diagnoses), res.diagnoses


# ---- one torch module doing the work of several Keras layers: nn.LSTM/nn.GRU with
# num_layers=2 and bidirectional=True against two Keras Bidirectional layers


def _keras_bidirectional(cell: str):
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    ids = keras.Input((7,), dtype="int32")
    x = L.Embedding(13, 5, name="emb")(ids)
    x = L.Bidirectional(getattr(L, cell)(6, return_sequences=True), name="bi1")(x)
    x = L.Bidirectional(getattr(L, cell)(6), name="bi2")(x)
    model = keras.Model(ids, L.Dense(3, name="head")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class StackedBidirectional(nn.Module):
    """The usual port: one fused module for both Keras layers, the final states of the last layer as features."""

    last_step_bug = False

    def __init__(self, cell: str):
        super().__init__()
        self.emb = nn.Embedding(13, 5)
        self.rnn = getattr(nn, cell)(5, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(12, 3)
        if cell == "LSTM":  # Keras' LSTM has one bias
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_hh"):
                    p.requires_grad_(False)

    def forward(self, ids):
        out, h = self.rnn(self.emb(ids))
        if self.last_step_bug:  # the classic: the backward half's last step is its first, not its final state
            return self.fc(out[:, -1])
        h = h[0] if isinstance(h, tuple) else h
        return self.fc(torch.cat([h[-2], h[-1]], dim=-1))


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_stacked_bidirectional_module_matches_two_keras_bidirectional_layers(cell):
    res = compare.verify_models(_keras_bidirectional(cell), StackedBidirectional(cell), IDS)
    pairs = [(p.keras, p.torch) for p in res.mapping.pairs]
    assert pairs[1:5] == [("bi1_forward", "rnn[l0]"), ("bi1_backward", "rnn[l0_reverse]"),
                          ("bi2_forward", "rnn[l1]"), ("bi2_backward", "rnn[l1_reverse]")], pairs
    failed = [f"{c.check} [{c.dtype}] {c.max_abs_diff:.3g}" for c in res.checks if not (c.passed or c.info)]
    assert not failed, failed
    whole = [c for c in res.checks if c.dtype == "float64" and "(whole module)" in c.check]
    assert len(whole) == 1 and "bi2" in whole[0].check and whole[0].max_rel_diff <= 1e-12
    f64 = [c for c in res.checks if c.dtype == "float64" and not c.info]
    assert max(c.max_rel_diff for c in f64) <= 1e-12
    trained = [c for c in f64 if "l1_reverse" in c.check and "after training" in c.check]
    assert len(trained) >= 3  # every part's weights are trained and compared


def test_last_step_of_a_bidirectional_output_is_caught_after_the_module():
    port = StackedBidirectional("LSTM")
    port.last_step_bug = True
    res = compare.verify_models(_keras_bidirectional("LSTM"), port, IDS, gradients=False, train_steps=0)  # a forward bug
    assert not res.passed
    out = next(c for c in res.checks if c.check == "model output" and c.dtype == "float64")
    assert not out.passed and out.max_abs_diff > 1e-4
    assert res.localisation["first_differing"] == "head", res.localisation
    assert res.localisation["last_agreeing"] == "bi2_backward"
