#!/usr/bin/env python3
"""keras-torch-parity: prove that a Keras model and its PyTorch twin agree.

Runs the same model in Keras (TensorFlow backend) and PyTorch from the same
portable weights on the same inputs, and compares losses, probabilities,
predictions, metrics, gradients, training trajectories (SGD with momentum and
Adam), float64 forward passes and both ONNX exports. Every check states what
was compared, the largest difference, where it occurred and the tolerance.

Commands:
  python compare.py [options]     every check on the built-in data, or on --data
  python compare.py data ...      show what a loader reads from a dataset
  python compare.py export ...    write both ONNX exports and the portable weights
  python compare.py bench ...     speed and memory of both implementations
  python compare.py port MODEL --out DIR   any Keras model -> readable PyTorch model.py + weights, proven
  python compare.py port TORCH_MODEL --input-shape C,H,W --out DIR   a PyTorch module -> model.keras + model_keras.py, proven
  python compare.py verify KERAS_MODEL TORCH_MODEL   check a hand-written PyTorch port of a Keras model

Exit codes: 0 every check passed; 1 a parity check failed (only then); 2 bad
usage, bad input, or an error raised by your own code (your model function or
class, its forward/call, a --plugin, a .keras file's custom objects): one line
on stderr naming your file:line, the function and the exception, no traceback
(the run command's --verbose adds it); 3 an internal error (a bug in this
tool, with its traceback); 4 ran out of memory (try a smaller --batch-size).

This is the only module (with the tests) that brings TensorFlow and PyTorch
together, and only through numpy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from shared import argtypes, cli
from shared.cases import Case, builtin_cases, data_record, user_case
from shared.checks import ParityFailure, assert_checks
from shared.config import MODELS, TASKS
from shared.engine import DEFAULT_BATCH_SIZE, DEFAULT_STEPS, Options, PairResult, check_pair  # noqa: F401  (public defaults)
from shared.errors import UsageError
from shared.tolerances import Tolerance, for_check
from shared.user_code import EXIT_INTERNAL, EXIT_OK, EXIT_OOM, EXIT_PARITY, EXIT_USAGE  # noqa: F401  (the exit codes, documented there)

__all__ = ["main", "compare_models", "assert_parity", "run_checks", "check_case", "backends", "Options", "Case",
           "keras_to_torch", "port_checks", "verify_models",
           "torch_to_keras", "reverse_port_checks"]

# Threads per framework. These models are tiny: with more than one thread the
# synchronisation costs more than the work (torch CNN training measured 5-7x
# slower with 2 threads than 1 on this 2-core machine under load), and a fixed
# count keeps the reduction order, hence the numbers, independent of the
# machine's core count.
DEFAULT_THREADS = 1


# --------------------------------------------------------------------------
# Frameworks, imported lazily so that --help and `data` stay instant.
# --------------------------------------------------------------------------
class _Frameworks:
    """Both frameworks and their backends, imported once."""

    def __init__(self, threads: int = DEFAULT_THREADS, verbose: bool = False):
        import torch  # torch before TensorFlow, as Keras' own test suite does

        import keras_impl  # sets KERAS_BACKEND=tensorflow

        keras_impl.quiet_tensorflow(verbose)  # imports TF with its C++ start-up lines hidden
        import keras
        import tensorflow as tf

        from keras_impl import backend as kb
        from torch_impl import backend as tb

        self.torch, self.tf, self.keras, self.kb, self.tb = torch, tf, keras, kb, tb
        self.set_threads(threads)

    def versions(self) -> dict:
        import onnx
        import onnxruntime
        import onnxscript
        import tf2onnx

        return {"tensorflow": self.tf.__version__, "keras": self.keras.__version__, "torch": self.torch.__version__,
                "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "tf2onnx": tf2onnx.__version__,
                "onnxscript": onnxscript.__version__, "numpy": np.__version__}

    def set_threads(self, n: int) -> None:
        """Pin both frameworks' intra-op threads (TF: only before its first op)."""
        self.torch.set_num_threads(n)
        try:
            self.tf.config.threading.set_intra_op_parallelism_threads(n)
            self.tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TF already initialised in this process: keep its setting
            pass

    def threads(self) -> dict:
        cfg = self.tf.config.threading
        return {"torch_intra_op": self.torch.get_num_threads(),
                "tf_intra_op": cfg.get_intra_op_parallelism_threads() or "default (all cores)",
                "tf_inter_op": cfg.get_inter_op_parallelism_threads() or "default (all cores)"}


_FW = None


def frameworks(threads: int = DEFAULT_THREADS, verbose: bool = False) -> _Frameworks:
    global _FW
    if _FW is None:
        _FW = _Frameworks(threads, verbose)
    else:
        _FW.set_threads(threads)
    return _FW


# --------------------------------------------------------------------------
# Wiring: the built-in twins as backends, the engine, the report
# --------------------------------------------------------------------------
def backends(config, seed: int = 0, fault: str | None = None) -> tuple:
    """The built-in Keras twin (seeded weights) and its PyTorch twin (with `fault`,
    "NAME[=SIZE]" of shared/faults.py, planted: in the torch model, optimizer or
    loss, or in the data path that feeds it)."""
    from shared.faults import DataFaultBackend, parse_plant

    spec, size = parse_plant(fault, config.model, config.task)
    fw = frameworks()
    fw.keras.utils.set_random_seed(seed)
    fw.torch.manual_seed(seed)
    a = fw.kb.from_config(config, seed=seed)
    b = fw.tb.from_config(config, fault=spec if spec is not None and spec.kind != "data" else None, size=size)
    if spec is not None and spec.kind == "data":
        b = DataFaultBackend(b, spec, size, num_classes=config.num_outputs)
    return a, b


def check_case(case: Case, opts: Options, ui, workdir: Path) -> PairResult:
    """Every check for one case: its two backends through shared.engine.check_pair."""
    import dataclasses

    from shared.engine import PairData
    from shared.faults import parse_plant
    from shared.portable import file_store

    cfg = case.config
    t0 = time.perf_counter()
    a, b = backends(cfg, opts.seed, opts.fault)
    spec, _ = parse_plant(opts.fault)
    if spec is not None and spec.train:
        opts = dataclasses.replace(opts, train_overrides=dict(spec.train))
    built = time.perf_counter() - t0
    fw = frameworks()
    store = file_store(workdir / "weights", case.slug, cfg, case.dataset.classes,
                       {"keras": fw.keras.__version__, "torch": fw.torch.__version__})
    res = check_pair(a, b, PairData.from_dataset(case.dataset), opts, ui, name=case.name, model=cfg.model,
                     batchnorm=cfg.model == "cnn", workdir=workdir, store=store)
    res.timings["port"] += built  # "port" covers building both models, as before
    return res


def run_checks(cases: list, opts: Options, out: Path | None) -> dict:
    """Run every case; write the report atomically into `out` (if given)."""
    from shared import report as rpt
    from shared.atomic import optional_atomic_dir
    from shared.console import ConsoleUI

    fw = frameworks(opts.threads, opts.verbose)
    all_checks, data, curves, sweeps, diffs, onnx_info, timings = [], [], {}, {}, {}, {}, {}
    ui = ConsoleUI(opts.quiet)
    with optional_atomic_dir(out) as work, ui:
        for case in cases:
            ui.log(f"[bold]{case.name}[/bold] ({case.config.task}, {case.config.model}, {case.config.dtype}): "
                   f"{len(case.dataset.x_train)} train / {len(case.dataset.x_valid)} valid items")
            r = check_case(case, opts, ui, work)
            all_checks += r.checks
            curves.update(r.curves)
            if r.sweep:
                sweeps[case.name] = r.sweep
            if r.logit_diffs is not None:
                diffs[case.name] = r.logit_diffs
            onnx_info[case.name], timings[case.name] = r.onnx, r.timings
            data.append(data_record(case))
        plots = _write_plots(work, curves, sweeps, diffs, opts)
        env = rpt.environment(fw.versions(), seed=opts.seed, dtype=opts.dtype, threads=fw.threads())
        report = rpt.build_report(all_checks, environment=env, data=data,
                                  artifacts={"plots": plots, "onnx": onnx_info, "timings_s": timings,
                                             "options": {"steps": opts.steps, "optimizers": list(opts.optimizers),
                                                         "batch_size": opts.batch_size, "fault": opts.fault}})
        if work is not None:
            from shared.atomic import atomic_write_text

            atomic_write_text(work / "report.json", rpt.dumps(report))
            atomic_write_text(work / "report.md", rpt.markdown(report, all_checks))
    if opts.verbose:
        rpt.console_table(all_checks, ui.out)
    else:  # one line per pair, then every failure in full (the table: --verbose, report.md)
        for line in rpt.pair_lines(all_checks):
            ui.out.print(line, markup=False, highlight=False, soft_wrap=True)
    ui.out.print(rpt.summary_line(report) + (f"; report in {out}" if out else ""))
    report["_checks"] = all_checks
    return report


def _write_plots(work: Path | None, curves, sweeps, diffs, opts) -> list:
    if work is None:
        return []
    from shared import plots

    return plots.write_plots(work, curves, sweeps, diffs, for_check("forward", opts.dtype, opts.tolerance).allowed(1.0))


# --------------------------------------------------------------------------
# The API for users' own test suites
# --------------------------------------------------------------------------
def compare_models(keras_model, torch_model, inputs, *, atol: float = 0.0, rtol: float | None = None,
                   channels_last_input: bool = True, channels_last_output: bool = True, name: str = "outputs") -> list:
    """Run both models on the same numpy inputs and compare every output.

    Args:
        keras_model: a Keras model (or any callable returning tensors).
        torch_model: a torch.nn.Module; put in eval mode here.
        inputs: a numpy array in Keras layout (NHWC for images); a 4-D input is
            permuted to NCHW for torch when channels_last_input is True.
        atol, rtol: allowed = atol + rtol * max(1, max|torch output|); rtol
            defaults to 16 float32 epsilons (float32) or 1e-12 (float64).
        channels_last_output: 4-D Keras outputs are permuted to NCHW before
            comparing with torch's.
        name: prefix of each output's name in the checks.

    Returns:
        One Check per output leaf (same records as report.json's "checks").
    """
    fw = frameworks()
    from shared.layout import nhwc_to_nchw
    from shared.outputs import compare_outputs

    x = np.asarray(inputs)
    dtype = "float64" if x.dtype == np.float64 else "float32"
    tol = Tolerance(rel=rtol, abs=atol) if rtol is not None else Tolerance(rel=for_check("forward", dtype).rel, abs=atol)
    k_out = keras_model(x, training=False) if hasattr(keras_model, "layers") else keras_model(x)
    torch_model.eval()
    with fw.torch.no_grad():
        t_out = torch_model(fw.torch.as_tensor(nhwc_to_nchw(x) if channels_last_input else x))
    return compare_outputs(k_out, t_out, tol, dtype=dtype, name=name, a_channels_last=channels_last_output)


_VERIFY_KW = ("weights", "gradients", "train_steps", "mapping", "targets")


def assert_parity(keras_model, torch_model, inputs, **kw) -> list:
    """compare_models, then raise ParityFailure (an AssertionError) naming every
    output that differs, its largest difference, where, and the tolerance.

    With any of weights="keras"|"as-is", gradients=, train_steps=, mapping=,
    targets=, it runs `verify_models` instead (a hand-written port: weights
    copied by structure, pair-by-pair localisation, gradients, training), and
    the failure also names the first differing layer and the likely trap.
    """
    if not any(k in kw for k in _VERIFY_KW):
        return assert_checks(compare_models(keras_model, torch_model, inputs, **kw))
    res = verify_models(keras_model, torch_model, inputs, **kw)
    if not res.passed:
        from shared.verify_cli import format_result

        raise ParityFailure("parity failed:\n" + format_result(res))
    return res.checks


# --------------------------------------------------------------------------
# Port: any Keras model -> a readable PyTorch twin (through shared/graph.py)
# --------------------------------------------------------------------------
def keras_to_torch(keras_model):
    """(torch module in eval mode, its model.py source) for a functional or
    Sequential Keras model; the module is built by executing that source."""
    frameworks()
    from keras_impl.read import read_graph
    from torch_impl.write import build_module

    return build_module(read_graph(keras_model))


def port_checks(keras_model, inputs=None, **kw):
    """Port `keras_model` and prove the port (shared/port.py's checks); returns
    shared.port.PortResult (.checks, .module, .source, .graph, .info).

    Args:
        inputs: numpy arrays in PyTorch's layout (default: seeded random ones).
        kw: seed, batch, dtypes, train_config, onnx_dir, opset (shared.port.port_checks).
    """
    frameworks()
    from keras_impl.side import KerasSide
    from shared.port import port_checks as run
    from torch_impl.side import TorchSide

    return run(KerasSide(keras_model), TorchSide.from_graph, inputs, **kw)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
def cmd_run(argv) -> int:
    args = cli.run_parser(__doc__, DEFAULT_THREADS).parse_args(argv)
    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    if args.format and not args.data:
        raise UsageError("--format needs --data PATH")
    tolerance = None
    if args.atol is not None or args.rtol is not None:
        tolerance = Tolerance(rel=args.rtol or 0.0, abs=args.atol or 0.0)
    opts = Options(
        steps=args.steps, optimizers=("sgd", "adam") if args.optimizer == "both" else (args.optimizer,),
        seed=args.seed, dtype=args.dtype, batch_size=args.batch_size, tolerance=tolerance,
        onnx=not args.no_onnx, fault=args.plant, quiet=args.quiet, threads=args.threads, verbose=args.verbose,
    )
    if args.steps == 0:
        opts.optimizers = ()
    cases = [user_case(args)] if args.data else builtin_cases(args.task, args.model, args.dtype, args.seed)
    report = run_checks(cases, opts, Path(args.out))
    if args.quiet:
        from shared.report import summary_line

        print(summary_line(report))
    return EXIT_OK if report["passed"] else EXIT_PARITY


def cmd_export(argv) -> int:
    p = cli.Parser(prog="compare.py export", description="Write the Keras and PyTorch ONNX exports of a model and its portable weights, atomically.")
    p.add_argument("--task", choices=TASKS, help="pick the built-in pair of this task")
    p.add_argument("--model", choices=MODELS, help="pick the built-in pair of this model")
    p.add_argument("--weights", metavar="FILE.safetensors", help="export these portable weights (their sidecar gives the model) instead of a fresh built-in model")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the pinned one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    args = p.parse_args(argv)
    from shared import onnx_check
    from shared.atomic import atomic_dir, check_writable_dir
    from shared.portable import load_portable, save_portable

    opset = args.opset if args.opset is not None else onnx_check.ONNX_OPSET
    onnx_check.validate_opset(opset)
    out = Path(args.out)
    check_writable_dir(out)
    if args.weights:
        tensors, sidecar, cfg = load_portable(args.weights)
        classes = sidecar.get("classes", [])
    else:
        from shared.registry import PAIRS

        pairs = [q for q in PAIRS if (not args.task or q.task == args.task) and (not args.model or q.model == args.model)]
        if not pairs:
            raise UsageError(f"no built-in pair has task={args.task!r} and model={args.model!r}")
        cfg, classes, tensors = pairs[0].config(), [], None
    sides = backends(cfg, args.seed)
    tensors = sides[0].get_weights() if tensors is None else tensors
    for side in sides:
        side.set_weights(tensors)
    with atomic_dir(out) as work:
        save_portable(Path(work) / "weights.safetensors", sides[1].get_weights(), cfg, classes=classes,
                      framework="torch", framework_version=frameworks().torch.__version__)
        how = {s.name: s.export_onnx(Path(work) / f"{s.name}.onnx", opset)[1] for s in sides}
    for name, info in how.items():
        info.update(onnx_check.check_model(out / f"{name}.onnx"))
        print(f"{out / name}.onnx: {info['exporter']} exporter, opset {info['opset']}, inputs {info['inputs']}, "
              f"outputs {info['outputs']}, ops {info['ops']}")
    print(f"{out / 'weights.safetensors'} (+ weights.json): {cfg.model}/{cfg.task}")
    return EXIT_OK


def cmd_port(argv) -> int:
    from shared import port as sp

    p = sp.port_parser(cli.Parser, DEFAULT_THREADS)
    p.add_argument("--input-shape", metavar="C,H,W", type=argtypes.input_shape,
                   help="PyTorch to Keras: MODEL is path/file.py:NAME or package.module:NAME (an nn.Module class or a "
                        "function returning one), its input shape without the batch; several named inputs (keyword "
                        "arguments): NAME=SHAPE[:DTYPE[:HIGH]],... e.g. input_ids=16:int64,attention_mask=16:int64:2")
    p.add_argument("--torch-weights", metavar="FILE", help="PyTorch to Keras: a state_dict (.pt/.pth or .safetensors)")
    args = p.parse_args(argv)
    from shared.atomic import atomic_dir, check_writable_dir
    from shared.console import ConsoleUI

    out = Path(args.out)
    check_writable_dir(out)
    if args.input_shape is not None or args.torch_weights is not None:
        return cmd_port_reverse(args, out)
    fw = frameworks(args.threads)
    from keras_impl import port as kp
    from shared import report as rpt
    from keras_impl.side import KerasSide
    from torch_impl.side import TorchSide

    for plugin in args.plugin:
        kp.import_plugin(plugin)
    keras_side = KerasSide(kp.load_model(args.model, unsafe=args.unsafe))
    xs = sp.load_inputs(args.data, keras_side.graph, args.batch_size, args.seed)
    train_config, optimizer_source = keras_side.train_config(args.optimizer, args.steps)
    ui = ConsoleUI(args.quiet)
    with atomic_dir(out) as work, ui:
        work = Path(work)
        res = sp.port_checks(keras_side, TorchSide.from_graph, xs, seed=args.seed, train_config=train_config,
                             onnx_dir=None if args.no_onnx else work, onnx_dir_shown_as=out)
        env = rpt.environment(fw.versions(), seed=args.seed, dtype="float32 and float64", threads=fw.threads())
        source = f"--data {args.data}" if args.data else f"seeded random, batch {len(xs[0])}"
        report = sp.write_port_dir(work, res, environment=env, model_spec=args.model, input_source=source,
                                   train_info=sp.train_info(train_config, optimizer_source), onnx=not args.no_onnx)
    sp.print_summary(report, res, ui.out, out, quiet=args.quiet)
    return EXIT_OK if report["passed"] else EXIT_PARITY


# --------------------------------------------------------------------------
# Reverse port: a PyTorch module -> a Keras functional model (issue 14)
# --------------------------------------------------------------------------
def cmd_port_reverse(args, out: Path) -> int:
    """compare.py port TORCH_MODEL --input-shape C,H,W --out DIR: PyTorch -> Keras
    (proof in shared/port_reverse.py, the two sides keras_impl/ and torch_impl/side.py)."""
    if args.input_shape is None:
        raise UsageError("PyTorch to Keras needs --input-shape C,H,W (the input without the batch)")
    fw = frameworks(args.threads)
    from keras_impl.side import KerasSide
    from shared import port_reverse as pr
    from shared import report as rpt
    from shared.atomic import atomic_dir, atomic_write_text
    from shared.console import ConsoleUI
    from torch_impl.port import load_module
    from torch_impl.side import TorchSide

    module = load_module(args.model, args.torch_weights)
    from shared import port as sp

    xs = sp.load_inputs(args.data, TorchSide.read(module, args.input_shape).graph, args.batch_size, args.seed)
    res = pr.reverse_port_checks(KerasSide, TorchSide, module, args.input_shape, xs, seed=args.seed)
    ui = ConsoleUI(args.quiet)
    with atomic_dir(out) as work, ui:
        work = Path(work)
        atomic_write_text(work / "model_keras.py", res.source)
        mem = res.info["memory"]
        files = res.keras_side.save(work)
        mem.mark("save")
        res.checks.append(pr.plain_load_check(res, xs, work / "model.keras", work))
        mem.mark("fresh-process reload")
        if not args.no_onnx:  # an exporter's failure is an information row, never the verdict
            res.checks += pr.onnx_checks(res, xs[0], work, shown_as=out)
            files.update({"onnx": sp.written_onnx(work)})
            mem.mark("onnx")
        env = rpt.environment(fw.versions(), seed=args.seed, dtype="float32", threads=fw.threads())
        data = [{"case": f"port {res.graph.name} (PyTorch -> Keras)", "model": args.model,
                 "inputs": "--data " + args.data if args.data else f"seeded random, batch {len(xs[0])}", **res.info["layouts"]}]
        report = rpt.build_report(res.checks, environment=env, data=data,
                                  artifacts={**files, "model_keras.py": "model_keras.py", "loss": res.info["loss"],
                                             "timings_s": res.info["timings_s"], "graph_nodes": res.info["nodes"],
                                             "memory_mib": mem.stages})
        atomic_write_text(work / "report.json", rpt.dumps(report))
        atomic_write_text(work / "report.md", rpt.markdown(report, res.checks))
    if args.quiet:
        print(rpt.summary_line(report))
    else:
        rpt.console_table(res.checks, ui.out, only_failures=len(res.checks) > 60)
        from shared.onnx_check import export_notes

        for line in export_notes(res.checks):
            ui.out.print(line, markup=False, highlight=False, soft_wrap=True)
        ui.out.print(rpt.summary_line(report) + f"; model.keras, model_keras.py, weights and report in {out}")
    return EXIT_OK if report["passed"] else EXIT_PARITY


def torch_to_keras(torch_model, input_shape, dtype: str = "float32") -> tuple:
    """(Keras model, its model_keras.py source, the graph) for an nn.Module and
    an input shape without the batch (C, H, W); the model is built by executing
    that source and takes Keras' layout (N, H, W, C)."""
    frameworks()
    from keras_impl.side import KerasSide
    from shared.port_reverse import torch_to_keras as convert
    from torch_impl.side import TorchSide

    ks, ts = convert(KerasSide, TorchSide, torch_model, input_shape, dtype)
    return ks.model, ks.source, ts.graph


def reverse_port_checks(torch_model, input_shape, inputs=None, **kw):
    """shared.port_reverse.reverse_port_checks with this project's two sides."""
    frameworks()
    from keras_impl.side import KerasSide
    from shared.port_reverse import reverse_port_checks as check
    from torch_impl.side import TorchSide

    return check(KerasSide, TorchSide, torch_model, input_shape, inputs, **kw)


# --------------------------------------------------------------------------
# Verify: a hand-written PyTorch port against its Keras model (issue 12)
# --------------------------------------------------------------------------
def verify_models(keras_model, torch_model, inputs=None, *, weights: str = "keras", gradients: bool = True,
                  train_steps: int = 3, mapping=None, targets=None, seed: int = 0, batch: int | None = None):
    """Every verify check of `torch_model` (an nn.Module) against `keras_model`.

    Args:
        inputs: numpy inputs in Keras' layout (NHWC for images); None: seeded random.
        batch: rows per batch (default: all given inputs, or 4 random ones); with
            inputs, training steps take consecutive batches of them.
        weights: "keras" copies the Keras weights into torch_model by structure
            (it is modified); "as-is" keeps both models' own weights.
        mapping: a shared.verify.Mapping (or its JSON text) instead of matching.

    Returns:
        shared.verify_run.VerifyResult (checks, mapping, localisation, diagnoses, notes).
    """
    frameworks()
    from keras_impl.side import KerasSide
    from shared.verify import Mapping
    from torch_impl.side import TorchSide
    from shared.verify_run import VerifyOptions, run_verify

    if weights not in ("keras", "as-is"):
        raise UsageError(f"weights must be 'keras' or 'as-is', got {weights!r}")
    ks = KerasSide.for_verify(keras_model)
    x = None
    if inputs is not None and (isinstance(inputs, dict) or len(ks.input_names) > 1):  # a dict (Keras names or torch aliases) or a list
        from shared.verify_io import as_named_inputs

        x = {n: _neutral_input(ks, n, a) for n, a in as_named_inputs(inputs, ks.input_names).items()}
    elif inputs is not None:
        perm = ks.graph.tensors[ks.graph.inputs[0]].keras_perm
        want = tuple(keras_model.inputs[0].shape[1:])
        x = np.asarray(inputs)
        if x.shape[1:] != want:
            raise UsageError(f"inputs have shape {x.shape[1:]} per sample, the Keras model takes {want} (Keras' layout)")
        x = x if x.dtype.kind in "iu" else x.astype(np.float64)
        x = x if perm is None else np.ascontiguousarray(np.transpose(x, perm))
    if isinstance(mapping, str):
        mapping = Mapping.from_json(mapping)
    batch = batch or (len(x) if x is not None else 4)  # given inputs: all of them in one batch by default
    opts = VerifyOptions(weights=weights, mapping=mapping, batch=batch, seed=seed,
                         steps=train_steps, gradients=gradients, x=x, y=targets)
    return run_verify(ks, TorchSide(torch_model), opts)


def _neutral_input(ks, name: str, a) -> np.ndarray:
    """One named input in Keras' layout -> the neutral layout (floats as float64)."""
    a = np.asarray(a)
    a = a if a.dtype.kind in "iub" else a.astype(np.float64)
    perm = ks.graph.tensors[name].keras_perm
    return a if perm is None else np.ascontiguousarray(np.transpose(a, perm))


def cmd_verify(argv) -> int:
    from shared import verify_cli

    p = cli.Parser(prog="compare.py verify", description=verify_cli.DESCRIPTION)
    verify_cli.add_arguments(p, argtypes.positive_int, DEFAULT_THREADS)
    args = p.parse_args(argv)
    verify_cli.check_arguments(args)
    frameworks(args.threads)
    from torch_impl.verify import load_model as load_torch
    from torch_impl.weights import load_state_file
    from keras_impl.verify import load_model as load_keras
    from keras_impl import port as kp

    for plugin in args.plugin:  # converters for the Keras reader, as `port --plugin`
        kp.import_plugin(plugin)
    module = load_torch(args.torch_model)
    if args.torch_weights:
        load_state_file(module, args.torch_weights)
    keras_model = load_keras(args.keras_model, unsafe=args.unsafe)
    x, y = verify_cli.load_data(args, tuple(keras_model.inputs[0].shape))
    res = verify_models(keras_model, module, x, weights=args.weights, train_steps=args.steps, mapping=verify_cli.read_mapping(args),
                        targets=y, seed=args.seed, batch=args.batch_size)
    verify_cli.write_outputs(args, res)
    return EXIT_OK if res.passed else EXIT_PARITY


def cmd_bench(argv) -> int:
    from shared.bench import main as bench_main

    return bench_main(argv)


COMMANDS = {"data": cli.data_command, "export": cmd_export, "bench": cmd_bench, "port": cmd_port, "verify": cmd_verify}


def main(argv=None) -> int:
    """Run one command; the exit code keeps its meaning whatever goes wrong (shared/user_code.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = COMMANDS.get(argv[0]) if argv else None
    try:
        return cmd(argv[1:]) if cmd else cmd_run(argv)
    except ParityFailure as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_PARITY
    except MemoryError:  # before anything that allocates: no traceback, no formatting of the exception
        return cli.out_of_memory_exit(None)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `compare.py data | head`: the reader left; say nothing more (as a shell tool would)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        # Only the run command has --verbose: with it, the user's error also gets its traceback.
        return cli.failure_exit(exc, verbose=(("--verbose" in argv) if cmd is None else None))


if __name__ == "__main__":
    sys.exit(main())
