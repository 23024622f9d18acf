"""What `python compare.py` checks: the built-in cases, or one built from --data.

A case is a (dataset, ModelConfig) pair; compare.py turns it into two backends
and shared.flows.engine.check_pair checks them. Framework-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.data.config import ModelConfig
from shared.core.errors import UsageError

__all__ = ["Case", "builtin_cases", "user_case", "data_record"]


@dataclass
class Case:
    """One (dataset, task, model) to check."""

    name: str
    dataset: object  # shared.data.dataset.Dataset
    config: ModelConfig

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_").replace(":", "_")


def builtin_cases(task=None, model=None, dtype="float32", seed=0) -> list:
    from shared.data import loaders
    from shared.data.registry import PAIRS

    cases = []
    for p in PAIRS:
        if (task and p.task != task) or (model and p.model != model):
            continue
        ds = loaders.load(None, p.dataset)
        cases.append(Case(p.name, ds, ModelConfig(p.model, p.task, ds.input_shape, ds.num_outputs, dtype=dtype)))
    if not cases:
        raise UsageError(f"no built-in pair has task={task!r} and model={model!r}; "
                         f"built-in: digits/mlp multiclass, breast_cancer/mlp binary, builtin-multilabel/cnn multilabel, builtin-regression/cnn regression")
    return cases


def user_case(args) -> Case:
    """The case of `--data PATH --format F` (with --task/--target/--model/--image-size/--dtype)."""
    from shared.data import loaders

    if not args.format:
        raise UsageError("--data needs --format pascal|biwi|csv")
    kw = {}
    if args.format == "csv":
        if not args.task:
            raise UsageError("--format csv needs --task (multiclass, multilabel, binary or regression)")
        kw = dict(task=args.task, target=args.target)
    elif args.format in ("pascal", "biwi"):
        kw = dict(image_size=args.image_size)
    ds = loaders.load(args.data, args.format, **kw)
    if args.task and args.task != ds.task:
        raise UsageError(f"--task {args.task} does not fit --format {args.format}, which gives task {ds.task}")
    model = args.model or ("cnn" if ds.is_image else "mlp")
    if (model == "cnn") != ds.is_image:
        raise UsageError(f"--model {model} needs {'image' if model == 'cnn' else 'tabular'} data; {args.data} is {'image' if ds.is_image else 'tabular'}")
    name = f"{Path(args.data).name}/{model}"
    return Case(name, ds, ModelConfig(model, ds.task, ds.input_shape, ds.num_outputs, dtype=args.dtype))


def data_record(case: Case) -> dict:
    """The report's `data[]` entry for a case."""
    ds = case.dataset
    return {
        "case": case.name, "dataset": ds.name, "path": ds.source,
        "format": ds.format, "task": case.config.task, "model": case.config.model,
        "rows": {"train": len(ds.x_train), "valid": len(ds.x_valid)},
        "input_shape": list(ds.input_shape), "fingerprint": ds.fingerprint(),
    }
