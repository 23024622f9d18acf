"""The one dataset object that both frameworks consume."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from shared.data.config import TASKS

__all__ = ["Dataset", "array_fingerprint"]


def array_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over dtype, shape and C-ordered bytes of each array (hex, 16 chars).

    Two arrays that print the same but differ in dtype or layout hash apart:
    this is what proves both frameworks saw the same bytes.
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Dataset:
    """Arrays plus what they mean.

    Conventions (every loader keeps them, the models rely on them):
      - x: float32. Images are (N, H, W, 3) channels-last in [0, 1]; tabular
        data is (N, features).
      - y by task: multiclass int64 (N,) class indices; multilabel float32
        (N, C) multi-hot (rows of zeros allowed); binary float32 (N, 1) in
        {0, 1}; regression float32 (N, T).
      - classes: the vocabulary (multiclass/multilabel: sorted class names;
        binary: [negative, positive]; regression: target names).

    Args:
        name: short name ("digits", "pascal:/path", ...).
        task: one of shared.data.config.TASKS.
        x_train, y_train, x_valid, y_valid: the split arrays.
        classes: vocabulary, see above.
        source: where it came from (a path, or "sklearn:digits").
        format: "pascal", "biwi", "csv", "sklearn" or "builtin-*".
        items_train, items_valid: one id per row (file name, CSV row), in order.
        meta: loader-specific facts (image size, feature scaling, ...).
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    classes: list
    source: str = ""
    format: str = ""
    items_train: list = field(default_factory=list)
    items_valid: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}. Received: task={self.task!r}")
        for split in ("train", "valid"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"{split}: {len(x)} inputs but {len(y)} targets")

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        if self.task in ("multiclass", "multilabel"):
            return len(self.classes)
        if self.task == "binary":
            return 1
        return int(self.y_train.shape[1])

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4

    def fingerprint(self) -> str:
        return array_fingerprint(self.x_train, self.y_train, self.x_valid, self.y_valid)

    def summary(self) -> dict:
        """Counts a person checks first: items per split, label counts, shapes."""
        out = {
            "name": self.name,
            "task": self.task,
            "format": self.format,
            "source": self.source,
            "train_items": int(len(self.x_train)),
            "valid_items": int(len(self.x_valid)),
            "input_shape": list(self.input_shape),
            "num_outputs": self.num_outputs,
            "classes": list(self.classes),
            "fingerprint": self.fingerprint(),
        }
        y = np.concatenate([self.y_train, self.y_valid])
        if self.task == "multiclass":
            out["label_counts"] = {c: int((y == i).sum()) for i, c in enumerate(self.classes)}
        elif self.task == "multilabel":
            out["label_counts"] = {c: int(y[:, i].sum()) for i, c in enumerate(self.classes)}
            out["items_without_labels"] = int((y.sum(axis=1) == 0).sum())
        elif self.task == "binary":
            out["label_counts"] = {c: int((y[:, 0] == i).sum()) for i, c in enumerate(self.classes)}
        else:
            out["target_mean"] = [float(v) for v in y.mean(axis=0)]
            out["target_std"] = [float(v) for v in y.std(axis=0)]
        return out
