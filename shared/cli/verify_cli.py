"""`compare.py verify` on the command line, framework-free: arguments, data,
mapping file, console text and the report folder. compare.py builds the two
models and calls `verify_models`; everything else lives here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.data.config import TASKS
from shared.core.errors import UsageError
from shared.flows.verify_run import VerifyResult

__all__ = ["DESCRIPTION", "add_arguments", "check_arguments", "load_data", "read_mapping", "write_outputs",
           "format_result", "markdown"]

DESCRIPTION = ("Check a hand-written PyTorch port against its Keras model: copy the weights by structure, compare layer "
               "by layer (naming the first that differs), gradients and training with the Keras compile config, in "
               "float32 and float64.")


def add_arguments(p, positive_int, default_threads: int) -> None:
    p.add_argument("keras_model", metavar="KERAS_MODEL", help="a .keras/.h5 file, or package.module:function / path/file.py:function")
    p.add_argument("torch_model", metavar="TORCH_MODEL", help="path/file.py:NAME or package.module:NAME: an nn.Module class "
                   "with a no-argument constructor, or a function returning a module")
    p.add_argument("--torch-weights", metavar="FILE", help="a state_dict (.pt/.pth or .safetensors) loaded into the torch model first")
    p.add_argument("--weights", choices=("keras", "as-is"), default="keras", help="keras (default): copy the Keras weights "
                   "into the torch model by structure; as-is: each model keeps its own weights")
    p.add_argument("--mapping", metavar="FILE", help="a mapping JSON (as written to --out) to use instead of matching by structure")
    p.add_argument("--data", metavar="PATH", help="inputs (and targets): .npz with x (Keras layout) and optional y, or one "
                   "array per Keras input name (token_ids, padding_mask, ...; transformers' names work too); or .npy; "
                   "or a dataset with --format, as in the main command (its training split)")
    p.add_argument("--format", choices=("pascal", "biwi", "csv"), help="layout of --data (as in the main command)")
    p.add_argument("--task", choices=TASKS, help="task of a --format csv file")
    p.add_argument("--target", action="append", metavar="COLUMN", help="target column of a CSV (repeat for several)")
    p.add_argument("--steps", type=int, default=3, help="training steps per dtype (default 3; 0 skips training)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="batch of the random inputs (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unsafe", action="store_true", help="allow Keras Lambda layers carrying code")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import this module first (converters registered with @keras_converter), as in `port`; repeatable")
    p.add_argument("--out", help="write report.json, report.md and mapping.json here (replaced atomically)")
    p.add_argument("--threads", type=positive_int, default=default_threads)
    p.add_argument("--quiet", action="store_true", help="print only the one-line verdict")


def check_arguments(args) -> None:
    """Everything that can be refused before a framework loads."""
    from shared.core.atomic import check_writable_dir

    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    if args.format and not args.data:
        raise UsageError("--format needs --data PATH")
    if args.mapping and not Path(args.mapping).is_file():
        raise UsageError(f"{args.mapping}: no such mapping file")
    if args.out:
        check_writable_dir(Path(args.out))


def read_mapping(args) -> str | None:
    return Path(args.mapping).read_text() if args.mapping else None


def load_data(args, input_shape: tuple):
    """(x, y) from --data: a .npz/.npy file, or a dataset as the main command reads it
    (--format pascal|biwi|csv, images resized to the model's input size); its training split."""
    path = args.data
    if path is None:
        return None, None
    if args.format:
        from shared.data import loaders

        kw = {"task": args.task, "target": args.target} if args.format == "csv" else {"image_size": int(input_shape[1])}
        if args.format == "csv" and not args.task:
            raise UsageError("--format csv needs --task (multiclass, multilabel, binary or regression)")
        ds = loaders.load(path, args.format, **kw)
        return ds.x_train, ds.y_train
    p = Path(path)
    if not p.is_file() or p.suffix not in (".npz", ".npy"):
        raise UsageError(f"{path}: expected a .npz (x, optional y) or .npy file of inputs in Keras' layout")
    data = np.load(p)
    if p.suffix == ".npy":
        return data, None
    y = data["y"] if "y" in data else None
    if "x" not in data:  # a model with several inputs: one array per input name (checked against the model later)
        named = {k: data[k] for k in data.files if k != "y"}
        if not named:
            raise UsageError(f"{path}: the .npz has no array 'x' and no arrays named after inputs (found {sorted(data.files)})")
        return named, y
    return data["x"], y


def write_outputs(args, res) -> None:
    """report.json, report.md and mapping.json into --out (atomically), then the console text."""
    if args.out:
        from shared.core.atomic import atomic_dir, atomic_write_text

        with atomic_dir(Path(args.out)) as work:
            atomic_write_text(Path(work) / "report.json", json.dumps(res.report(), indent=1, default=str))
            atomic_write_text(Path(work) / "report.md", markdown(res))
            atomic_write_text(Path(work) / "mapping.json", res.mapping.to_json())
    print(format_result(res, quiet=args.quiet))


def format_result(res: VerifyResult, *, quiet: bool = False) -> str:
    """The console text: failures, where, the likely trap, notes, one verdict line."""
    from shared.verdict.checks import format_check

    bad = [c for c in res.checks if not c.passed and not c.info]
    verdict = (f"verify: {'PASS' if res.passed else 'FAIL'}: {len(res.checks) - len(bad)}/{len(res.checks)} checks passed, "
               f"{len(res.mapping.pairs)} layer pairs matched")
    if quiet:
        return verdict
    lines = ["mapping (Keras layer -> torch module):"]
    lines += [f"  {p.keras:<16} -> {p.torch:<16} {p.kind}{'  [' + p.transform + (' ' + p.flatten.get('torch_order', 'index') if p.flatten else '') + ']' if p.transform != 'copy' else ''}"
              for p in res.mapping.pairs]
    lines += [format_check(c) for c in bad[:20]] + ([f"... {len(bad) - 20} more failures in report.json"] if len(bad) > 20 else [])
    if res.localisation:
        lines.append(f"first difference (float64 forward): {res.localisation['text']}")
    lines += [f"likely trap: {d}" for d in res.diagnoses]
    lines += [f"note: {n}" for n in res.notes]
    return "\n".join(lines + [verdict])


def markdown(res: VerifyResult) -> str:
    rows = ["| verdict | dtype | check | max abs diff | tolerance | where |", "|---|---|---|---|---|---|"]
    for c in res.checks:
        v = "info" if c.info else ("pass" if c.passed else "**FAIL**")
        rows.append(f"| {v} | {c.dtype} | {c.check} | {c.max_abs_diff:.3g} | {c.tolerance:.3g} | {c.where} |")
    pairs = ["| Keras layer | torch module | kind | transform |", "|---|---|---|---|"]
    pairs += [f"| {p.keras} | {p.torch} | {p.kind} | {p.transform} {p.flatten.get('torch_order', '') if p.flatten else ''} |"
              for p in res.mapping.pairs]
    parts = [f"# verify: {'PASS' if res.passed else 'FAIL'}", "", "## Mapping", "", *pairs, ""]
    if res.localisation:
        parts += ["## First difference", "", res.localisation["text"], ""]
    if res.diagnoses:
        parts += ["## Likely traps", "", *[f"- {d}" for d in res.diagnoses], ""]
    if res.notes:
        parts += ["## Notes", "", *[f"- {n}" for n in res.notes], ""]
    return "\n".join(parts + ["## Checks", "", *rows, ""])
