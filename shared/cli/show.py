"""The `data` subcommand's logic: describe a dataset, list its items, draw a grid.

Framework-free; matplotlib is used through its object API with the Agg canvas
(no pyplot, no global backend switch).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shared.core.atomic import atomic_write_bytes, atomic_write_text
from shared.data.dataset import Dataset
from shared.core.errors import UsageError
from shared.data.loaders import point_pixels

__all__ = ["describe", "item_targets", "write_items_csv", "show_grid", "data_command"]

SPLITS = ("train", "valid")
# Grid cell size in inches and output resolution.
_CELL_INCHES = 1.6
_DPI = 100
_TITLE_FONTSIZE = 7
_DOT_SIZE = 30
# Decimals kept for pixel coordinates in the items CSV.
_PIXEL_DECIMALS = 4
# Shown instead of a label list for an image with no labels.
NO_LABEL = "(no label)"


def _has_points(dataset: Dataset) -> bool:
    return dataset.task == "regression" and "original_sizes" in dataset.meta


def item_targets(dataset: Dataset, split: str) -> pd.DataFrame:
    """One row per item of a split: its readable target column(s).

    multilabel -> "labels" (space-separated names); multiclass/binary ->
    "label"; BIWI-style regression -> "x_pixels", "y_pixels" (original image
    pixels); other regression -> one column per target name.

    Args:
        dataset: the dataset.
        split: "train" or "valid".

    Returns:
        A DataFrame with the target column(s) only.
    """
    y = getattr(dataset, f"y_{split}")
    classes = list(dataset.classes)
    if dataset.task == "multilabel":
        labels = [" ".join(classes[j] for j in np.flatnonzero(row)) for row in y]
        return pd.DataFrame({"labels": labels})
    if dataset.task == "multiclass":
        return pd.DataFrame({"label": [classes[int(i)] for i in y]})
    if dataset.task == "binary":
        return pd.DataFrame({"label": [classes[int(v)] for v in y[:, 0]]})
    if _has_points(dataset):
        # float32 targets carry ~1e-6 px of rounding noise; 4 decimals drop it.
        px = np.round(point_pixels(dataset, split), _PIXEL_DECIMALS)
        return pd.DataFrame({"x_pixels": px[:, 0], "y_pixels": px[:, 1]})
    return pd.DataFrame(np.asarray(y, dtype=np.float64), columns=[str(c) for c in classes])


def _counts_table(dataset: Dataset) -> list:
    """'label: train N, valid M' lines for classification tasks."""
    lines = []
    per_split = {}
    for split in SPLITS:
        y = getattr(dataset, f"y_{split}")
        if dataset.task == "multilabel":
            per_split[split] = y.sum(axis=0).astype(int)
        elif dataset.task == "multiclass":
            per_split[split] = np.bincount(y, minlength=len(dataset.classes))
        else:
            per_split[split] = np.bincount(y[:, 0].astype(int), minlength=2)
    width = max(len(str(c)) for c in dataset.classes)
    for j, c in enumerate(dataset.classes):
        t, v = per_split["train"][j], per_split["valid"][j]
        lines.append(f"  {str(c):<{width}}  train {t:>5}  valid {v:>5}")
    return lines


def describe(dataset: Dataset) -> str:
    """A human-readable summary: items per split, label counts, shape, classes, fingerprint.

    Args:
        dataset: the dataset.

    Returns:
        Multi-line text (no trailing newline).
    """
    s = dataset.summary()
    lines = [
        f"dataset:     {s['name']} ({s['task']}, format {s['format'] or '?'})",
        f"source:      {s['source']}",
        f"items:       train {s['train_items']}, valid {s['valid_items']}",
        f"input shape: {tuple(s['input_shape'])} {dataset.x_train.dtype}",
        f"classes:     {len(dataset.classes)}: {' '.join(map(str, dataset.classes))}",
    ]
    if dataset.task in ("multilabel", "multiclass", "binary"):
        lines.append("label counts:")
        lines.extend(_counts_table(dataset))
    if dataset.task == "multilabel":
        empty = {sp: int((getattr(dataset, f"y_{sp}").sum(axis=1) == 0).sum()) for sp in SPLITS}
        lines.append(f"items without labels: train {empty['train']}, valid {empty['valid']}")
    if dataset.task == "regression":
        mean = ", ".join(f"{v:.4f}" for v in s["target_mean"])
        std = ", ".join(f"{v:.4f}" for v in s["target_std"])
        lines.append(f"targets:     mean [{mean}], std [{std}]")
    lines.append(f"fingerprint: {s['fingerprint']}")
    return "\n".join(lines)


def write_items_csv(dataset: Dataset, path) -> None:
    """Write one row per item (split, item, target column(s)) atomically.

    Args:
        dataset: the dataset.
        path: the CSV to write.
    """
    frames = []
    for split in SPLITS:
        items = list(getattr(dataset, f"items_{split}"))
        n = len(getattr(dataset, f"y_{split}"))
        if len(items) != n:
            items = [str(i) for i in range(n)]
        head = pd.DataFrame({"split": [split] * n, "item": items})
        frames.append(pd.concat([head, item_targets(dataset, split)], axis=1))
    atomic_write_text(path, pd.concat(frames, ignore_index=True).to_csv(index=False))


def _titles(dataset: Dataset, split: str, n: int) -> list:
    targets = item_targets(dataset, split).iloc[:n]
    if dataset.task == "multilabel":
        return [t.replace(" ", ";") or NO_LABEL for t in targets["labels"]]
    if dataset.task in ("multiclass", "binary"):
        return list(targets["label"])
    return [", ".join(f"{v:.1f}" for v in row) for row in targets.to_numpy()]


def show_grid(dataset: Dataset, n: int, png_path, split: str = "valid") -> None:
    """Save a grid of the first `n` images of a split with their labels as titles.

    Regression targets are drawn as a red dot on the (resized) image, the title
    giving the centre in original-image pixels.

    Args:
        dataset: an image dataset.
        n: how many images (fewer if the split is smaller).
        png_path: the PNG to write (atomically).
        split: "train" or "valid".

    Raises:
        UsageError: tabular dataset, bad split or n < 1.
    """
    if not dataset.is_image:
        raise UsageError("--show needs an image dataset")
    if split not in SPLITS:
        raise UsageError(f"split must be one of {SPLITS}; got {split!r}")
    x = getattr(dataset, f"x_{split}")
    if n < 1 or len(x) == 0:
        raise UsageError(f"nothing to show: n={n}, {len(x)} items in split {split!r}")
    n = min(n, len(x))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * _CELL_INCHES, rows * _CELL_INCHES), dpi=_DPI)
    FigureCanvasAgg(fig)
    titles = _titles(dataset, split, n)
    dots = _dot_positions(dataset, split, n, x.shape[2], x.shape[1])
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(np.clip(x[i], 0, 1), interpolation="nearest")
        if dots is not None:
            ax.scatter([dots[i, 0]], [dots[i, 1]], c="red", s=_DOT_SIZE)
        ax.set_title(titles[i], fontsize=_TITLE_FONTSIZE)
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(png_path, buf.getvalue())


def _dot_positions(dataset: Dataset, split: str, n: int, width: int, height: int):
    """Scaled [-1, 1] points -> imshow coordinates of the resized image (pixel centres at integers)."""
    if dataset.task != "regression" or not _has_points(dataset):
        return None
    y = getattr(dataset, f"y_{split}")[:n].astype(np.float64)
    return np.stack([(y[:, 0] + 1) * width / 2 - 0.5, (y[:, 1] + 1) * height / 2 - 0.5], axis=1)


def data_command(args) -> None:
    """`python compare.py data`: describe a dataset; write its items and a grid if asked.

    Args:
        args: the parsed command line (name or data/format, task, target,
            image_size, items, show, png).
    """
    from shared.data import loaders

    if bool(args.name) == bool(args.data):
        raise UsageError("give a built-in name or --data PATH --format F (one of them)")
    if args.show and not args.png:
        raise UsageError("--show needs --png FILE")
    if args.data:
        if not args.format:
            raise UsageError("--data needs --format pascal|biwi|csv")
        kw = dict(task=args.task, target=args.target) if args.format == "csv" else dict(image_size=args.image_size)
        if args.format == "csv" and not args.task:
            raise UsageError("--format csv needs --task")
        ds = loaders.load(args.data, args.format, **kw)
    else:
        fmt = {"multilabel": "builtin-multilabel", "regression": "builtin-regression"}.get(args.name, args.name)
        ds = loaders.load(None, fmt)
    print(describe(ds))
    if args.items:
        write_items_csv(ds, args.items)
        print(f"items written to {args.items}")
    if args.show:
        show_grid(ds, args.show, args.png)
        print(f"grid of {args.show} images written to {args.png}")
