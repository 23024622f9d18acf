"""Statistics of `python compare.py bench`: medians and spread over repeats,
the ratios between parts, and the per-pair summary.

Split from shared/bench/orchestrate.py (which runs the parts); pure functions of the
parts' JSON results, so tests feed them synthetic numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stats", "ratio", "summarize", "bare_estimate"]


def stats(values) -> dict | None:
    """Median and spread of the positive finite values: {median, min, max, q1, q3, n}; None if none."""
    v = np.asarray([x for x in (values or []) if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "min": float(v.min()), "max": float(v.max()), "q1": float(q1), "q3": float(q3),
            "n": int(v.size)}


def _median(x) -> float | None:
    if x is None:
        return None
    if isinstance(x, dict):
        return x.get("median")
    if isinstance(x, (list, tuple, np.ndarray)):
        s = stats(x)
        return s["median"] if s else None
    return float(x)


def ratio(a, b) -> float | None:
    """median(a) / median(b); a and b are stats dicts, lists of values or numbers. None when undefined."""
    ma, mb = _median(a), _median(b)
    if ma is None or mb is None or mb == 0:
        return None
    return ma / mb


def _ratios(train: dict, lat: dict, thr: dict, fw: dict) -> tuple:
    """(ratios between paths and frameworks, project/plain per framework), as speeds."""
    lat_speed = {n: None if s is None else 1e3 / s["median"] for n, s in lat.items()}

    def speed_ratio(a, b):  # latency as speed: > 1 means a is faster
        return None if lat_speed.get(a) is None or lat_speed.get(b) is None else lat_speed[a] / lat_speed[b]

    ratios = {
        "train torch/keras (project paths)": ratio(train["torch_project"], train["keras_project"]),
        "train torch/keras (plain paths)": ratio(train["torch_plain"], train["keras_plain"]),
        "train keras XLA/default": ratio(train["keras_compiled"], train["keras_project"]),
        "train torch.compile/eager": ratio(train["torch_compiled"], train["torch_project"]),
        "b1 speed torch/keras": speed_ratio("torch_project", "keras_project"),
        "b256 throughput torch/keras": ratio(thr["torch_project"], thr["keras_project"]),
        "b1 speed ort/native keras": speed_ratio("ort_keras", "keras_project"),
        "b1 speed ort/native torch": speed_ratio("ort_torch", "torch_project"),
        "b256 throughput ort/native keras": ratio(thr["ort_keras"], thr["keras_project"]),
        "b256 throughput ort/native torch": ratio(thr["ort_torch"], thr["torch_project"]),
    }
    # Project / plain, as speeds: 1.00 = the same; below 0.90 misses the 10% target.
    pvp = {}
    for name in fw:
        pvp[f"{name} train"] = ratio(train[f"{name}_project"], train[f"{name}_plain"])
        pvp[f"{name} b1"] = speed_ratio(f"{name}_project", f"{name}_plain")
        pvp[f"{name} b256"] = ratio(thr[f"{name}_project"], thr[f"{name}_plain"])
    return ratios, pvp


def summarize(parts: dict, settings: dict) -> dict:
    """Medians, spread and ratios of one pair from its three parts' raw results.

    Args:
        parts: {"keras": ..., "torch": ..., "ort": ...} as the parts return them
            (a part that failed is {"error": "..."}).
        settings: the run's settings (harness_steps / harness_optimizers for the
            bare-pass estimate).

    Returns:
        {"train_samples_per_s", "latency_b1_ms", "throughput_b256_samples_per_s",
        "ratios", "project_vs_plain", "peak_rss_mib", "import_s", "first_step_s",
        "bare_s", "export_s", "build_model_s"} with stats dicts (median, min, max,
        q1, q3, n) where there are repeats.
    """
    k, t, o = (parts.get(n) or {} for n in ("keras", "torch", "ort"))
    fw = {"keras": k, "torch": t}

    def g(d, *path):
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return None
            d = d[p]
        return d

    train, lat, thr, first = {}, {}, {}, {}
    for name, d in fw.items():
        for kind in ("project", "plain", "compiled"):
            train[f"{name}_{kind}"] = stats(g(d, "train", kind, "samples_per_s"))
            first[f"{name}_{kind}"] = g(d, "train", kind, "first_step_s")
        for kind in ("project", "plain"):
            lat[f"{name}_{kind}"] = stats([s * 1e3 for s in (g(d, "infer", kind, "latency_b1_s") or [])])
            thr[f"{name}_{kind}"] = stats(g(d, "infer", kind, "throughput_samples_per_s"))
    for side in ("keras", "torch"):
        lat[f"ort_{side}"] = stats([s * 1e3 for s in (g(o, side, "latency_b1_s") or [])])
        thr[f"ort_{side}"] = stats(g(o, side, "throughput_samples_per_s"))
    ratios, pvp = _ratios(train, lat, thr, fw)

    bare = {}
    for name, d in fw.items():
        for key in ("forward_valid_s", "forward_valid_f64_s", "backward_s"):
            bare[f"{name} {key}"] = stats(g(d, "bare", key))
        st = train[f"{name}_project"]
        bs = g(d, "batch_size")
        bare[f"{name} train_step_s"] = None if not st or not bs else {"median": bs / st["median"]}
    return {
        "train_samples_per_s": train,
        "first_step_s": first,
        "latency_b1_ms": lat,
        "throughput_b256_samples_per_s": thr,
        "ratios": ratios,
        "project_vs_plain": pvp,
        "peak_rss_mib": {n: g(parts.get(n), "peak_rss_mib") for n in ("keras", "torch", "ort")},
        "rss_after_import_mib": {n: g(parts.get(n), "rss_after_import_mib") for n in ("keras", "torch", "ort")},
        "import_s": {n: g(parts.get(n), "import_s") for n in ("keras", "torch", "ort")},
        "bare_s": bare,
        "export_s": {n: {"first": g(d, "export", "first_s"), "again": g(d, "export", "again_s")} for n, d in fw.items()},
        "build_model_s": {n: stats(g(d, "build_model_s")) for n, d in fw.items()},
        "errors": {n: p["error"] for n, p in parts.items() if isinstance(p, dict) and p.get("error")},
    }


def bare_estimate(pairs: dict, settings: dict) -> dict:
    """The bare compute one default `python compare.py` run needs, from the per-pair bare passes.

    Per pair and framework: the float32 forward on the validation split twice
    (the forward checks and the ONNX four-way), the float64 forward once, one
    forward+backward (the gradient check) and harness_optimizers x
    harness_steps training steps (priced at the SGD step; Adam's is a little
    dearer).
    """
    n_steps = int(settings["harness_steps"]) * int(settings["harness_optimizers"])
    per = {}
    for pair, s in pairs.items():
        b = s["summary"]["bare_s"]
        tot = {}
        for fw in ("keras", "torch"):
            m = lambda key: (b.get(f"{fw} {key}") or {}).get("median")  # noqa: E731
            parts = [m("forward_valid_s"), m("forward_valid_s"), m("forward_valid_f64_s"), m("backward_s")]
            step = m("train_step_s")
            if None in parts or step is None:
                tot[fw] = None
                continue
            tot[fw] = {"forward": 2 * parts[0] + parts[2], "gradients": parts[3], "training": n_steps * step}
        per[pair] = tot
    total = {"forward": 0.0, "gradients": 0.0, "training": 0.0}
    for tot in per.values():
        for fw_tot in tot.values():
            for k, v in (fw_tot or {}).items():
                total[k] += v
    total["all"] = sum(total.values())
    return {"per_pair": per, "total_s": total,
            "formula": f"per pair and framework: 2 x forward(valid, f32) + forward(valid, f64) + forward+backward(batch) "
                       f"+ {n_steps} x train step (SGD, steady state)"}


# ==========================================================================
# Running the parts
# ==========================================================================
