"""ONNX parity: for every built-in pair (float32), the Keras model (seeded,
BatchNorm statistics and every bias made non-trivial) is ported to torch,
both are exported (keras_impl.export / torch_impl.export), both files pass
onnx.checker, and keras, torch, onnx(keras), onnx(torch) agree on all six
edges at batch 1 and batch 64 under onnxruntime with ORT_LEVEL.

Bad inputs: an unsupported opset, an unwritable destination and an exporter
that fails half-way each raise a ParityError subclass and leave nothing behind.

The largest difference per (pair, edge), the export times and the operator
counts are printed at the end of the run.
"""

import torch  # noqa: I001  (torch before TensorFlow/Keras, as Keras' own tests do)

import os
import time

import numpy as np
import pytest

from helpers import max_record, random_inputs, randomise_bn
from keras_impl import export as kexport
from keras_impl import models as kmodels
from keras_impl import weights as kweights
from shared.onnx import onnx_check
from shared.verdict.checks import format_check
from shared.core.errors import ParityError
from shared.graph.layout import nhwc_to_nchw
from shared.onnx.onnx_check import (
    EDGES,
    ONNX_OPSET,
    ORT_LEVEL,
    SUPPORTED_OPSETS,
    ExportError,
    OutputPathError,
    UnsupportedOpsetError,
    check_model,
    four_way_checks,
    run_onnx,
)
from shared.data.registry import PAIRS
from torch_impl import export as texport
from torch_impl import models as tmodels
from torch_impl import weights as tweights

PAIR_PARAMS = [pytest.param(p, id=p.name) for p in PAIRS]
BATCHES = (1, 64)
SIDES = {"keras": kexport, "torch": texport}

LARGEST = {}  # (pair, edge) -> largest max |diff| over both batch sizes
EXPORT_SECONDS = {}  # (pair, side) -> seconds
OPS = {}  # (pair, side) -> {op_type: n}


class _Report:
    def pytest_terminal_summary(self, terminalreporter):
        if not (LARGEST or EXPORT_SECONDS):
            return
        tr = terminalreporter
        tr.section("onnx parity: export times, operators, largest differences")
        tr.write_line(f"opset {ONNX_OPSET}, onnxruntime {ORT_LEVEL}, batches {BATCHES}, float32")
        for (pair, side), sec in sorted(EXPORT_SECONDS.items()):
            ops = ", ".join(f"{k} {v}" for k, v in OPS.get((pair, side), {}).items())
            tr.write_line(f"  {pair:24} {side:6} export {sec:6.3f} s   ops: {ops}")
        for (pair, edge), value in sorted(LARGEST.items()):
            tr.write_line(f"  {pair:24} {edge:34} max |diff| {value:.3g}")


@pytest.fixture(scope="module", autouse=True)
def _register_report(request):
    manager = request.config.pluginmanager
    if not manager.has_plugin("onnx-parity-report"):
        manager.register(_Report(), "onnx-parity-report")
    yield


def _nontrivial(tensors: dict, config, seed: int = 3) -> dict:
    """randomise_bn, plus non-zero biases: a fresh Dense has a zero bias, which
    tf2onnx drops from the graph, so a lost bias would go unnoticed."""
    out = randomise_bn(tensors, config)
    rng = np.random.default_rng(seed)
    for name in out:
        if name.endswith(".bias") and not name.startswith("bn"):
            out[name] = rng.uniform(-0.5, 0.5, out[name].shape).astype(config.dtype)
    return out


def _build(pair):
    config = pair.config("float32")
    k = kmodels.build_model(config, seed=0)
    t = tmodels.build_model(config, seed=0)
    tensors = _nontrivial(kweights.to_portable(k, config), config)
    kweights.from_portable(k, config, tensors)
    tweights.from_portable(t, config, tensors)
    return config, k, t


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """pair name -> (config, keras model, torch model, {side: path}); built and
    exported once per pair, lazily."""
    cache = {}
    root = tmp_path_factory.mktemp("onnx")

    def get(pair):
        if pair.name not in cache:
            config, k, t = _build(pair)
            folder = root / pair.dataset
            paths = {}
            for side, model in (("keras", k), ("torch", t)):
                start = time.perf_counter()
                paths[side] = SIDES[side].export_onnx(model, config, folder / f"{side}.onnx")
                EXPORT_SECONDS[(pair.name, side)] = time.perf_counter() - start
            cache[pair.name] = (config, k, t, paths)
        return cache[pair.name]

    return get


# ---- the exports are valid ONNX with a symbolic batch dimension --------------
@pytest.mark.parametrize("pair", PAIR_PARAMS)
def test_exports_pass_checker(pair, exported):
    config, _, _, paths = exported(pair)
    for side, path in paths.items():
        info = check_model(path)
        OPS[(pair.name, side)] = info["ops"]
        assert info["opset"] == ONNX_OPSET, (side, info["opset_imports"])
        assert len(info["inputs"]) == 1 and len(info["outputs"]) == 1, info
        inp, out = info["inputs"][0], info["outputs"][0]
        assert (inp["name"], out["name"]) == ("input", "logits"), (side, inp, out)
        assert isinstance(inp["shape"][0], str) and isinstance(out["shape"][0], str), (side, inp, out)
        assert inp["dtype"] == out["dtype"] == "float32"
        feature_shape = list(config.input_shape)
        if side == "torch" and config.model == "cnn":
            h, w, c = config.input_shape
            feature_shape = [c, h, w]  # NCHW
        assert inp["shape"][1:] == feature_shape, (side, inp)
        assert out["shape"][1:] == [config.num_outputs], (side, out)
        assert info["producer_name"] == {"keras": "tf2onnx", "torch": "pytorch"}[side]
    # Nothing but the two files in the export folder (no temporaries left).
    assert sorted(os.listdir(paths["keras"].parent)) == ["keras.onnx", "torch.onnx"]


# ---- four-way parity -----------------------------------------------------------
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("pair", PAIR_PARAMS)
def test_four_way_parity(pair, batch, exported):
    config, k, t, paths = exported(pair)
    x = random_inputs(config, 64, seed=20)[:batch]  # NHWC for images
    x_t = nhwc_to_nchw(x)
    outputs = {
        "keras": kmodels.forward(k, x, training=False),
        "torch": tmodels.forward(t, x_t, training=False),
        "onnx(keras)": run_onnx(paths["keras"], x),
        "onnx(torch)": run_onnx(paths["torch"], x_t),
    }
    checks = four_way_checks(outputs, task=config.task, dtype=config.dtype, model=config.model)
    per_edge = 2 if config.task != "regression" else 1
    assert len(checks) == len(EDGES) * per_edge
    assert all(c.check.startswith("onnx") for c in checks)
    for c in checks:
        if c.check.startswith("onnx logits"):
            max_record(LARGEST, (pair.name, f"{c.a} vs {c.b}"), c.max_abs_diff)
    bad = [format_check(c) for c in checks if not c.passed]
    assert not bad, "\n".join(bad)


# ---- the check functions themselves ----------------------------------------------
def test_four_way_checks_names_and_flips():
    base = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    flipped = base.copy()
    flipped[1] = [0.0, 3.5, 3.0]  # argmax 2 -> 1 in row 1
    outputs = {"keras": base, "torch": base, "onnx(keras)": base, "onnx(torch)": flipped}
    checks = four_way_checks(outputs, task="multiclass", class_names=["a", "b", "c"], model="mlp")
    names = [c.check for c in checks]
    assert names[:2] == ["onnx logits keras vs torch", "onnx predictions keras vs torch"]
    assert len(set(names)) == 12
    by = {c.check: c for c in checks}
    c = by["onnx predictions keras vs onnx(torch)"]
    assert (c.a, c.b, c.passed, c.max_abs_diff) == ("keras", "onnx(torch)", False, 1.0)
    assert c.detail["flips"] == 1 and c.detail["agreement"] == 0.5 and c.detail["ort_level"] == ORT_LEVEL
    assert "(c)" in c.where and "(b)" in c.where
    assert not by["onnx logits onnx(keras) vs onnx(torch)"].passed
    assert by["onnx predictions keras vs onnx(keras)"].passed
    # multilabel / binary: a logit crossing 0 is a flip; regression: logits only.
    ml = {s: np.array([[0.5, -0.5]], dtype=np.float32) for s in onnx_check.SIDES}
    ml["torch"] = np.array([[0.5, 1e-3]], dtype=np.float32)
    assert [c.passed for c in four_way_checks(ml, task="multilabel") if c.check == "onnx predictions keras vs torch"] == [False]
    reg = four_way_checks({s: np.zeros((3, 2)) for s in onnx_check.SIDES}, task="regression")
    assert len(reg) == 6 and all(c.passed for c in reg)
    with pytest.raises(KeyError, match="onnx\\(torch\\)"):
        four_way_checks({"keras": base, "torch": base, "onnx(keras)": base}, task="multiclass")


def test_run_onnx_caches_sessions_and_checks_shapes(exported, tmp_path):
    pair = PAIRS[0]
    config, _, t, paths = exported(pair)
    x = random_inputs(config, 4, seed=1)
    first = run_onnx(paths["torch"], x)
    n = len(onnx_check._SESSIONS)
    assert np.array_equal(run_onnx(paths["torch"], x), first)
    assert len(onnx_check._SESSIONS) == n  # reused, not re-created
    with pytest.raises(onnx_check.OnnxModelError, match="expects shape"):
        run_onnx(paths["torch"], x[:, :5])
    with pytest.raises(onnx_check.OnnxModelError, match="no such ONNX file"):
        run_onnx(tmp_path / "missing.onnx", x)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(onnx_check.OnnxModelError, match="invalid ONNX model"):
        check_model(bad)


# ---- bad inputs -----------------------------------------------------------------
@pytest.mark.parametrize("side", sorted(SIDES))
@pytest.mark.parametrize("opset", [SUPPORTED_OPSETS.start - 1, SUPPORTED_OPSETS.stop, 0, "17", None])
def test_unsupported_opset(side, opset, tmp_path):
    config, k, t = _build(PAIRS[0])
    model = k if side == "keras" else t
    with pytest.raises(UnsupportedOpsetError) as err:
        SIDES[side].export_onnx(model, config, tmp_path / "out" / "m.onnx", opset=opset)
    assert isinstance(err.value, ParityError)
    msg = str(err.value)
    assert repr(opset) in msg and f"{SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}" in msg
    assert os.listdir(tmp_path) == []  # nothing written, not even the folder


@pytest.mark.parametrize("side", sorted(SIDES))
def test_unwritable_destination(side, tmp_path):
    config, k, t = _build(PAIRS[0])
    model = k if side == "keras" else t
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    target = blocker / "sub" / "m.onnx"  # parent chain runs through a regular file
    with pytest.raises(OutputPathError) as err:
        SIDES[side].export_onnx(model, config, target)
    assert isinstance(err.value, ParityError) and str(target) in str(err.value) and str(blocker) in str(err.value)
    assert err.value.path == str(target)
    folder = tmp_path / "folder.onnx"  # the destination itself is a directory
    folder.mkdir()
    with pytest.raises(OutputPathError, match="is a directory"):
        SIDES[side].export_onnx(model, config, folder)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "folder.onnx"] and blocker.read_text() == "x"
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(OutputPathError, match="not writable"):
                SIDES[side].export_onnx(model, config, ro / "m.onnx")
        finally:
            ro.chmod(0o700)


def _failing_exporter(path_arg):
    """An exporter that writes half a file, prints, then raises."""

    def fail(*args, **kwargs):
        path = kwargs.get("output_path") if path_arg == "output_path" else args[2]
        with open(path, "wb") as f:
            f.write(b"partial")
        print("noisy exporter output")
        raise RuntimeError("simulated exporter crash\nsecond line of the traceback")

    return fail


@pytest.mark.parametrize("side", sorted(SIDES))
def test_exporter_failure_leaves_nothing(side, tmp_path, monkeypatch, capsys):
    config, k, t = _build(PAIRS[0])
    if side == "keras":
        import tf2onnx

        monkeypatch.setattr(tf2onnx.convert, "from_function", _failing_exporter("output_path"))
        model = k
    else:
        monkeypatch.setattr(torch.onnx, "export", _failing_exporter("positional"))
        model = t
    out = tmp_path / "exports"
    out.mkdir()
    existing = out / "m.onnx"
    existing.write_bytes(b"previous export")
    with pytest.raises(ExportError) as err:
        SIDES[side].export_onnx(model, config, existing)
    assert str(err.value) == f"{side} ONNX export failed for mlp_multiclass: simulated exporter crash"
    assert "noisy exporter output" in err.value.log
    assert "noisy exporter output" not in capsys.readouterr().out  # silenced
    assert os.listdir(out) == ["m.onnx"] and existing.read_bytes() == b"previous export"
    # A fresh destination in a folder that did not exist: the folder goes too.
    with pytest.raises(ExportError):
        SIDES[side].export_onnx(model, config, tmp_path / "new" / "deeper" / "m.onnx")
    assert sorted(os.listdir(tmp_path)) == ["exports"]


# ---- every supported opset (slow) ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("opset", list(SUPPORTED_OPSETS))
def test_every_supported_opset(opset, tmp_path):
    pair = next(p for p in PAIRS if p.model == "cnn")
    config, k, t = _build(pair)
    x = random_inputs(config, 8, seed=5)
    outputs = {"keras": kmodels.forward(k, x), "torch": tmodels.forward(t, nhwc_to_nchw(x))}
    for side, model in (("keras", k), ("torch", t)):
        path = SIDES[side].export_onnx(model, config, tmp_path / f"{side}.onnx", opset=opset)
        assert check_model(path)["opset"] == opset
        outputs[f"onnx({side})"] = run_onnx(path, x if side == "keras" else nhwc_to_nchw(x))
    bad = [format_check(c) for c in four_way_checks(outputs, task=config.task) if not c.passed]
    assert not bad, "\n".join(bad)


def test_float64_cnn_exports_but_onnxruntime_cannot_run_it(tmp_path):
    """A known limit, pinned so that it is noticed when it changes: both
    exporters write float64 graphs, but onnxruntime's CPU provider has no
    float64 Conv kernel, so run_onnx says so (the float64 MLPs run and agree)."""
    pair = next(p for p in PAIRS if p.model == "cnn")
    config = pair.config("float64")
    t = tmodels.build_model(config, seed=0)
    path = texport.export_onnx(t, config, tmp_path / "torch64.onnx")
    assert check_model(path)["inputs"][0]["dtype"] == "float64"
    x = nhwc_to_nchw(random_inputs(config, 2))
    with pytest.raises(onnx_check.OnnxModelError, match="NOT_IMPLEMENTED.*no kernel"):
        run_onnx(path, x)
