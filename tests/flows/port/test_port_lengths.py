"""`compare.py port` on inputs of unknown length (issue 20): the probe length
keeps every layer non-empty (keras_impl/read/probe.py), targets follow the output
shape Keras computes, and a model no probe fits asks for --data (exit 2)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from helpers import run_cli, written_models

from tests.port_helpers import port_ok  # noqa: I001  (torch before TensorFlow)

import keras  # noqa: E402
from keras import layers as L  # noqa: E402

from keras_impl.read.probe import MAX_PROBE_STEPS, probe_steps  # noqa: E402
from keras_impl.read import read_graph  # noqa: E402
from shared.flows import port_check as pc  # noqa: E402
from shared.core.errors import UsageError  # noqa: E402

MODELS = textwrap.dedent('''
    import keras
    from keras import layers as L

    def three_strides():
        """Two stride-3 valid Conv1D and a pool of 3: 16 steps leave the pool empty, 27 is the shortest that fits."""
        keras.utils.set_random_seed(3)
        x = keras.Input((None, 3), name="series")
        y = L.Conv1D(4, 3, strides=3, name="c1")(x)
        y = L.Conv1D(4, 3, strides=3, name="c2")(y)
        y = L.MaxPooling1D(3, name="pool")(y)
        return keras.Model(x, L.Conv1D(2, 1, name="c3")(y), name="three_strides")

    def too_wide():
        """A 3000-tap kernel: no probe up to MAX_PROBE_STEPS fits."""
        x = keras.Input((None, 2), name="series")
        y = L.Conv1D(2, 3000, name="wide")(x)
        return keras.Model(x, L.GlobalMaxPooling1D(name="gmp")(y), name="too_wide")
''')


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return written_models(tmp_path_factory.mktemp("lengths"), "length_models.py", MODELS)


def _run(*args):
    return run_cli("port", *args)


def test_probe_length_is_the_shortest_that_keeps_every_layer_non_empty(models):
    _, ns = models
    assert probe_steps(ns["three_strides"]()) == 27  # 27 -> 9 -> 3 -> 1 step; 26 -> 8 -> 2 -> 0
    seq = keras.Model(i := keras.Input((None, 2)), L.LSTM(3)(i))
    assert probe_steps(seq) == pc.UNKNOWN_SEQUENCE_STEPS  # 16 fits: kept
    fixed = keras.Model(i := keras.Input((5, 2)), L.Dense(3)(i))
    assert probe_steps(fixed) is None


def test_unknown_output_length_gets_targets_of_the_computed_shape(models):
    _, ns = models
    res = port_ok(ns["three_strides"]())  # output (N, 2, None): targets (N, 2, 1) from Keras' forward
    assert res.graph.meta["probe_steps"] == 27 and res.graph.meta["assumed_steps"] == {"series": 27}
    assert res.info["unknown_lengths"] == {"series": 27}
    assert res.graph.tensors[res.graph.outputs[0]].shape == (None, 2, None)
    import torch

    with torch.no_grad():  # model.py takes any length that fits: 81 steps -> 27 -> 9 -> pooled 3
        out = res.module(torch.randn(2, 3, 81))
    assert tuple(out.shape) == (2, 2, 3)


def test_image_of_unknown_size_is_probed_on_both_axes():
    keras.utils.set_random_seed(4)
    x = keras.Input((None, None, 2), name="image")
    y = L.Conv2D(3, 5, strides=4, name="c1")(x)
    y = L.Conv2D(2, 3, strides=2, name="c2")(y)
    model = keras.Model(x, L.GlobalAveragePooling2D(name="gap")(y))
    res = port_ok(model)
    # 16 -> 3 -> 1; 8 keeps c1 non-empty (2x2) but not c2: 16 fits, and is kept
    assert res.graph.meta["assumed_steps"] == {"image": 16}
    model = keras.Model(x, L.Conv2D(2, 3, strides=2, name="c3")(y))
    assert probe_steps(model) == 29  # 29 -> 7 -> 3 -> 1


def test_no_fitting_length_asks_for_data_naming_the_layer(models, tmp_path):
    path, ns = models
    graph = read_graph(ns["too_wide"]())
    with pytest.raises(UsageError, match=rf"at {MAX_PROBE_STEPS} steps layer 'wide' \(Conv1D\).*--data"):
        pc.random_inputs(graph)
    code, _, err = _run(f"{path}:too_wide", "--out", tmp_path / "out", "--no-onnx", "--steps", "0")
    assert code == 2 and "layer 'wide' (Conv1D)" in err and "needs more steps" in err, err
    # --data long enough: the port runs on it
    np.savez(tmp_path / "long.npz", series=np.random.default_rng(0).standard_normal((2, 2, 3005)).astype("float32"))
    code, out, err = _run(f"{path}:too_wide", "--out", tmp_path / "out", "--no-onnx", "--steps", "0",
                          "--data", tmp_path / "long.npz")
    assert code == 0, out + err
    assert "checked on 3005 steps" in out


def test_cli_note_names_the_probe_length(models, tmp_path):
    path, _ = models
    code, out, err = _run(f"{path}:three_strides", "--out", tmp_path / "out", "--steps", "1")
    assert code == 0, out + err
    assert "checked on 27 steps, the shortest from 16" in out
    import json

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["data"][0]["checked_lengths"] == {"series": 27}
    onnx = [c for c in report["checks"] if c["check"].startswith("onnx")]
    # both exports written at a length that fits (the torch example input is the probe length, not 1)
    assert any("onnx(torch)" in c["check"] for c in onnx) and any("onnx(keras)" in c["check"] for c in onnx), onnx
    assert all(c["passed"] and not c.get("info") for c in onnx), onnx
