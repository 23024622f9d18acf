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
    from keras_impl.graph import read_graph

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
