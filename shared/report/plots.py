"""Pictures where a picture says more than a table (matplotlib, Agg backend).

Each function writes one PNG to the path it is given; compare.py writes into
the temporary report folder that is renamed into place at the end.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_loss_curves", "plot_threshold_sweep", "plot_diff_histogram", "write_plots"]

_SIDES = {"keras": dict(color="tab:orange", lw=2.5, alpha=0.7), "torch": dict(color="tab:blue", lw=1.2, ls="--")}


def _grid(n: int):
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def plot_loss_curves(curves: dict, path) -> None:
    """curves: {"digits/mlp sgd": {"keras": losses, "torch": losses}, ...}; one panel each."""
    fig, axes = _grid(len(curves))
    for ax, (title, sides) in zip(axes, curves.items()):
        for side, losses in sides.items():
            ax.plot(np.arange(1, len(losses) + 1), losses, label=side, **_SIDES.get(side, {}))
        gap = np.max(np.abs(np.asarray(sides["keras"]) - np.asarray(sides["torch"]))) if len(sides) == 2 else 0.0
        ax.set_title(f"{title}  (max gap {gap:.2g})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    fig.suptitle("Training loss, Keras vs PyTorch (same start, same batches)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_threshold_sweep(sweeps: dict, path) -> None:
    """sweeps: {"builtin-multilabel/cnn": {"thresholds": t, "keras": acc, "torch": acc,
    "best": {"keras": t_k, "torch": t_t}}}."""
    fig, axes = _grid(len(sweeps))
    for ax, (title, s) in zip(axes, sweeps.items()):
        sides = list(s["best"])  # the two backends, e.g. keras, torch
        for side in sides:
            ax.plot(s["thresholds"], s[side], label=f"{side} (best {s['best'][side]:.2f})", marker="o", ms=3,
                    **_SIDES.get(side, {}))
        ax.axvline(s["best"][sides[0]], color="gray", lw=0.8, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("threshold on sigmoid(logit)")
        ax.set_ylabel("accuracy_multi (validation)")
        ax.legend(fontsize=8)
    fig.suptitle("Multi-label accuracy against decision threshold")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_diff_histogram(diffs: dict, path, tolerance: float | None = None) -> None:
    """diffs: {"digits/mlp": |keras - torch| of the float32 logits, ...}, log-x histogram."""
    fig, ax = plt.subplots(figsize=(7, 4))
    floor = 1e-12
    finite = [np.asarray(d, dtype=float).ravel() for d in diffs.values()]
    hi = max([float(d.max()) for d in finite if d.size] + [1e-6])
    bins = np.logspace(np.log10(floor), np.log10(max(hi, floor) * 10), 40)
    for name, d in zip(diffs, finite):
        zeros = int((d == 0).sum())
        ax.hist(np.maximum(d, floor), bins=bins, histtype="step", lw=1.5, label=f"{name} ({zeros} exact)")
    if tolerance is not None:
        ax.axvline(tolerance, color="red", ls="--", lw=1, label=f"tolerance at scale 1 ({tolerance:.2g})")
    ax.set_xscale("log")
    ax.set_yscale("log")  # exact zeros can outnumber the rest a hundredfold
    ax.set_xlabel("|keras - torch| per logit (exact zeros drawn at 1e-12)")
    ax.set_ylabel("count (log)")
    ax.set_title("Forward differences, float32 validation logits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_plots(work, curves: dict, sweeps: dict, diffs: dict, tolerance: float) -> list:
    """Every plot that has data, into folder `work`; returns the file names written.

    Args:
        tolerance: the float32 forward tolerance at scale 1 (a line on the histogram).
    """
    written = []
    if curves:
        plot_loss_curves(curves, work / "loss_curves.png")
        written.append("loss_curves.png")
    if sweeps:
        plot_threshold_sweep(sweeps, work / "threshold_sweep.png")
        written.append("threshold_sweep.png")
    if diffs:
        plot_diff_histogram(diffs, work / "forward_diff_hist.png", tolerance=tolerance)
        written.append("forward_diff_hist.png")
    return written
