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

from shared.core import argtypes
from shared.cli import commands as cli
from shared.data.cases import Case, builtin_cases, user_case
from shared.verdict.checks import ParityFailure, assert_checks
from shared.flows.engine import DEFAULT_BATCH_SIZE, DEFAULT_STEPS, Options, PairResult, check_pair  # noqa: F401  (public defaults)
from shared.core.errors import UsageError
from shared.verdict.tolerances import Tolerance, for_check
from shared.core.user_code import EXIT_INTERNAL, EXIT_OK, EXIT_OOM, EXIT_PARITY, EXIT_USAGE  # noqa: F401  (the exit codes, documented there)

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
    """Both frameworks and their backends, imported once (torch first, as Keras' own test suite does)."""

    def __init__(self, threads: int = DEFAULT_THREADS, verbose: bool = False):
        import torch_impl

        torch_impl.setup(threads)
        import keras_impl  # sets KERAS_BACKEND=tensorflow

        keras_impl.setup(threads, verbose)  # imports TF with its C++ start-up lines hidden
        import keras
        import tensorflow as tf
        import torch

        from keras_impl import backend as kb
        from torch_impl import backend as tb

        self.sides, self.verbose = (keras_impl, torch_impl), verbose
        self.torch, self.tf, self.keras, self.kb, self.tb = torch, tf, keras, kb, tb

    def versions(self) -> dict:
        import onnx
        import onnxruntime

        return {**self.sides[0].versions(), **self.sides[1].versions(), "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}

    def set_threads(self, n: int) -> None:
        for side in self.sides:
            side.setup(n, self.verbose)

    def threads(self) -> dict:
        return {**self.sides[1].threads(), **self.sides[0].threads()}


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
    "NAME[=SIZE]" of shared/data/faults.py, planted: in the torch model, optimizer or
    loss, or in the data path that feeds it)."""
    from shared.data.faults import DataFaultBackend, parse_plant

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
    """Every check for one case: its two backends through shared.flows.engine.check_pair."""
    import dataclasses

    from shared.flows.engine import PairData
    from shared.data.faults import parse_plant
    from shared.data.portable import file_store

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
    """Run every case; write the report atomically into `out` (if given): shared/flows/run_report.py."""
    from shared.flows.run_report import run_cases

    fw = frameworks(opts.threads, opts.verbose)
    return run_cases(cases, opts, out, check_case, versions=fw.versions(), threads=fw.threads())


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
    from shared.graph.layout import nhwc_to_nchw
    from shared.verdict.outputs import compare_outputs

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
        from shared.cli.verify_cli import format_result

        raise ParityFailure("parity failed:\n" + format_result(res))
    return res.checks


# --------------------------------------------------------------------------
# Port: any Keras model -> a readable PyTorch twin (through shared/graph/ir.py)
# --------------------------------------------------------------------------
def keras_to_torch(keras_model):
    """(torch module in eval mode, its model.py source) for a functional or
    Sequential Keras model; the module is built by executing that source."""
    frameworks()
    from keras_impl.read import read_graph
    from torch_impl.write import build_module

    return build_module(read_graph(keras_model))


def port_checks(keras_model, inputs=None, **kw):
    """Port `keras_model` and prove the port (shared/flows/port.py's checks); returns
    shared.flows.port.PortResult (.checks, .module, .source, .graph, .info).

    Args:
        inputs: numpy arrays in PyTorch's layout (default: seeded random ones).
        kw: seed, batch, dtypes, train_config, onnx_dir, opset (shared.flows.port.port_checks).
    """
    frameworks()
    from keras_impl.side import KerasSide
    from shared.flows.port import port_checks as run
    from torch_impl.side import TorchSide

    return run(KerasSide(keras_model), TorchSide.from_graph, inputs, **kw)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
def cmd_run(argv) -> int:
    args = cli.run_parser(__doc__, DEFAULT_THREADS).parse_args(argv)
    opts = cli.run_options(args, Options)
    cases = [user_case(args)] if args.data else builtin_cases(args.task, args.model, args.dtype, args.seed)
    report = run_checks(cases, opts, Path(args.out))
    if args.quiet:
        from shared.report.build import summary_line

        print(summary_line(report))
    return EXIT_OK if report["passed"] else EXIT_PARITY


def cmd_export(argv) -> int:
    """compare.py export: both ONNX exports and the portable weights (shared/cli/commands.py)."""
    return cli.export_command(argv, lambda cfg, seed: backends(cfg, seed), lambda: frameworks().torch.__version__)


def cmd_port(argv) -> int:
    from shared.flows import port as sp

    args = sp.port_parser(cli.Parser, DEFAULT_THREADS).parse_args(argv)
    from shared.core.atomic import atomic_dir, check_writable_dir
    from shared.core.console import ConsoleUI

    out = Path(args.out)
    check_writable_dir(out)
    if args.input_shape is not None or args.torch_weights is not None:
        return cmd_port_reverse(args, out)
    fw = frameworks(args.threads)
    from keras_impl import port as kp
    from keras_impl.side import KerasSide
    from torch_impl.side import TorchSide

    for plugin in args.plugin:
        kp.import_plugin(plugin)
    keras_side = KerasSide(kp.load_model(args.model, unsafe=args.unsafe))
    xs = sp.load_inputs(args.data, keras_side.graph, args.batch_size, args.seed)
    train_config, optimizer_source = keras_side.train_config(args.optimizer, args.steps)
    ui = ConsoleUI(args.quiet)
    with atomic_dir(out) as work, ui:
        res = sp.port_checks(keras_side, TorchSide.from_graph, xs, seed=args.seed, train_config=train_config,
                             onnx_dir=None if args.no_onnx else Path(work), onnx_dir_shown_as=out)

        def torch_files(folder: Path) -> dict:
            from safetensors.numpy import save_file

            save_file(res.torch_side.state_dict(), str(folder / "weights.safetensors"))
            return {"weights": "weights.safetensors"}

        report = sp.write_port_dir(Path(work), res, torch_files, environment=_environment(fw, "float32 and float64", args.seed),
                                   model_spec=args.model, input_source=_input_source(args, xs),
                                   train_info=sp.train_info(train_config, optimizer_source), onnx=not args.no_onnx)
    sp.print_summary(report, res, ui.out, out, quiet=args.quiet)
    return EXIT_OK if report["passed"] else EXIT_PARITY


def _environment(fw, dtype: str, seed: int) -> dict:
    from shared.report import build as rpt

    return rpt.environment(fw.versions(), seed=seed, dtype=dtype, threads=fw.threads())


def _input_source(args, xs) -> str:
    return f"--data {args.data}" if args.data else f"seeded random, batch {len(xs[0])}"


def cmd_port_reverse(args, out: Path) -> int:
    """compare.py port TORCH_MODEL --input-shape C,H,W --out DIR: PyTorch -> Keras
    (proof in shared/flows/port_reverse.py, the two sides keras_impl/ and torch_impl/side.py)."""
    if args.input_shape is None:
        raise UsageError("PyTorch to Keras needs --input-shape C,H,W (the input without the batch)")
    fw = frameworks(args.threads)
    from keras_impl.side import KerasSide
    from shared.flows import port as sp
    from shared.flows import port_reverse as pr
    from shared.core.atomic import atomic_dir
    from shared.core.console import ConsoleUI
    from torch_impl.port import load_module
    from torch_impl.side import TorchSide

    module = load_module(args.model, args.torch_weights)
    xs = sp.load_inputs(args.data, TorchSide.read(module, args.input_shape).graph, args.batch_size, args.seed)
    res = pr.reverse_port_checks(KerasSide, TorchSide, module, args.input_shape, xs, seed=args.seed)
    ui = ConsoleUI(args.quiet)

    def keras_files(work: Path) -> dict:
        """model.keras and the weights, then the checks that need them written."""
        mem = res.info["memory"]
        files = res.keras_side.save(work)
        mem.mark("save")
        res.checks.append(pr.plain_load_check(res, xs, work / "model.keras", work))
        mem.mark("fresh-process reload")
        if not args.no_onnx:  # an exporter's failure is an information row, never the verdict
            res.checks.extend(pr.onnx_checks(res, xs[0], work, shown_as=out))
            mem.mark("onnx")
        return files

    with atomic_dir(out) as work, ui:
        report = sp.write_port_dir(Path(work), res, keras_files, environment=_environment(fw, "float32", args.seed),
                                   model_spec=args.model, input_source=_input_source(args, xs),
                                   direction="PyTorch -> Keras", onnx=not args.no_onnx)
    sp.print_summary(report, res, ui.out, out, quiet=args.quiet)
    return EXIT_OK if report["passed"] else EXIT_PARITY


def torch_to_keras(torch_model, input_shape, dtype: str = "float32") -> tuple:
    """(Keras model, its model_keras.py source, the graph) for an nn.Module and
    an input shape without the batch (C, H, W); the model is built by executing
    that source and takes Keras' layout (N, H, W, C)."""
    frameworks()
    from keras_impl.side import KerasSide
    from shared.flows.port_reverse import torch_to_keras as convert
    from torch_impl.side import TorchSide

    ks, ts = convert(KerasSide, TorchSide, torch_model, input_shape, dtype)
    return ks.model, ks.source, ts.graph


def reverse_port_checks(torch_model, input_shape, inputs=None, **kw):
    """shared.flows.port_reverse.reverse_port_checks with this project's two sides."""
    frameworks()
    from keras_impl.side import KerasSide
    from shared.flows.port_reverse import reverse_port_checks as check
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
        mapping: a shared.flows.verify.Mapping (or its JSON text) instead of matching.

    Returns:
        shared.flows.verify_run.VerifyResult (checks, mapping, localisation, diagnoses, notes).
    """
    frameworks()
    from keras_impl.side import KerasSide
    from shared.flows.verify import Mapping
    from shared.flows.verify_io import neutral_inputs
    from shared.flows.verify_run import VerifyOptions, run_verify
    from torch_impl.side import TorchSide

    if weights not in ("keras", "as-is"):
        raise UsageError(f"weights must be 'keras' or 'as-is', got {weights!r}")
    ks = KerasSide.for_verify(keras_model)
    x = None if inputs is None else neutral_inputs(inputs, ks.graph, tuple(keras_model.inputs[0].shape[1:]))
    if isinstance(mapping, str):
        mapping = Mapping.from_json(mapping)
    batch = batch or (len(x) if x is not None else 4)  # given inputs: all of them in one batch by default
    opts = VerifyOptions(weights=weights, mapping=mapping, batch=batch, seed=seed,
                         steps=train_steps, gradients=gradients, x=x, y=targets)
    return run_verify(ks, TorchSide(torch_model), opts)


def cmd_verify(argv) -> int:
    from shared.cli import verify_cli

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
    from shared.bench.orchestrate import main as bench_main

    return bench_main(argv)


COMMANDS = {"data": cli.data_command, "export": cmd_export, "bench": cmd_bench, "port": cmd_port, "verify": cmd_verify}


def main(argv=None) -> int:
    """Run one command; the exit code keeps its meaning whatever goes wrong (shared/cli/commands.py, shared/core/user_code.py)."""
    return cli.dispatch(COMMANDS, cmd_run, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
