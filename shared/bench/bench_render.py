"""`python compare.py bench` output: the rich tables and their number formats.

Split from shared/bench/orchestrate.py (which measures and summarises): this module only
reads the result dict that `shared.bench.orchestrate.summarize` and `main` build.
"""

from __future__ import annotations

from shared.bench.orchestrate import ORT_BENCH_LEVEL

__all__ = ["render"]


def _fmt(s, digits: int = 3, unit: str = "") -> str:
    """"median [min..max]" (rich markup escaped), or "-"."""
    from rich.markup import escape

    return escape(_fmt_plain(s, digits, unit))


def _fmt_plain(s, digits: int = 3, unit: str = "") -> str:
    if s is None:
        return "-"
    if isinstance(s, dict):
        m = s.get("median")
        if m is None:
            return "-"
        if "min" in s and s.get("n", 1) > 1:
            return f"{_num(m, digits)}{unit} [{_num(s['min'], digits)}..{_num(s['max'], digits)}]"
        return f"{_num(m, digits)}{unit}"
    return f"{_num(s, digits)}{unit}"


def _num(v: float, digits: int = 3) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.{digits}g}"


def _x(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _render_header(result: dict, console) -> None:
    """The machine, the threads and the settings."""
    s = result["settings"]
    m = result["machine"]
    console.print(f"[bold]compare.py bench[/bold]: {m['cpu']}, {m['usable_cores']} usable cores "
                  f"(cpu_count {m['cpu_count']}), {m['memory_gib']} GiB; load average at start "
                  f"{m['load_average_at_start']}")
    th = result.get("threads", {})
    console.print(f"threads: torch intra-op {th.get('torch_intra_op')}, inter-op {th.get('torch_inter_op')}; "
                  f"TF intra-op {th.get('tf_intra_op')}, inter-op {th.get('tf_inter_op')}; onnxruntime "
                  f"{th.get('ort')}")
    console.print(f"medians \\[min..max] over {s['repeats']} repeats; training: batch {s['batch_size']}, "
                  f"{s['steps']} timed steps after {s['warmup']} warm-up, SGD(momentum {s['momentum']}); "
                  f"inference: batch 1 ({s['latency_calls']} calls per repeat), batch {s['infer_batch']} "
                  f"({s['throughput_batches']} batches per repeat); onnxruntime {ORT_BENCH_LEVEL}")


def _render_training(result: dict, console) -> None:
    """Training throughput, project and plain paths."""
    from rich.table import Table

    pairs = result["pairs"]
    t = Table(title="Training throughput, samples/s (higher is better)")
    for col in ("pair", "Keras project\n(tf.function step)", "Keras plain\n(compile+fit)", "PyTorch project\n(eager)",
                "PyTorch plain\n(nn.Sequential loop)", "PyTorch/Keras\nproject", "PyTorch/Keras\nplain"):
        t.add_column(col, justify="right" if col != "pair" else "left")
    for name, p in pairs.items():
        sm = p["summary"]
        tr, r = sm["train_samples_per_s"], sm["ratios"]
        t.add_row(name, _fmt(tr["keras_project"]), _fmt(tr["keras_plain"]), _fmt(tr["torch_project"]),
                  _fmt(tr["torch_plain"]), _x(r["train torch/keras (project paths)"]), _x(r["train torch/keras (plain paths)"]))
    console.print(t)


def _render_compiled(result: dict, console) -> None:
    """XLA and torch.compile, when measured."""
    from rich.table import Table

    s, pairs = result["settings"], result["pairs"]
    if not s.get("compiled"):
        return
    t = Table(title="Compiled training (not the default paths): samples/s, and the first step (trace + compile)")
    for col in ("pair", "Keras XLA\n(jit_compile=True)", "XLA/default", "Keras first step s\ndefault / XLA",
                "torch.compile", "compile/eager", "torch first step s\neager / compiled"):
        t.add_column(col, justify="right" if col != "pair" else "left")
    for name, p in pairs.items():
        sm = p["summary"]
        tr, r, f = sm["train_samples_per_s"], sm["ratios"], sm["first_step_s"]
        t.add_row(name, _fmt(tr["keras_compiled"]), _x(r["train keras XLA/default"]),
                  f"{_num(f.get('keras_project'))} / {_num(f.get('keras_compiled'))}",
                  _fmt(tr["torch_compiled"]), _x(r["train torch.compile/eager"]),
                  f"{_num(f.get('torch_project'))} / {_num(f.get('torch_compiled'))}")
    console.print(t)


def _render_inference(result: dict, console) -> None:
    """Batch-1 latency and batch-256 throughput, frameworks and onnxruntime."""
    from rich.table import Table

    s, pairs = result["settings"], result["pairs"]
    for key, title, unit, better in (
        ("latency_b1_ms", "Inference latency at batch 1, ms per call (lower is better)", "", "b1 speed"),
        ("throughput_b256_samples_per_s", f"Inference throughput at batch {s['infer_batch']}, samples/s (higher is better)", "", "b256 throughput"),
    ):
        t = Table(title=title)
        for col in ("pair", "Keras", "PyTorch", "ORT(keras.onnx)", "ORT(torch.onnx)", "PyTorch/Keras",
                    "ORT/Keras", "ORT/PyTorch"):
            t.add_column(col, justify="right" if col != "pair" else "left")
        for name, p in pairs.items():
            sm = p["summary"]
            v, r = sm[key], sm["ratios"]
            t.add_row(name, _fmt(v["keras_project"]), _fmt(v["torch_project"]), _fmt(v["ort_keras"]),
                      _fmt(v["ort_torch"]), _x(r[f"{better} torch/keras"]), _x(r[f"{better} ort/native keras"]),
                      _x(r[f"{better} ort/native torch"]))
        console.print(t)
    console.print("  (ratios are speeds: >1 means the first named is faster; latency ratios are inverted latencies)")


def _render_project_vs_plain(result: dict, console) -> None:
    """Each twin against the same model written plainly."""
    from rich.table import Table

    s, pairs = result["settings"], result["pairs"]
    t = Table(title="Project vs plain (speed ratio project/plain; target >= 0.90)")
    for col in ("pair", "Keras train", "Keras b1", f"Keras b{s['infer_batch']}", "PyTorch train", "PyTorch b1",
                f"PyTorch b{s['infer_batch']}"):
        t.add_column(col, justify="right" if col != "pair" else "left")
    for name, p in pairs.items():
        v = p["summary"]["project_vs_plain"]

        def cell(k):
            r = v.get(k)
            if r is None:
                return "-"
            return f"[red]{r:.2f}[/red]" if r < 0.9 else f"{r:.2f}"

        t.add_row(name, cell("keras train"), cell("keras b1"), cell("keras b256"), cell("torch train"),
                  cell("torch b1"), cell("torch b256"))
    console.print(t)


def _render_parts(result: dict, console) -> None:
    """Per part: import time, peak RSS, bare passes, export."""
    from rich.table import Table

    pairs = result["pairs"]
    t = Table(title="Per part: import time, peak RSS, bare passes, export")
    for col in ("pair", "import s\nKeras / torch / ORT", "peak RSS MiB\nKeras / torch / ORT",
                "fwd valid ms\nKeras / torch", "fwd+bwd ms\nKeras / torch", "build model ms\nKeras / torch",
                "ONNX export s\nKeras / torch"):
        t.add_column(col, justify="right" if col != "pair" else "left")
    for name, p in pairs.items():
        sm = p["summary"]
        imp, rss, b, ex, bm = sm["import_s"], sm["peak_rss_mib"], sm["bare_s"], sm["export_s"], sm["build_model_s"]
        ms = lambda st: None if not st else st["median"] * 1e3  # noqa: E731
        t.add_row(name, " / ".join(_num(imp.get(n)) for n in ("keras", "torch", "ort")),
                  " / ".join(_num(rss.get(n)) for n in ("keras", "torch", "ort")),
                  f"{_num(ms(b.get('keras forward_valid_s')))} / {_num(ms(b.get('torch forward_valid_s')))}",
                  f"{_num(ms(b.get('keras backward_s')))} / {_num(ms(b.get('torch backward_s')))}",
                  f"{_num(ms(bm.get('keras')))} / {_num(ms(bm.get('torch')))}",
                  f"{_num(ex['keras']['again'])} / {_num(ex['torch']['again'])}")
    console.print(t)


def _render_harness(result: dict, console) -> None:
    """The harness' own cost."""
    from rich.table import Table

    h = result.get("harness")
    if not h:
        return
    if h.get("split_s"):
        env = " ".join(f"{k}={v}" for k, v in (h["runs"][0].get("env") or {}).items()) or "default threads"
        t = Table(title=f"Harness cost: default `python compare.py` ({env}), wall {_fmt(h['wall_s'])} s "
                        f"(target < 60 s on this machine: {'met' if h['wall_s']['median'] < 60 else 'NOT met'})")
        t.add_column("part")
        t.add_column("seconds", justify="right")
        t.add_column("share", justify="right")
        for k, v in h["split_s"].items():
            t.add_row(k, _num(v), "-" if v is None else f"{100 * v / h['wall_s']['median']:.0f}%")
        console.print(t)
        if h.get("overhead"):
            b = h["bare_s"]
            console.print(f"bare compute the run compares: {_num(b['all'])} s (forward {_num(b['forward'])}, "
                          f"gradients {_num(b['gradients'])}, training steps {_num(b['training'])}); overhead: "
                          + ", ".join(f"{k} {_x(v)}" for k, v in h["overhead"].items()))
    else:
        console.print(f"[red]harness run failed[/red]: {[r.get('error') for r in h['runs']]}\n{h['runs'][0].get('tail', '')[-600:]}")


def render(result: dict, console) -> None:
    """Print the bench as rich tables on `console`."""
    for part in (_render_header, _render_training, _render_compiled, _render_inference, _render_project_vs_plain,
                 _render_parts, _render_harness):
        part(result, console)
    for name, p in result["pairs"].items():
        for part, err in p["summary"]["errors"].items():
            console.print(f"[red]{name} {part} failed[/red]: {err}")
