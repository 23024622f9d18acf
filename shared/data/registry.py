"""The built-in (dataset, task, model) pairs that `python compare.py` runs and
the tests parametrize over (timm-style registry with readable ids)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.data.config import ModelConfig, TrainConfig

__all__ = ["Pair", "PAIRS", "pair_by_name", "BUILTIN_IMAGE_SIZE", "FAULTS"]

# The built-in image datasets are decoded at 32x32: even, so the stride-2
# "same" convolution hits TF's asymmetric padding (the trap it must exercise).
BUILTIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class Pair:
    """One built-in case.

    Args:
        dataset: name for shared.data.loaders.load ("digits", "breast_cancer",
            "builtin-multilabel", "builtin-regression").
        task, model: as in ModelConfig.
        input_shape, num_outputs: what the loaded data has (so tests can build
            configs without loading data).
        train: default training settings for this pair.
    """

    dataset: str
    task: str
    model: str
    input_shape: tuple
    num_outputs: int
    train: TrainConfig = TrainConfig()

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.model}"

    def config(self, dtype: str = "float32", **changes) -> ModelConfig:
        return ModelConfig(self.model, self.task, self.input_shape, self.num_outputs, dtype=dtype, **changes)


_IMG = (BUILTIN_IMAGE_SIZE, BUILTIN_IMAGE_SIZE, 3)

PAIRS = (
    Pair("digits", "multiclass", "mlp", (64,), 10),
    Pair("breast_cancer", "binary", "mlp", (30,), 1),
    Pair("builtin-multilabel", "multilabel", "cnn", _IMG, 10),
    Pair("builtin-regression", "regression", "cnn", _IMG, 2),
)


def pair_by_name(name: str) -> Pair:
    for p in PAIRS:
        if name in (p.name, p.dataset, p.task):
            return p
    raise KeyError(f"no built-in pair {name!r}; known: {[p.name for p in PAIRS]}")


# Known porting bugs `--plant` puts in the built-in PyTorch twin: the catalog
# lives in shared/data/faults.py (name -> Fault); here name -> description.
from shared.data.faults import FAULTS as _CATALOG  # noqa: E402

FAULTS = {name: f.description for name, f in _CATALOG.items()}
