"""`python compare.py bench`: a smoke run (--tiny) and the statistics, with synthetic numbers.

No timing thresholds here: speed is what the bench prints (BENCHMARKS.md), not
something a test asserts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.bench import orchestrate as bench

ROOT = Path(__file__).resolve().parents[2]


def test_stats_median_spread():
    s = bench.stats([3.0, 1.0, 2.0, 5.0, 4.0])
    assert s == {"median": 3.0, "min": 1.0, "max": 5.0, "q1": 2.0, "q3": 4.0, "n": 5}
    assert bench.stats([]) is None
    assert bench.stats(None) is None
    assert bench.stats([float("nan"), 2.0])["n"] == 1


def test_ratio_of_medians():
    assert bench.ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert bench.ratio(bench.stats([10.0]), 5.0) == pytest.approx(2.0)
    assert bench.ratio(None, [1.0]) is None
    assert bench.ratio([1.0], [0.0]) is None


def _part(train, plain, lat, thr, bs=32):
    return {
        "batch_size": bs, "import_s": 1.5, "peak_rss_mib": 500.0, "rss_after_import_mib": 400.0,
        "train": {"project": {"samples_per_s": train, "first_step_s": 0.2},
                  "plain": {"samples_per_s": plain, "first_step_s": 0.3}},
        "infer": {"project": {"latency_b1_s": lat, "throughput_samples_per_s": thr},
                  "plain": {"latency_b1_s": lat, "throughput_samples_per_s": thr}},
        "bare": {"forward_valid_s": [0.002], "forward_valid_f64_s": [0.003], "backward_s": [0.004]},
        "build_model_s": [0.01], "export": {"first_s": 1.0, "again_s": 0.5},
    }


def test_summarize_ratios_with_synthetic_parts():
    keras = _part([1000.0, 900.0, 1100.0], [1000.0] * 3, [0.002] * 3, [5000.0] * 3)
    torch = _part([2000.0] * 3, [2500.0] * 3, [0.0005] * 3, [20000.0] * 3)
    ort = {"peak_rss_mib": 100.0, "import_s": 0.1,
           "keras": {"latency_b1_s": [0.0001] * 3, "throughput_samples_per_s": [50000.0] * 3},
           "torch": {"latency_b1_s": [0.00005] * 3, "throughput_samples_per_s": [40000.0] * 3}}
    s = bench.summarize({"keras": keras, "torch": torch, "ort": ort}, bench.DEFAULTS)
    r = s["ratios"]
    assert r["train torch/keras (project paths)"] == pytest.approx(2.0)
    assert r["b1 speed torch/keras"] == pytest.approx(4.0)  # 2 ms vs 0.5 ms
    assert r["b1 speed ort/native keras"] == pytest.approx(20.0)
    assert r["b256 throughput ort/native torch"] == pytest.approx(2.0)
    assert s["project_vs_plain"]["torch train"] == pytest.approx(0.8)
    assert s["project_vs_plain"]["keras b1"] == pytest.approx(1.0)
    assert s["latency_b1_ms"]["keras_project"]["median"] == pytest.approx(2.0)
    assert s["peak_rss_mib"] == {"keras": 500.0, "torch": 500.0, "ort": 100.0}
    assert s["bare_s"]["keras train_step_s"]["median"] == pytest.approx(32 / 1000.0)
    assert s["errors"] == {}

    est = bench.bare_estimate({"p": {"summary": s}}, dict(bench.DEFAULTS, harness_steps=30, harness_optimizers=2))
    k = est["per_pair"]["p"]["keras"]
    assert k["forward"] == pytest.approx(2 * 0.002 + 0.003)
    assert k["training"] == pytest.approx(60 * 0.032)
    assert est["total_s"]["all"] == pytest.approx(sum(v for key, v in est["total_s"].items() if key != "all"))


def test_summarize_reports_a_failed_part():
    s = bench.summarize({"keras": {"error": "exit status 1"}, "torch": {}, "ort": {}}, bench.DEFAULTS)
    assert s["errors"] == {"keras": "exit status 1"}
    assert s["train_samples_per_s"]["keras_project"] is None
    assert s["ratios"]["train torch/keras (project paths)"] is None


def test_harness_split_adds_up_to_the_wall_time():
    runs = [{"wall_s": 50.0, "timings_s": {
        "a": {"port": 1.0, "forward": 2.0, "gradients": 0.5, "training": 10.0, "float64": 0.5, "onnx": 3.0},
        "b": {"port": 1.0, "forward": 1.0, "gradients": 0.5, "training": 5.0, "onnx": 2.0}}}]
    h = bench._harness_split(runs, {"imports_s": 8.0, "data_s": 1.0},
                             {"total_s": {"forward": 1.0, "gradients": 0.5, "training": 5.0, "all": 6.5}})
    split = h["split_s"]
    assert sum(split.values()) == pytest.approx(50.0)
    assert split["training (2 optimizers x 2 frameworks)"] == pytest.approx(15.0)
    assert split["checks (forward, gradients, float64)"] == pytest.approx(4.5)
    assert h["overhead"]["training phase / bare steps"] == pytest.approx(3.0)


def test_bench_tiny_smoke(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "compare.py", "bench", "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    assert (out / "bench.txt").read_text().strip()
    assert {"machine", "settings", "threads", "versions", "pairs", "bench_wall_s"} <= set(result)
    assert result["settings"]["ort_level"] == "ORT_ENABLE_ALL"
    assert list(result["pairs"]) == ["digits/mlp"]
    pair = result["pairs"]["digits/mlp"]
    assert set(pair["parts"]) == {"keras", "torch", "ort"}
    s = pair["summary"]
    assert s["errors"] == {}
    for key in ("keras_project", "keras_plain", "torch_project", "torch_plain"):
        assert s["train_samples_per_s"][key]["median"] > 0
        assert s["train_samples_per_s"][key]["n"] == 2
        assert s["latency_b1_ms"][key]["median"] > 0
        assert s["throughput_b256_samples_per_s"][key]["median"] > 0
    for key in ("ort_keras", "ort_torch"):
        assert s["latency_b1_ms"][key]["median"] > 0
        assert s["throughput_b256_samples_per_s"][key]["median"] > 0
    for part in ("keras", "torch", "ort"):
        assert s["peak_rss_mib"][part] > 0
        assert s["import_s"][part] > 0
    assert all(v is not None and v > 0 for v in s["ratios"].values() if v is not None)
    assert all(s["project_vs_plain"][k] > 0 for k in ("keras train", "torch train", "keras b1", "torch b1"))
    assert "harness" not in result  # --tiny skips the harness-cost part


def test_bench_modules_mirror_each_other():
    """keras_impl/bench.py and torch_impl/bench.py export the same names (read without importing either)."""
    import ast

    def exported(path):
        tree = ast.parse((ROOT / path).read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                return ast.literal_eval(node.value)
        raise AssertionError(f"{path} has no __all__")

    assert exported("keras_impl/bench.py") == exported("torch_impl/bench.py")
