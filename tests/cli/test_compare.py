"""compare.py: the options, a user dataset in each layout, the JSON schema, the
exit codes, planted divergences and the API for users' own test suites."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow (as Keras' own tests do)

import compare
from shared.data.config import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("ktp_dirs")

# The keys CI scripts read; renaming one is a breaking change.
CHECK_KEYS = {"task", "model", "dtype", "check", "a", "b", "max_abs_diff", "max_rel_diff", "tolerance", "passed", "where"}
ENV_KEYS = {"python", "tensorflow", "keras", "torch", "onnx", "onnxruntime", "seed", "dtype", "threads"}
# Few steps keep each harness run to a few seconds; the training checks
# themselves are covered at 50 steps in test_training.py.
FAST = ["--steps", "3", "--optimizer", "sgd"]


def run_cli(*args, check_rc=None):
    """compare.py in a subprocess (for exit codes and stderr exactly as CI sees them)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, str(ROOT / "compare.py"), *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def load_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_help_describes_the_command():
    p = run_cli("--help", check_rc=0)
    for word in ("--task", "--model", "--data", "--format", "--dtype", "--steps", "--optimizer", "--seed",
                 "--atol", "--rtol", "--out", "--quiet", "Exit codes", "data", "export"):
        assert word in p.stdout, word


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "pascal"], "--format needs --data"),
        (["--data", "/nonexistent/place", "--format", "pascal"], "/nonexistent/place"),
        (["--steps", "-1"], "--steps must be >= 0"),
        (["--dtype", "float16"], "invalid choice"),
        (["--data", "x.csv", "--format", "csv"], "--format csv needs --task"),
        (["data"], "give a built-in name"),
    ],
    ids=["format-without-data", "missing-data", "negative-steps", "bad-dtype", "csv-without-task", "data-without-source"],
)
def test_bad_usage_is_exit_2_with_one_line(args, message):
    p = run_cli(*args, check_rc=2)
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert len([ln for ln in p.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_builtin_run_passes_and_writes_the_report(tmp_path):
    out = tmp_path / "report"
    rc = compare.main(["--task", "multiclass", *FAST, "--out", str(out), "--quiet"])
    assert rc == compare.EXIT_OK
    rep = load_report(out)
    assert rep["passed"] is True
    assert ENV_KEYS <= set(rep["environment"])
    assert rep["data"][0]["dataset"] == "digits" and rep["data"][0]["rows"] == {"train": 1437, "valid": 360}
    checks = rep["checks"]
    assert all(CHECK_KEYS <= set(c) for c in checks)
    names = {c["check"] for c in checks}
    assert any(n.startswith("gradients (batch ") for n in names)
    for must in ("logits", "probabilities", "per-sample loss", "mean loss", "predictions", "metrics",
                 "batch fingerprints (sgd)", "training loss curve (sgd)", "trained weights (sgd)",
                 "weights keras->torch->keras", "onnx logits keras vs onnx(torch)"):
        assert must in names, must
    # float64 repeat of the forward pass is there and agrees to ~1e-12.
    f64 = [c for c in checks if c["dtype"] == "float64" and c["check"] == "logits"]
    assert f64 and f64[0]["max_abs_diff"] < 1e-12
    f32 = next(c for c in checks if c["dtype"] == "float32" and c["check"] == "logits")
    assert f32["max_abs_diff"] <= f32["tolerance"] < 1e-5
    for f in ("report.md", "loss_curves.png", "forward_diff_hist.png", "weights/digits_mlp.keras.safetensors",
              "onnx/digits_mlp/keras.onnx", "onnx/digits_mlp/torch.onnx"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text()
    assert "| task | model | dtype | check |" in md and "PASSED" in md
    assert not [p for p in tmp_path.iterdir() if p.name != "report"], "temporary folders left behind"


def test_stability_from_logits_is_a_check_and_the_naive_rows_information(tmp_path):
    """At extreme logits the from-logits losses must stay finite and agree (a loss
    computed on probabilities fails there: --plant bce-probabilities); the naive
    probabilities-then-log path is shown, never judged."""
    out = tmp_path / "r"
    assert compare.main(["--task", "binary", "--steps", "0", "--no-onnx", "--out", str(out), "--quiet"]) == 0
    rows = [c for c in load_report(out)["checks"] if c["check"].startswith("stability")]
    from_logits = [r for r in rows if "from_logits" in r["check"] and "naive" not in r["check"]]
    naive = [r for r in rows if "naive" in r["check"]]
    assert len(from_logits) == 1 and not from_logits[0]["info"]
    assert from_logits[0]["passed"] and from_logits[0]["detail"]["finite"]
    assert from_logits[0]["tolerance_from"].startswith("derived: 4 x (keras ")
    assert all(r["info"] for r in naive)
    # The naive path (sigmoid, then log) is visibly wrong at extreme logits on both sides.
    assert len(naive) == 2 and all(r["max_abs_diff"] > 1.0 for r in naive)


@pytest.mark.parametrize(
    "fault, layer",
    [("conv-kernel", "conv1"), ("bn-epsilon", "bn1"), ("flatten-order", "fc1")],
)
def test_planted_divergence_fails_with_exit_1_and_names_the_layer(tmp_path, fault, layer):
    out = tmp_path / "r"
    rc = compare.main(["--task", "regression", "--steps", "2", "--optimizer", "sgd", "--no-onnx",
                       "--plant", fault, "--out", str(out), "--quiet"])
    assert rc == compare.EXIT_PARITY
    rep = load_report(out)
    assert rep["passed"] is False
    first = [c for c in rep["checks"] if c["check"] == "first differing layer" and c["dtype"] == "float32"]
    assert len(first) == 1 and first[0]["where"].split()[0] == layer, first
    assert first[0]["max_abs_diff"] > first[0]["tolerance"]


def test_exit_code_1_from_the_command_line(tmp_path):
    p = run_cli("--task", "multilabel", "--steps", "1", "--optimizer", "sgd", "--no-onnx",
                "--plant", "conv-kernel", "--out", str(tmp_path / "r"), "--quiet", check_rc=1)
    assert "FAILED" in p.stdout


def test_tolerance_override_reaches_the_onnx_rows(tmp_path):
    """--atol 0 --rtol 0 judge every row: the ONNX four-way and batch-1 rows too
    (the issue: the logits row failed at 1.19e-7 while the ONNX row passed it)."""
    out = tmp_path / "r"
    rc = compare.main(["--task", "binary", "--steps", "0", "--atol", "0", "--rtol", "0", "--out", str(out), "--quiet"])
    assert rc == compare.EXIT_PARITY
    rows = load_report(out)["checks"]
    onnx = [r for r in rows if r["check"].startswith("onnx logits") or r["check"].startswith("onnx batch 1")]
    assert onnx and all(r["tolerance"] == 0 and r["tolerance_from"] == "user: --atol 0 --rtol 0" for r in onnx)
    differing = [r for r in onnx if r["max_abs_diff"] > 0]
    assert differing and not any(r["passed"] for r in differing)


def test_tolerance_override_makes_a_clean_run_fail(tmp_path):
    # rtol=atol=0 demands bit-equality; the cnn's float32 logits differ by ~1e-6.
    out = tmp_path / "r"
    rc = compare.main(["--task", "regression", "--steps", "0", "--no-onnx", "--atol", "0", "--rtol", "0", "--out", str(out), "--quiet"])
    assert rc == compare.EXIT_PARITY
    logits = next(c for c in load_report(out)["checks"] if c["check"] == "logits" and c["dtype"] == "float32")
    assert logits["tolerance"] == 0.0 and logits["max_abs_diff"] > 0


# User data in the real layouts, written by the built-in generators (textured
# digit images). The loader fixtures' solid-colour images are right for exact
# pixel checks but give BatchNorm a near-zero variance, which amplifies float32
# rounding in the backward pass ~30x: not what a user's photos look like.
def test_user_pascal_layout(tmp_path):
    from shared.data.builtin import make_multilabel

    src = make_multilabel(tmp_path / "pascal", n_items=60, seed=3)
    out = tmp_path / "r"
    assert compare.main(["--data", str(src), "--format", "pascal", *FAST, "--no-onnx", "--out", str(out), "--quiet"]) == 0
    rep = load_report(out)
    assert rep["data"][0]["path"] == str(src) and rep["data"][0]["task"] == "multilabel"
    assert sum(rep["data"][0]["rows"].values()) == 60
    names = {c["check"] for c in rep["checks"]}
    assert "threshold sweep accuracy (after 300 Adam steps)" in names and "chosen threshold" in names
    assert (out / "threshold_sweep.png").is_file()


def test_user_biwi_layout(tmp_path):
    from shared.data.builtin import make_regression

    src = make_regression(tmp_path / "biwi", n_per_person=20, persons=("01", "02", "13"), seed=3)
    out = tmp_path / "r"
    assert compare.main(["--data", str(src), "--format", "biwi", *FAST, "--no-onnx", "--out", str(out), "--quiet"]) == 0
    rep = load_report(out)
    assert rep["data"][0]["task"] == "regression" and rep["data"][0]["model"] == "cnn"
    assert rep["data"][0]["rows"] == {"train": 40, "valid": 20}


def test_user_csv_layout(tmp_path):
    rng = np.random.default_rng(0)
    csv = tmp_path / "t.csv"
    rows = ["a,b,c,label"] + [f"{x:.3f},{y:.3f},{z:.3f},{'yes' if x + y > 0 else 'no'}" for x, y, z in rng.normal(size=(80, 3))]
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "r"
    assert compare.main(["--data", str(csv), "--format", "csv", "--task", "binary", "--target", "label",
                         *FAST, "--out", str(out), "--quiet"]) == 0
    rep = load_report(out)
    assert rep["data"][0]["task"] == "binary" and rep["data"][0]["input_shape"] == [3]
    assert any(c["check"].startswith("onnx") for c in rep["checks"])


def test_bad_user_data_is_exit_2_and_writes_nothing(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("a,label\n1.0,x\nnot-a-number,y\n")
    out = tmp_path / "r"
    p = run_cli("--data", str(csv), "--format", "csv", "--task", "binary", "--out", str(out), check_rc=2)
    assert "bad.csv" in p.stderr and "row 2" in p.stderr
    assert not out.exists()


def test_interrupted_run_keeps_the_previous_report(tmp_path, monkeypatch):
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.json").write_text('{"passed": true, "old": 1}')

    def boom(*a, **k):
        raise RuntimeError("killed mid-run")

    # Raised "in" compare.py: a crash of this tool (raised in this test file, it would be a user's error, exit 2).
    boom.__code__ = boom.__code__.replace(co_filename=compare.__file__)
    monkeypatch.setattr(compare, "check_case", boom)
    # A crash is exit 3, never 1 (which CI reads as a parity verdict).
    assert compare.main(["--task", "multiclass", "--out", str(out), "--quiet"]) == compare.EXIT_INTERNAL
    assert json.loads((out / "report.json").read_text()) == {"passed": True, "old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_export_command_writes_both_onnx_files_and_weights(tmp_path):
    out = tmp_path / "exp"
    assert compare.main(["export", "--task", "multiclass", "--model", "mlp", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["keras.onnx", "torch.onnx", "weights.json", "weights.safetensors"]
    # And from a user's portable weights file.
    out2 = tmp_path / "exp2"
    assert compare.main(["export", "--weights", str(out / "weights.safetensors"), "--out", str(out2)]) == 0
    assert (out2 / "torch.onnx").read_bytes() == (out / "torch.onnx").read_bytes()


def test_export_to_an_unwritable_place_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert compare.main(["export", "--task", "binary", "--out", str(blocker / "sub")]) == compare.EXIT_USAGE
    assert str(blocker) in capsys.readouterr().err
    assert blocker.read_text() == "x"


def test_export_bad_opset_is_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "exp"
    assert compare.main(["export", "--task", "binary", "--opset", "99", "--out", str(out)]) == compare.EXIT_USAGE
    assert not out.exists()


def test_data_command_prints_counts_and_writes_items(tmp_path, capsys):
    items = tmp_path / "items.csv"
    assert compare.main(["data", "digits", "--items", str(items)]) == 0
    text = capsys.readouterr().out
    assert "1437" in text and "360" in text
    assert len(items.read_text().splitlines()) == 1 + 1797


# ---- the API for users' own test suites --------------------------------------------
def _ported_pair(config):
    from keras_impl import models as km
    from keras_impl import weights as kw
    from torch_impl import models as tm
    from torch_impl import weights as tw

    k = km.build_model(config, seed=0)
    t = tm.build_model(config)
    tw.from_portable(t, config, kw.to_portable(k, config))
    return k, t


def test_compare_models_returns_report_records():
    cfg = ModelConfig("cnn", "multilabel", (16, 16, 3), 4)
    k, t = _ported_pair(cfg)
    x = np.random.default_rng(0).random((5, 16, 16, 3), dtype=np.float32)
    checks = compare.compare_models(k, t, x)
    assert len(checks) == 1 and checks[0].check == "outputs" and checks[0].passed
    assert CHECK_KEYS <= set(checks[0].to_dict())
    assert 0 < checks[0].max_abs_diff < checks[0].tolerance


def test_assert_parity_names_output_difference_where_and_tolerance():
    cfg = ModelConfig("mlp", "multiclass", (6,), 3)
    k, t = _ported_pair(cfg)
    x = np.random.default_rng(1).random((4, 6), dtype=np.float32)
    compare.assert_parity(k, t, x)  # ported: passes
    with torch.no_grad():
        t.head.bias[2] += 0.5
    with pytest.raises(AssertionError) as exc:
        compare.assert_parity(k, t, x)
    msg = str(exc.value)
    assert "outputs" in msg and "max |diff| 0.5" in msg and ", 2]" in msg and "tolerance 1.91e-06" in msg
