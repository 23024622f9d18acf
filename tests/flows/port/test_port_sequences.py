"""`compare.py port` on sequence models: Embedding with mask_zero, SimpleRNN,
LSTM, GRU (reset_after True and False), Bidirectional (every merge mode),
return_sequences / return_state / go_backwards, stacked RNNs, Conv1D and 1-D
pooling, MultiHeadAttention (key_dim independent of width, masks, causal,
dropout path), LayerNormalization, TimeDistributed.

Every model runs on padded token ids (right, left and holes: tests/seq_models.py)
and is checked node by node and for loss and gradients (backpropagation
through time) in float32 and float64; float64 must agree within 1e-12
relative (shared/verdict/tolerances.py FORWARD/GRADIENT float64)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow

import compare

sys.path.insert(0, str(Path(__file__).parents[2]))
from seq_models import BUILDERS, padded_ids, right_padded_ids  # noqa: E402

FLOAT64_REL = 1e-12  # the float64 target


def _failures(res):
    return [f"{c.check} [{c.dtype}]: {c.max_abs_diff:.3g} at {c.where}" for c in res.checks if not c.passed and not c.info]


@pytest.mark.parametrize("name", [n for n in BUILDERS if n != "lstm_classifier"])
def test_sequence_model_ports_within_tolerance(name):
    model, data = BUILDERS[name]()
    res = compare.port_checks(model, data)
    assert not _failures(res), _failures(res)
    f64 = [c for c in res.checks if c.dtype == "float64"]
    assert any(c.check.startswith("grad") for c in f64), "no gradient was compared"
    worst = max(c.max_rel_diff for c in f64)
    assert worst <= FLOAT64_REL, f"float64 worst relative difference {worst:.3g}"


@pytest.mark.parametrize("name", ["gru_variants", pytest.param("lstm_gru", marks=pytest.mark.slow),
                                  pytest.param("bidirectional_modes", marks=pytest.mark.slow),
                                  pytest.param("tagger", marks=pytest.mark.slow)])
def test_right_padded_batches_take_the_packed_fused_path(name):
    """Right padding only: the fused kernel on packed sequences (go_backwards,
    Bidirectional's zero outputs, carried outputs) must still match Keras."""
    model, _ = BUILDERS[name]()
    res = compare.port_checks(model, [right_padded_ids()])
    assert "pack_padded_sequence" in res.source
    assert not _failures(res), _failures(res)


def test_masked_sequence_output_loss_skips_padded_steps():
    """Keras' loss weights a masked output's items by the mask; the port
    records the mask and the torch loss does the same (else the loss row fails)."""
    from keras_impl.read import read_graph

    model, data = BUILDERS["tagger"]()
    graph = read_graph(model)
    masks = graph.meta["output_masks"]
    assert list(masks) == ["tags"] and graph.producer(masks["tags"]).op == "not_equal"  # op names count per process
    res = compare.port_checks(model, data, dtypes=("float64",))
    loss = next(c for c in res.checks if c.check.startswith("loss"))
    assert loss.passed and loss.max_abs_diff < 1e-12


def test_generated_model_py_alone_reproduces_keras(tmp_path):
    model, data = BUILDERS["bidirectional_modes"]()
    res = compare.port_checks(model, data, dtypes=("float32",))
    path = tmp_path / "model.py"
    path.write_text(res.source)
    imports = [line for line in res.source.splitlines() if line.startswith(("import ", "from "))]
    assert all(" torch" in line or line.startswith("import torch") for line in imports), imports
    spec = importlib.util.spec_from_file_location("standalone_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = mod.Model()
    m.load_state_dict(res.module.state_dict())
    m.eval()
    with torch.no_grad():
        out = m(torch.as_tensor(data[0])).numpy()
    ref = model(data[0]).numpy()
    assert np.abs(out - ref).max() < 1e-5
    assert "KerasGRUResetBefore" in res.source and "Why not nn.GRU" in res.source
    assert "nn.LSTM" in res.source  # the fused module is the base


def test_gru_gates_left_in_keras_order_are_caught():
    """Swap the r and z blocks back (Keras order) in the ported weights: the
    check must fail and name the GRU."""
    model, data = BUILDERS["lstm_gru"]()
    from keras_impl.read import read_graph
    from shared.flows import port_check as pc
    from torch_impl.write import build_module, graph_values
    from keras_impl.read import graph_values as keras_values

    graph = read_graph(model)
    node = graph.node("gru")
    w = node.weights["weight_ih_l0"]
    h = w.shape[0] // 3
    node.weights["weight_ih_l0"] = np.concatenate([w[h:2 * h], w[:h], w[2 * h:]])
    module, _ = build_module(graph)
    from shared.verdict import policy as verdict

    checks = pc.node_checks(graph, keras_values(model, graph, data), graph_values(module, graph, data),
                            lambda check, n, a, b: verdict.judge(check, "forward", "float32", a, b), dtype="float32")
    first = pc.first_differing(graph, checks)
    assert first is not None and "'gru'" in first.where


def test_masked_tensor_into_a_layer_that_ignores_masks_is_refused():
    import keras
    from keras_impl.read.registry import UnsupportedLayerError
    from keras_impl.read import read_graph

    class MaskUser(keras.layers.Layer):
        def call(self, x, mask=None):
            return x

    ids = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(7, 3, mask_zero=True)(ids)
    model = keras.Model(ids, keras.layers.Identity(name="ident")(x))
    read_graph(model)  # Identity takes no mask: fine
    from keras_impl.read.registry import CONVERTERS

    CONVERTERS["MaskUser"] = CONVERTERS["Identity"]
    try:
        y = MaskUser(name="mask_user")(keras.layers.Embedding(7, 3, mask_zero=True)(ids))
        with pytest.raises(UnsupportedLayerError, match="mask_user.*mask="):
            read_graph(keras.Model(ids, y))
    finally:
        del CONVERTERS["MaskUser"]


@pytest.mark.slow
def test_bilstm_classifier_ports():
    model, data = BUILDERS["lstm_classifier"]()
    res = compare.port_checks(model, data)
    assert not _failures(res), _failures(res)


def test_padded_ids_have_every_padding_pattern():
    ids = padded_ids()
    assert (ids[0, -3:] == 0).all() and (ids[1, :2] == 0).all() and ids[2, 1] == 0 and (ids[3] != 0).all()


def _training_rows(res):
    return [c for c in res.checks if c.check.startswith(("training", "trained"))]


_SLOW = pytest.mark.slow


@pytest.mark.parametrize("name,optimizer", [("tagger", "sgd"), ("conv_series", "adam"),
                                            pytest.param("lstm_gru", "sgd", marks=_SLOW),
                                            pytest.param("gru_variants", "sgd", marks=_SLOW),
                                            pytest.param("bidirectional_modes", "sgd", marks=_SLOW),
                                            pytest.param("time_distributed_conv", "adam", marks=_SLOW)])
def test_training_parity_over_sequences(name, optimizer):
    """A few optimizer steps through time from the same start: loss curve and
    every trained weight, float32 and float64 (shared/verdict/tolerances.py TRAINING)."""
    from shared.data.config import TrainConfig

    model, data = BUILDERS[name]()
    res = compare.port_checks(model, data, train_config=TrainConfig(optimizer, 0.05 if optimizer == "sgd" else 0.01, steps=4))
    rows = _training_rows(res)
    assert {c.dtype for c in rows} == {"float32", "float64"} and len(rows) > 4
    assert not _failures(res), _failures(res)
    assert max(c.max_rel_diff for c in rows if c.dtype == "float64") <= 1e-10


@pytest.mark.slow
def test_adam_on_repeated_tokens_matches_keras_sparse_update():
    """Keras' Adam squares an Embedding's IndexedSlices gradient slice by slice
    (TRAPS.md, "Keras' Adam on an Embedding"); the torch training applies the
    same rule to a sparse gradient, and an information row measures the
    stock dense update's difference."""
    from shared.data.config import TrainConfig

    model, data = BUILDERS["lstm_gru"]()
    res = compare.port_checks(model, data, dtypes=("float64",), train_config=TrainConfig("adam", 0.01, steps=3))
    trained = [c for c in res.checks if c.check.startswith(("training", "trained")) and not c.info]
    assert trained and max(c.max_rel_diff for c in trained) <= 1e-10
    stock = [c for c in res.checks if c.check.startswith("stock torch")]
    assert len(stock) == 1 and stock[0].info and stock[0].max_rel_diff > 1e-4, stock
    assert not _failures(res), _failures(res)[:3]


def test_random_ids_of_a_masked_model_have_no_all_padding_row():
    """port's own random ids keep the mask value anywhere (interior pads: Keras'
    gap semantics), but never a row of nothing else: Keras' masked average over
    no steps is 0/0 = NaN, which agrees with nothing."""
    import keras
    from keras import layers as L

    from keras_impl.read import read_graph
    from shared.flows.port_check import random_inputs

    keras.utils.set_random_seed(0)
    ids = keras.Input((3,), dtype="int32")
    y = L.GlobalAveragePooling1D(name="pool")(L.Embedding(2, 4, mask_zero=True, name="emb")(ids))
    model = keras.Model(ids, L.Dense(2, name="head")(y))
    graph = read_graph(model)
    plain = np.random.default_rng(0).integers(0, 2, (32, 3))  # the draw before the fix: 1 row in 8 is all padding
    assert (plain == 0).all(axis=1).sum() >= 2
    x = random_inputs(graph, 32, seed=0)[0]
    assert not (x == 0).all(axis=1).any()
    assert ((x[:, :-1] == 0) & (x[:, 1:] != 0)).any()  # interior pads stay
    assert np.isfinite(np.asarray(model(x))).all()
    res = compare.port_checks(model, batch=32)
    assert not _failures(res), _failures(res)
