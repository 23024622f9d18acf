"""The command line's framework-free parts: the argument parsers of the run and
`data` commands, one-line argparse errors, and the mapping from an exception to
an exit code and message (shared/core/user_code.py decides whose fault it is).
compare.py wires them to the frameworks."""

from __future__ import annotations

import argparse
import sys

from shared.core import argtypes, user_code
from shared.data.config import DTYPES, MODELS, TASKS
from shared.flows.engine import DEFAULT_BATCH_SIZE, DEFAULT_STEPS
from shared.core.errors import ParityError
from shared.data.registry import FAULTS
from shared.core.user_code import EXIT_INTERNAL, EXIT_OK, EXIT_OOM, EXIT_USAGE

__all__ = ["Parser", "run_parser", "run_options", "data_command", "export_command", "failure_exit", "out_of_memory_exit", "dispatch",
           "DEFAULT_OUT"]

DEFAULT_OUT = "reports/latest"


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def run_parser(doc: str, default_threads: int) -> argparse.ArgumentParser:
    """The default run's parser; `doc`: compare.py's docstring (its first two paragraphs describe the tool)."""
    p = Parser(
        prog="compare.py",
        description=doc.split("\n\n")[0] + "\n\n" + doc.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Subcommands: 'data', 'export' and 'bench' (each has --help). "
               "Exit codes: 0 all checks passed, 1 a parity check failed, 2 bad usage, bad input or an error raised by "
               "your own model/plugin code, 3 internal error (a bug in this tool), 4 ran out of memory.",
    )
    p.add_argument("--task", choices=TASKS, help="only built-in pairs of this task; with --format csv, the task of the data")
    p.add_argument("--model", choices=MODELS, help="only built-in pairs of this model; with --data, the model to build (default: cnn for images, mlp for tables)")
    p.add_argument("--data", metavar="PATH", help="check a model on your own data instead of the built-in sets")
    p.add_argument("--format", choices=("pascal", "biwi", "csv"), help="layout of --data: fastai PASCAL (train.csv + train/), BIWI (person folders), or a tabular CSV")
    p.add_argument("--target", action="append", metavar="COLUMN", help="target column of a CSV (repeat for several; default: the last column)")
    p.add_argument("--image-size", type=argtypes.positive_int, default=32, help="images are resized to this square size (default 32)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of both models (float32 also repeats the forward check in float64)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps per optimizer (default {DEFAULT_STEPS}; 0 skips training)")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=DEFAULT_BATCH_SIZE, help=f"batch size (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--optimizer", choices=("sgd", "adam", "both"), default="both", help="optimizer(s) to train with (default both)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order (default 0)")
    p.add_argument("--atol", type=argtypes.nonneg_float, help="absolute tolerance for every check (overrides the named defaults)")
    p.add_argument("--rtol", type=argtypes.nonneg_float, help="relative tolerance (times max(1, |reference|)) for every check")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report folder, replaced atomically (default {DEFAULT_OUT})")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export checks")
    p.add_argument("--plant", metavar="NAME[=SIZE]", help="plant a known porting bug in the PyTorch twin (SIZE in (0, 1]: "
                   "the fraction of the bug, default 1) to see what the harness reports: "
                   + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()))
    p.add_argument("--threads", type=argtypes.positive_int, default=default_threads,
                   help=f"intra-op threads of each framework (default {default_threads}: fastest for these small models, and reproducible)")
    p.add_argument("--quiet", action="store_true", help="print only the one-line verdict")
    p.add_argument("--verbose", action="store_true", help="print every check as a table, and TensorFlow's start-up log lines")
    return p


def run_options(args, options_class):
    """The engine's Options from the run command's arguments (checked here: exit 2 on a bad combination)."""
    from shared.core.errors import UsageError
    from shared.verdict.tolerances import Tolerance

    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    if args.format and not args.data:
        raise UsageError("--format needs --data PATH")
    tolerance = None
    if args.atol is not None or args.rtol is not None:
        tolerance = Tolerance(rel=args.rtol or 0.0, abs=args.atol or 0.0)
    opts = options_class(
        steps=args.steps, optimizers=("sgd", "adam") if args.optimizer == "both" else (args.optimizer,),
        seed=args.seed, dtype=args.dtype, batch_size=args.batch_size, tolerance=tolerance,
        onnx=not args.no_onnx, fault=args.plant, quiet=args.quiet, threads=args.threads, verbose=args.verbose,
    )
    if args.steps == 0:
        opts.optimizers = ()
    return opts


def export_command(argv, make_backends, torch_version) -> int:
    """`compare.py export`: both ONNX exports and the portable weights of a built-in
    pair (or of --weights), atomically. make_backends(config, seed) -> (keras, torch)
    backends; torch_version() -> the version recorded in the weights' sidecar."""
    from pathlib import Path

    from shared.onnx import onnx_check
    from shared.core.atomic import atomic_dir, check_writable_dir
    from shared.core.errors import UsageError
    from shared.data.portable import load_portable, save_portable

    p = Parser(prog="compare.py export", description="Write the Keras and PyTorch ONNX exports of a model and its portable weights, atomically.")
    p.add_argument("--task", choices=TASKS, help="pick the built-in pair of this task")
    p.add_argument("--model", choices=MODELS, help="pick the built-in pair of this model")
    p.add_argument("--weights", metavar="FILE.safetensors", help="export these portable weights (their sidecar gives the model) instead of a fresh built-in model")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the pinned one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    args = p.parse_args(argv)
    opset = args.opset if args.opset is not None else onnx_check.ONNX_OPSET
    onnx_check.validate_opset(opset)
    out = Path(args.out)
    check_writable_dir(out)
    if args.weights:
        tensors, sidecar, cfg = load_portable(args.weights)
        classes = sidecar.get("classes", [])
    else:
        from shared.data.registry import PAIRS

        pairs = [q for q in PAIRS if (not args.task or q.task == args.task) and (not args.model or q.model == args.model)]
        if not pairs:
            raise UsageError(f"no built-in pair has task={args.task!r} and model={args.model!r}")
        cfg, classes, tensors = pairs[0].config(), [], None
    sides = make_backends(cfg, args.seed)
    tensors = sides[0].get_weights() if tensors is None else tensors
    for side in sides:
        side.set_weights(tensors)
    with atomic_dir(out) as work:
        save_portable(Path(work) / "weights.safetensors", sides[1].get_weights(), cfg, classes=classes,
                      framework="torch", framework_version=torch_version())
        how = {s.name: {} for s in sides}
        for s in sides:
            s.export_onnx(Path(work) / f"{s.name}.onnx", opset, info=how[s.name])
    for name, info in how.items():
        info.update(onnx_check.check_model(out / f"{name}.onnx"))
        print(f"{out / name}.onnx: {info['exporter']} exporter, opset {info['opset']}, inputs {info['inputs']}, "
              f"outputs {info['outputs']}, ops {info['ops']}")
    print(f"{out / 'weights.safetensors'} (+ weights.json): {cfg.model}/{cfg.task}")
    return EXIT_OK


def data_command(argv) -> int:
    """`compare.py data`: what a loader reads (shared/cli/show.py)."""
    p = Parser(prog="compare.py data", description="Show what a loader reads: item counts per split, label counts, input shape.")
    p.add_argument("name", nargs="?", choices=("digits", "breast_cancer", "multilabel", "regression"), help="a built-in dataset (or use --data/--format)")
    p.add_argument("--data", metavar="PATH")
    p.add_argument("--format", choices=("pascal", "biwi", "csv"))
    p.add_argument("--task", choices=TASKS, help="task of a CSV")
    p.add_argument("--target", action="append", metavar="COLUMN")
    p.add_argument("--image-size", type=argtypes.positive_int, default=32)
    p.add_argument("--items", metavar="FILE.csv", help="write every item with its split and target")
    p.add_argument("--show", type=argtypes.positive_int, metavar="N", help="save a grid of N validation images with their labels (needs --png)")
    p.add_argument("--png", metavar="FILE", help="where --show writes its grid")
    args = p.parse_args(argv)
    from shared.cli import show

    show.data_command(args)
    return EXIT_OK


_OOM_HINT = ("try a smaller --batch-size (or fewer samples in --data), close other programs, or run it on a "
             "machine with more memory; nothing was written")


def out_of_memory_exit(exc) -> int:
    """EXIT_OOM with one line; preformatted parts only, as memory may still be short."""
    try:
        what = "" if exc is None else f" ({user_code.describe(exc)})"
        print(f"error: ran out of memory{what}; {_OOM_HINT}", file=sys.stderr)
    except MemoryError:
        pass
    return EXIT_OOM


def failure_exit(exc: Exception, *, verbose: bool | None) -> int:
    """Exit code and message of an exception that is not a parity verdict: out of memory (4),
    bad input or the user's own error (2), or a bug of this tool (3); never 1 (shared/core/user_code.py).
    verbose: None where the command has no --verbose, else whether it was given."""
    try:
        if user_code.is_out_of_memory(exc):
            return out_of_memory_exit(exc)
        if isinstance(exc, ParityError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        fault = user_code.user_fault(exc)
        if fault is not None:
            if verbose:
                import traceback

                traceback.print_exception(exc)
            hint = "; --verbose shows the traceback" if verbose is False else ""
            print(f"error: {fault} (an error in the model, module or plugin you gave, not in keras-torch-parity{hint})",
                  file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, OSError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        import traceback

        traceback.print_exception(exc)
        print("internal error: the traceback above is a bug in keras-torch-parity, not a parity result; "
              "nothing was written", file=sys.stderr)
        return EXIT_INTERNAL
    except MemoryError:  # the handler itself ran out: still not a verdict
        return out_of_memory_exit(None)


def dispatch(commands: dict, default, argv: list) -> int:
    """Run `commands[argv[0]]` (else `default`) on the rest; every exception
    becomes its exit code: 1 a ParityFailure, 4 out of memory, 130 interrupted,
    141 a closed pipe (`compare.py data | head`), else failure_exit's 2 or 3."""
    from shared.verdict.checks import ParityFailure

    cmd = commands.get(argv[0]) if argv else None
    try:
        return cmd(argv[1:]) if cmd else default(argv)
    except ParityFailure as exc:
        print(str(exc), file=sys.stderr)
        return user_code.EXIT_PARITY
    except MemoryError:  # before anything that allocates: no traceback, no formatting of the exception
        return out_of_memory_exit(None)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left; say nothing more (as a shell tool would)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        # Only the run command has --verbose: with it, the user's error also gets its traceback.
        return failure_exit(exc, verbose=(("--verbose" in argv) if cmd is None else None))
