"""`compare.py port` with several inputs and outputs (issue 20): dicts of
inputs whose keys are not the Input names, dict outputs returned as a dict by
model.py, --data by name or key (a missing / extra key named, exit 2), both
ONNX exports fed every input and compared on every output, and float-declared
token ids that only an Embedding reads."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from helpers import run_cli, written_models

from tests.port_helpers import port_ok  # noqa: I001  (torch before TensorFlow)

import keras  # noqa: E402
from keras import layers as L  # noqa: E402

import compare  # noqa: E402
from shared.core.errors import UsageError  # noqa: E402
from shared.flows.port import load_inputs  # noqa: E402

MODELS = textwrap.dedent('''
    import keras
    from keras import layers as L

    def crossed():
        """Inputs of one shape under keys whose sorted order is not the names' (a swap would go unseen
        by the shapes); a dict of two outputs whose keys are not the layers' names."""
        keras.utils.set_random_seed(7)
        a, b = keras.Input((4,), name="alpha"), keras.Input((4,), name="beta")
        y = L.Concatenate(name="cat")([L.Dense(5, name="da")(a), L.Dense(5, name="db")(b)])
        return keras.Model({"z": a, "b": b}, {"score": L.Dense(3, name="head")(y), "aux": L.Dense(3, name="side")(y)},
                           name="crossed")

    def float_ids():
        """keras.io's text classifier: Input((maxlen,)) is float32, the Embedding casts."""
        keras.utils.set_random_seed(8)
        t = keras.Input((6,), name="tokens")
        y = L.GlobalAveragePooling1D(name="gap")(L.Embedding(30, 4, name="emb")(t))
        return keras.Model(t, L.Dense(2, activation="softmax", name="head")(y), name="float_ids")
''')


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return written_models(tmp_path_factory.mktemp("multi_io"), "multi_io_models.py", MODELS)


def _run(*args):
    return run_cli("port", *args)


def test_dict_inputs_and_outputs_keep_keras_names_and_keys(models):
    _, ns = models
    model = ns["crossed"]()
    res = port_ok(model)
    # forward's arguments: the Input names in Keras' flat order (keys sorted: b, z)
    assert "def forward(self, beta, alpha):" in res.source
    assert "return {'aux': side, 'score': head}" in res.source
    assert res.graph.meta["input_keys"] == {"beta": "b", "alpha": "z"}
    import torch

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)).astype("float32"), rng.standard_normal((3, 4)).astype("float32")
    want = model({"z": a, "b": b})
    with torch.no_grad():
        got = res.module(beta=torch.from_numpy(b), alpha=torch.from_numpy(a))
    assert sorted(got) == ["aux", "score"]
    for key in got:
        assert np.abs(got[key].numpy() - keras.ops.convert_to_numpy(want[key])).max() < 1e-5, key


def test_onnx_four_ways_on_every_output(models, tmp_path):
    _, ns = models
    res = compare.port_checks(ns["crossed"](), onnx_dir=tmp_path)
    onnx = [c for c in res.checks if c.check.startswith("onnx ")]
    for key in ("head", "side"):  # six edges per output, none skipped or failed
        rows = [c for c in onnx if c.check.startswith(f"onnx output {key} ")]
        assert len(rows) == 6 and all(c.passed and not c.info for c in rows), [c.check for c in onnx]
        assert max(c.max_abs_diff for c in rows) < 1e-5
    import onnx as ox

    for file in ("keras.onnx", "torch.onnx"):
        m = ox.load(str(tmp_path / file))
        assert sorted(i.name for i in m.graph.input) == ["alpha", "beta"], file
        assert [o.name for o in m.graph.output] == ["aux", "score"], file


def test_data_npz_by_name_or_key_and_errors_name_the_key(models, tmp_path):
    path, ns = models
    from keras_impl.read import read_graph

    graph = read_graph(ns["crossed"]())
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    np.savez(tmp_path / "names.npz", alpha=a, beta=b)
    np.savez(tmp_path / "keys.npz", z=a, b=b)
    for file in ("names.npz", "keys.npz"):  # both give graph.inputs order: beta, alpha
        xs = load_inputs(str(tmp_path / file), graph, 4, 0)
        assert np.array_equal(xs[0], b.astype("float32")) and np.array_equal(xs[1], a.astype("float32")), file
    np.savez(tmp_path / "bad.npz", alpha=a, gamma=b)
    with pytest.raises(UsageError, match=r"no array for input\(s\) \['beta'\]; array\(s\) \['gamma'\] match no input"):
        load_inputs(str(tmp_path / "bad.npz"), graph, 4, 0)
    code, _, err = _run(f"{path}:crossed", "--out", tmp_path / "out", "--data", tmp_path / "bad.npz", "--no-onnx")
    assert code == 2 and "'gamma'" in err and "'beta'" in err, err


def test_float_declared_ids_read_by_an_embedding_stay_integers(models, tmp_path):
    path, ns = models
    res = port_ok(ns["float_ids"]())
    assert res.graph.tensors["tokens"].dtype == "int64"
    assert res.graph.meta["integer_inputs"] == {"tokens": {"declared": "float32", "read_by": ["emb"]}}
    assert res.graph.meta["input_high"] == {"tokens": 30}
    assert "integer ids (Keras declares float32)" in res.source and ".to(torch.int32)" not in res.source
    code, out, err = _run(f"{path}:float_ids", "--out", tmp_path / "out", "--steps", "1")
    assert code == 0, out + err
    assert "input 'tokens' is declared float32 in Keras but only Embedding emb reads it" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["data"][0]["integer_inputs"]["tokens"]["declared"] == "float32"
    onnx = [c for c in report["checks"] if c["check"].startswith("onnx logits")]
    assert len(onnx) == 6 and all(c["passed"] for c in onnx)  # keras.onnx takes float ids, torch.onnx int64


def test_float_input_read_by_an_embedding_and_a_dense_is_cast_as_keras_does():
    keras.utils.set_random_seed(9)
    t = keras.Input((6,), name="tokens")
    y = L.GlobalAveragePooling1D(name="gap")(L.Embedding(12, 4, name="emb")(t))
    model = keras.Model(t, L.Dense(2, name="head")(L.Concatenate(name="cat")([y, L.Dense(3, name="raw")(t)])))
    res = port_ok(model)
    assert res.graph.tensors["tokens"].dtype == "float32"  # the Dense reads it as floats
    assert "x = tokens.to(torch.int32)  # emb_ids: (N, 6)" in res.source  # Embedding.call: ops.cast(inputs, "int32")
    from shared.flows.port_check import random_inputs

    x = random_inputs(res.graph, 64)[0]  # random ids, as floats: whole numbers below the table's 12 rows
    assert x.dtype == np.float32 and np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() == 11
