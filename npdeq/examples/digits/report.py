"""The demo's outputs: the final table, the metrics JSON and the figure (training curves and
the forward solver's per-sample residual traces). The figure needs matplotlib (optional).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Sequence

import numpy as np

from npdeq.examples.digits.training import History

__all__ = ["summary", "table", "write_json", "write_figure", "figure", "loss_scale"]


def summary(history: History, settings: dict[str, Any]) -> dict[str, Any]:
    """The final figures and the per-epoch history as plain JSON-ready values."""
    per_epoch = {k: [float(v) for v in getattr(history, k)]
                 for k in ("train_loss", "train_accuracy", "test_accuracy", "epoch_seconds",
                           "forward_iterations", "backward_iterations", "forward_residual",
                           "converged_fraction", "test_converged_fraction",
                           "largest_residual")}
    backward = [v for v in per_epoch["backward_iterations"] if not math.isnan(v)]
    return {
        "settings": settings,
        "test_accuracy": per_epoch["test_accuracy"][-1],
        "best_test_accuracy": max(per_epoch["test_accuracy"]),
        "seconds_per_epoch": float(np.mean(per_epoch["epoch_seconds"])),
        "total_train_seconds": float(np.sum(per_epoch["epoch_seconds"])),
        "mean_forward_iterations": float(np.mean(per_epoch["forward_iterations"])),
        "mean_backward_iterations": float(np.mean(backward)) if backward else None,
        "convergence_rate": per_epoch["converged_fraction"][-1],
        "test_convergence_rate": per_epoch["test_converged_fraction"][-1],
        "history": per_epoch,
    }


def table(metrics: dict[str, Any], out: Callable[[str], None] = print) -> None:
    """Print the final table."""
    backward = metrics["mean_backward_iterations"]
    rows = [
        ("test accuracy (final epoch)", f"{metrics['test_accuracy']:.4f}"),
        ("time per epoch", f"{metrics['seconds_per_epoch']:.2f} s"),
        ("training time", f"{metrics['total_train_seconds']:.1f} s"),
        ("mean forward iterations", f"{metrics['mean_forward_iterations']:.1f}"),
        ("mean backward iterations", "-" if backward is None else f"{backward:.1f}"),
        ("forward convergence rate (last epoch, train)", f"{metrics['convergence_rate']:.3f}"),
        ("forward convergence rate (test)", f"{metrics['test_convergence_rate']:.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    out("-" * (width + 14))
    for name, value in rows:
        out(f"{name:<{width}}  {value:>10}")
    out("-" * (width + 14))


def write_json(metrics: dict[str, Any], path: str) -> None:
    """Write the metrics to ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2)


def loss_scale(losses: Sequence[float]) -> str:
    """``'log'`` when the positive finite losses span at least a decade, else ``'linear'``."""
    values = [v for v in losses if math.isfinite(v) and v > 0]
    return "log" if values and max(values) >= 10 * min(values) else "linear"


def write_figure(history: History, path: str, title: str = "") -> bool:
    """Training curves and residual traces as a PNG; ``False`` when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = figure(history, title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def figure(history: History, title: str = "") -> Any:
    """The matplotlib figure of :func:`write_figure`: loss (log scale only when it spans a
    decade), train and test accuracy against whole epochs, and the forward residual traces.
    Needs matplotlib."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history.train_loss) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot(epochs, history.train_loss, marker="o")
    axes[0].set(xlabel="epoch", ylabel="training loss (cross entropy)", title="loss",
                yscale=loss_scale(history.train_loss))
    if loss_scale(history.train_loss) == "linear":
        axes[0].set_ylim(bottom=0)
    axes[1].plot(epochs, history.train_accuracy, marker="o", label="train")
    axes[1].plot(epochs, history.test_accuracy, marker="s", label="test")
    accuracies = [v for v in (*history.train_accuracy, *history.test_accuracy)
                  if math.isfinite(v)]
    # From the tenth below the lowest accuracy (not from 0: late epochs differ by < 1 %).
    low = max(0.0, math.floor(10 * min(accuracies, default=0.0) - 0.2) / 10)
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(low, 1.005))
    axes[1].legend(loc="lower right")
    for axis in axes[:2]:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlim(0.5, len(epochs) + 0.5)
    traces = history.residual_traces
    if traces is not None:
        steps = np.arange(1, traces.shape[1] + 1)
        for row in traces[:64]:
            # A converged sample is frozen and its trace repeats: draw it up to its last move.
            moves = np.flatnonzero(np.diff(row))
            end = moves[-1] + 2 if moves.size else 1
            axes[2].plot(steps[:end], np.maximum(row[:end], 1e-16), color="tab:blue",
                         alpha=0.25, lw=1)
    axes[2].set(xlabel="solver iteration", ylabel="||f(z) - z||", yscale="log",
                title="forward residual per test sample (final model)")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
