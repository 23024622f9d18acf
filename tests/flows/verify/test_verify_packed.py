"""`compare.py verify` on padded, masked sequences (issue 13): Keras text models
with Embedding(mask_zero=True) against torch ports that pack the padded ids
(pack_padded_sequence, the RNN on the PackedSequence, pad_packed_sequence, a
masked mean by hand: tests/verify_models/torch_masked_ports.py).

Random ids for a masking model are right-padded rows (shared/flows/verify_run.py
`right_padded`); per-pair sequence outputs are compared at the steps the
Keras mask keeps (a Keras RNN repeats its previous output at masked steps, a
packed torch RNN leaves zeros); the correct ports agree to 1e-12 in float64
on the forward pass, the gradients and training; the planted bugs fail at the
pair they break. Given rows whose Keras output is NaN (nothing but padding
into a masked average) are refused with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow

import compare
from tests.verify_models import keras_masked as K
from tests.verify_models import torch_masked_ports as P

ROOT = Path(__file__).resolve().parents[3]
FLOAT64_REL = 1e-12  # the float64 target
KEPT = "(steps the Keras mask keeps)"
FORWARD_ONLY = {"train_steps": 0, "gradients": False}  # where the bug is shows in the forward pass
MODELS = {"stacked": (K.build_stacked, P.StackedPort), "stacked_fused": (K.build_stacked, P.StackedFused),
          "bigru": (K.build_bigru, P.BiGruPort),
          "pooled": (K.build_pooled, P.PooledPort)}


def _failed(res):
    return [f"{c.check} [{c.dtype}] {c.max_abs_diff:.3g} at {c.where}" for c in res.checks if not (c.passed or c.info)]


def test_random_ids_of_a_masking_model_are_right_padded():
    from keras_impl.side import KerasSide
    from shared.flows.verify_run import VerifyOptions
    from shared.flows.verify_data import draw_data as _data

    ks = KerasSide.for_verify(K.build_pooled())
    assert ks.mask_value() == 0
    x, _, batches = _data(ks, ks.loss_spec(), VerifyOptions(batch=6, steps=3), np.random.default_rng(0))
    for ids in [x] + [b[0] for b in batches]:
        lengths = (ids != 0).sum(1)
        assert ids.shape == (6, K.STEPS) and ids.max() < K.VOCAB
        assert lengths.min() >= 1 and lengths.max() == K.STEPS and lengths.min() < K.STEPS
        assert all((row[:n] != 0).all() and (row[n:] == 0).all() for row, n in zip(ids, lengths))  # right-padded


@pytest.mark.parametrize("name", list(MODELS))
def test_packed_ports_verify_in_float64(name):
    build, port = MODELS[name]
    res = compare.verify_models(build(), port())
    assert not _failed(res), _failed(res)
    f64 = [c for c in res.checks if c.dtype == "float64" and not c.info]
    assert max(c.max_rel_diff for c in f64) <= FLOAT64_REL
    assert sum(c.check.startswith("gradient") for c in f64) >= 5
    assert sum("after training" in c.check for c in f64) >= 5
    kept = [c for c in f64 if KEPT in c.check]
    assert kept and all("positions the Keras mask keeps" in c.tolerance_from for c in kept)
    if name in ("stacked", "pooled"):  # the sequence output of the first LSTM, masked steps left out
        assert any(c.check.startswith("output of lstm") for c in kept), [c.check for c in kept]
    if name in ("stacked_fused", "bigru"):  # one torch module for several Keras layers: its final states
        assert [c.max_rel_diff <= FLOAT64_REL for c in f64 if "(whole module)" in c.check] == [True]


def test_keras_repeats_outputs_at_masked_steps_where_the_packed_port_has_zeros():
    """Why the masked steps are left out: a full comparison would fail the correct port."""
    from keras_impl.side import KerasSide
    from torch_impl.side import TorchSide

    model, port = K.build_pooled(), P.PooledPort()
    assert compare.verify_models(model, port, train_steps=0, gradients=False).passed  # copies the weights into the port
    ks, ts = KerasSide.for_verify(model).with_dtype("float64"), TorchSide(port, dtype="float64")
    ids = np.array([[3, 4, 5, 6, 7, 8, 9], [2, 5, 0, 0, 0, 0, 0]])
    k, t = ks.pair_outputs(ids), ts.pair_outputs(ids, ["lstm"])
    np.testing.assert_array_equal(k["lstm@mask"][1], [True, True, False, False, False, False, False])
    np.testing.assert_allclose(k["lstm"][1, 2:], np.repeat(k["lstm"][1, 1:2], 5, axis=0))  # Keras: the last output again
    assert (t["lstm"][1, 2:] == 0).all() and np.abs(k["lstm"][1, 2:]).max() > 1e-3
    np.testing.assert_allclose(k["lstm"][:, :2], t["lstm"][:, :2], rtol=1e-12, atol=1e-15)


def test_no_packing_is_caught_at_the_rnn_whose_final_state_runs_over_the_padding():
    res = compare.verify_models(K.build_stacked(), P.StackedNoPacking(), **FORWARD_ONLY)
    assert not res.passed
    where = res.localisation
    # lstm1's outputs at the kept steps are right (right padding comes after them); lstm2's final state is not
    assert (where["last_agreeing"], where["first_differing"]) == ("lstm1", "lstm2"), where
    assert any(d.startswith("lstm2: Keras' LSTM skips the masked") and "pack_padded_sequence" in d for d in res.diagnoses)


def test_no_packing_in_a_bidirectional_gru_is_caught_at_the_gru():
    res = compare.verify_models(K.build_bigru(), P.BiGruNoPacking(), **FORWARD_ONLY)
    where = res.localisation
    assert (where["last_agreeing"], where["first_differing"], where["torch_module"]) == ("emb", "bigru_backward", "gru[l0_reverse]")
    row = next(c for c in res.checks if c.dtype == "float64" and "(whole module)" in c.check)
    assert not row.passed and row.max_abs_diff > 1e-3
    assert any("torch 'gru[l0_reverse]' runs over them" in d for d in res.diagnoses), res.diagnoses


def test_plain_mean_over_padded_steps_is_caught_between_the_lstm_and_the_head():
    res = compare.verify_models(K.build_pooled(), P.PooledPlainMean(), **FORWARD_ONLY)
    where = res.localisation
    assert (where["last_agreeing"], where["first_differing"]) == ("lstm", "head"), where
    assert "pool" in where["between"] and "mean(1)" in where["torch_ops"]
    assert "masked_mean" in " ".join(where["keras_ops"])
    lstm = next(c for c in res.checks if c.dtype == "float64" and c.check.startswith("output of lstm"))
    assert lstm.passed and KEPT in lstm.check


def test_lengths_off_by_one_are_caught_at_the_first_lstm():
    res = compare.verify_models(K.build_stacked(), P.StackedLengthsOffByOne(), **FORWARD_ONLY)
    where = res.localisation
    assert (where["last_agreeing"], where["first_differing"]) == ("emb", "lstm1"), where
    assert "pack_padded_sequence" in where["torch_ops"] and "sub(1)" in " ".join(where["torch_ops"])
    row = next(c for c in res.checks if c.dtype == "float64" and c.check.startswith("output of lstm1"))
    assert KEPT in row.check and not row.passed and row.max_abs_diff > 1e-3


def test_all_padding_row_exits_2_naming_the_row_and_writes_nothing(tmp_path):
    ids = np.array([[3, 4, 5, 6, 7, 8, 9], [2, 5, 0, 0, 0, 0, 0], [0] * 7, [1, 2, 3, 0, 0, 0, 0]], dtype=np.int32)
    np.savez(tmp_path / "ids.npz", x=ids, y=np.array([0, 1, 2, 0]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "compare.py", "verify", "tests/verify_models/keras_masked.py:build_pooled",
                        "tests/verify_models/torch_masked_ports.py:PooledPort", "--data", str(tmp_path / "ids.npz"),
                        "--out", str(tmp_path / "rep")], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "rows [2]: every id is the mask value 0; Keras' own output is NaN there (likely a masked average over no " \
           "steps" in last, last
    assert "Traceback" not in r.stderr and not (tmp_path / "rep").exists()
    res = compare.verify_models(K.build_pooled(), P.PooledPort(), np.delete(ids, 2, axis=0), **FORWARD_ONLY)
    assert res.passed  # the same rows without it


def test_trace_sees_through_packed_sequences():
    """A PackedSequence is a tuple: the RNN's (output, h_n) is unwrapped without taking
    it apart; shapes are the padded (batch, steps, features) ones."""
    from torch_impl.side import TorchSide

    ids = np.array([[3, 4, 5, 6, 7, 8, 9], [2, 5, 0, 0, 0, 0, 0], [1, 2, 3, 0, 0, 0, 0]])
    ts = TorchSide(P.StackedPort(), dtype="float64")
    recs = {r.path: r for r in ts.trace(ids)}
    assert recs["lstm1"].in_shape == (3, 7, 5) and recs["lstm1"].out_shape == (3, 7, 6)
    assert recs["lstm2"].in_shape == (3, 7, 6)  # lstm1's PackedSequence, as it is
    assert recs["lstm1"].attrs["packed_input"] and recs["lstm2"].attrs["packed_input"]
    assert ts.ops_after["emb"] == ["pack_padded_sequence"]
    out = ts.pair_outputs(ids, ["lstm1", "lstm2"])
    assert out["lstm1"].shape == (3, 7, 6) and (out["lstm1"][1, 2:] == 0).all() and (out["lstm1"][1, :2] != 0).all()
    np.testing.assert_array_equal(out["lstm2@h_n"][0, 2], out["lstm2"][2, 2])  # h_n: each row's last valid step


def test_given_rows_with_a_non_finite_keras_output_are_refused_by_the_api():
    import keras

    from shared.core.errors import UsageError

    keras.utils.set_random_seed(0)
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(inp))
    x = np.ones((5, 3))
    x[3, 1] = np.inf  # Keras' own logits for that row are inf or NaN
    with pytest.raises(UsageError, match=r"input rows \[3\]: Keras' own float64 output is (NaN|infinite) there"):
        compare.verify_models(model, torch.nn.Linear(3, 2), x)
    with pytest.raises(UsageError, match=r"input rows \[2\]: every id is the mask value 0; Keras' own output is NaN"):
        compare.verify_models(K.build_pooled(), P.PooledPort(), np.array([[1, 2, 0, 0, 0, 0, 0]] * 2 + [[0] * 7]))


def test_empty_rows_a_packed_port_cannot_take_are_refused_by_name():
    """Keras' stacked LSTMs give a finite output for a row of nothing but padding (the
    initial state); pack_padded_sequence refuses length 0: exit 2, not a crash."""
    from shared.core.errors import UsageError

    x = np.array([[1, 2, 3, 4, 5, 6, 7], [1, 2, 0, 0, 0, 0, 0], [0] * 7])
    with pytest.raises(UsageError, match=r"input rows \[2\]: every id is the mask value 0 \(an empty sequence\), and the "
                                         r"torch model fails on them \(RuntimeError: Length of all samples"):
        compare.verify_models(K.build_stacked(), P.StackedPort(), x, **FORWARD_ONLY)
