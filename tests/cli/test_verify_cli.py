"""`compare.py verify` on the command line: exit codes 0 / 1 / 2, the report
folder and the mapping file, --torch-weights with --weights as-is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
KERAS = "tests/verify_models/keras_cnn.py:build"
PORTS = "tests/verify_models/torch_ports.py"


def run(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "compare.py", "verify", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_correct_port_exits_0_and_writes_the_report(tmp_path):
    out = tmp_path / "rep"
    r = run(KERAS, f"{PORTS}:CorrectPort", "--steps", "0", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verify: PASS" in r.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True and report["localisation"] is None
    mapping = json.loads((out / "mapping.json").read_text())
    assert [p["torch"] for p in mapping["pairs"]] == ["conv1", "bn1", "dw", "fc", "head"]
    assert (out / "report.md").read_text().startswith("# verify: PASS")


@pytest.mark.slow
def test_the_mapping_file_replays(tmp_path):
    out = tmp_path / "rep"
    assert run(KERAS, f"{PORTS}:FlattenNHWC", "--steps", "0", "--out", str(out)).returncode == 0
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["pairs"][3]["flatten"]["torch_order"] == "hwc"
    r = run(KERAS, f"{PORTS}:FlattenNHWC", "--steps", "0", "--mapping", str(out / "mapping.json"), "--quiet")
    assert r.returncode == 0 and r.stdout.strip().startswith("verify: PASS"), r.stdout + r.stderr


def test_a_bug_exits_1_and_names_the_layer():
    r = run(KERAS, f"{PORTS}:SymmetricPadding", "--steps", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "first difference (float64 forward): `conv1` (torch 'conv1') is the first matched pair" in r.stdout
    assert "likely trap: conv1: padding differs" in r.stdout


def test_impossible_match_exits_2_with_one_line():
    r = run(KERAS, f"{PORTS}:MissingBias")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "error: head: Keras Dense has a bias, torch Linear 'head' has none"
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_bad_torch_model_exits_2():
    r = run(KERAS, f"{PORTS}:NoSuchPort")
    assert r.returncode == 2 and "has no class or function 'NoSuchPort'" in r.stderr


@pytest.mark.slow
def test_torch_weights_as_is(tmp_path):
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT))
    from tests.verify_models import torch_ports

    port = torch_ports.BnEpsDefault()  # its own random weights: as-is must fail at the first pair
    torch.save(port.state_dict(), tmp_path / "w.pt")
    r = run(KERAS, f"{PORTS}:BnEpsDefault", "--weights", "as-is", "--torch-weights", str(tmp_path / "w.pt"), "--steps", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "conv1.weight (torch 'conv1.weight'): differs from the Keras weight" in r.stdout


@pytest.mark.slow
def test_data_as_in_the_main_command(tmp_path, capsys):
    """--data table.csv --format csv --task multiclass, in process (compare.main)."""
    import compare

    rng = np.random.default_rng(0)
    rows = ["a,b,c,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{'yes' if a + b > 0 else 'no'}" for a, b, c in rng.standard_normal((30, 3))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    args = ["verify", "tests/verify_models/keras_cnn.py:build_mlp", f"{PORTS}:MlpPort", "--data", str(tmp_path / "t.csv"),
            "--format", "csv", "--task", "multiclass", "--steps", "2", "--batch-size", "8", "--out", str(tmp_path / "rep")]
    assert compare.main(args) == 0, capsys.readouterr()
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["passed"] and report["config"]["batch"] == 8
    rows = ["a,b,c,t"] + [",".join(f"{v:.4f}" for v in r) for r in rng.standard_normal((30, 4))]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")  # regression targets for a classifier: exit 2
    bad = ["verify", "tests/verify_models/keras_cnn.py:build_mlp", f"{PORTS}:MlpPort", "--data", str(tmp_path / "r.csv"),
           "--format", "csv", "--task", "regression"]
    assert compare.main(bad) == 2
    err = capsys.readouterr().err
    assert "targets have shape (24, 1) (float32); the Keras loss SparseCategoricalCrossentropy on a 2-wide output " \
        "takes class indices 0..1, shape (24,)" in err, err


PLUGIN = '''
import keras


@keras.saving.register_keras_serializable(package="ktp_cli_test")
class Doubling(keras.layers.Layer):
    """A custom layer a saved .keras model needs: only the plugin defines it."""

    def call(self, x):
        return x * 2.0
'''

TWO_INPUTS = '''
import keras


def build():
    a, b = keras.Input((4,), name="left"), keras.Input((3,), name="right")
    from plugin_layers import Doubling
    x = Doubling(name="doubling")(keras.layers.Concatenate(name="cat")([a, b]))
    return keras.Model([a, b], keras.layers.Dense(3, name="head")(x))
'''

TORCH_TWO_INPUTS = '''
import torch
from torch import nn


class Port(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(7, 3)

    def forward(self, left, right):
        return self.head(torch.cat([left, right], 1) * 2.0)
'''


def test_named_inputs_from_npz_and_a_plugin_in_process(tmp_path, capsys, monkeypatch):
    """verify --plugin (a custom layer of a saved .keras file) and --data .npz with one array per input name."""
    import compare

    (tmp_path / "plugin_layers.py").write_text(PLUGIN)
    (tmp_path / "two.py").write_text(TWO_INPUTS)
    (tmp_path / "port.py").write_text(TORCH_TWO_INPUTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    compare.frameworks()
    import importlib

    model = importlib.import_module("two").build()
    model.save(tmp_path / "two.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", right=rng.standard_normal((6, 3)).astype("float32"),
             left=rng.standard_normal((6, 4)).astype("float32"), y=rng.integers(0, 3, 6))
    base = ["verify", str(tmp_path / "two.keras"), f"{tmp_path / 'port.py'}:Port", "--steps", "1",
            "--data", str(tmp_path / "d.npz"), "--batch-size", "6"]

    def forget_the_layer():  # as in a fresh process: only --plugin can bring the class back
        keras.saving.get_custom_objects().pop("ktp_cli_test>Doubling", None)
        sys.modules.pop("plugin_layers", None)

    import keras

    forget_the_layer()
    assert compare.main(base) == 2
    err = capsys.readouterr().err
    assert "Keras could not locate class 'Doubling' (defined in module 'plugin_layers'" in err and "--plugin" in err, err
    forget_the_layer()
    assert compare.main(base + ["--plugin", str(tmp_path / "plugin_layers.py"), "--out", str(tmp_path / "rep")]) == 0, \
        capsys.readouterr()
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    out = [c for c in report["checks"] if c["check"] == "model output" and c["dtype"] == "float64"]
    assert report["passed"] and out and out[0]["max_abs_diff"] < 1e-14, out
    np.savez(tmp_path / "bad.npz", left=np.zeros((6, 4), "float32"), wrong=np.zeros((6, 3), "float32"))
    assert compare.main(base[:-4] + ["--data", str(tmp_path / "bad.npz")]) == 2
    assert "right" in capsys.readouterr().err
