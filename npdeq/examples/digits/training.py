"""The demo's training loop: mini-batch training of a DEQ classifier with per-epoch metrics.

One step: ``reset_deq`` (fresh normalised weights and dropout masks), forward solve, cross
entropy, backward (IFT or PhantomGrad), optimizer step. After each epoch the model is
evaluated on the held-out set in eval mode, and one line reports the epoch (loss, train and
test accuracy, forward iterations, residual, time). A progress bar (tqdm, optional) runs
during an epoch only when both stdout and stderr are terminals with a nonzero width; in a
file, a pipe, CI or a 0-column terminal only the per-epoch lines are printed. Everything the
report needs is collected in :class:`History`.

With a communicator (``npdeq.distributed``, ``mpiexec -n N npdeq demo``) the same loop runs
on every rank: rank 0's parameters are broadcast, each rank takes its share of every batch
(:class:`~npdeq.distributed.DistributedSampler`), gradients are averaged before each step
(:class:`~npdeq.distributed.DistributedOptimizer`), and the epoch's figures (loss, accuracy,
solver statistics, the test set evaluated in shards) are reduced over all ranks
(:mod:`npdeq.examples.digits.parallel`). The progress bar needs tqdm (optional).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

import npdeq
from npdeq import backend, optim
from npdeq.autodiff import cross_entropy, no_grad
from npdeq.backend import Array
from npdeq.examples.digits.data import Digits, batches

__all__ = ["Settings", "History", "train", "evaluate", "epoch_line", "terminal_width"]


@dataclasses.dataclass(slots=True)
class Settings:
    """What :func:`train` needs besides the model and the data."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    seed: int = 0
    progress: bool = True  # a bar during each epoch, if the terminal can show one


@dataclasses.dataclass(slots=True)
class History:
    """Per-epoch metrics (lists of floats, one entry per epoch) and the final residual traces."""

    train_loss: list = dataclasses.field(default_factory=list)
    train_accuracy: list = dataclasses.field(default_factory=list)
    test_accuracy: list = dataclasses.field(default_factory=list)
    epoch_seconds: list = dataclasses.field(default_factory=list)
    forward_iterations: list = dataclasses.field(default_factory=list)
    backward_iterations: list = dataclasses.field(default_factory=list)
    forward_residual: list = dataclasses.field(default_factory=list)
    converged_fraction: list = dataclasses.field(default_factory=list)
    test_converged_fraction: list = dataclasses.field(default_factory=list)
    largest_residual: list = dataclasses.field(default_factory=list)
    residual_traces: Any = None  # (samples, iterations) host array from the last evaluation


def _on(xp: Any, device: Any, a: np.ndarray) -> Array:
    return backend.move_array(a, xp, device)


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def evaluate(model: npdeq.nn.Module, x: Array, y: np.ndarray, batch_size: int = 512,
             comm: Any = None) -> tuple[float, float, np.ndarray]:
    """Accuracy, converged fraction and forward residual traces on ``(x, y)`` in eval mode.

    Args:
        model: ``model(x) -> (logits, info)``.
        x: images ``(N, 64)`` in the model's namespace and device.
        y: labels ``(N,)`` (host).
        batch_size: evaluation chunk size.
        comm: a communicator: each rank evaluates every ``size``-th image from its rank
            on, and the counts are summed over the ranks (the traces are each rank's own).

    Returns:
        ``(accuracy, converged fraction, residual traces (N, iterations) of the first chunk)``.
    """
    if comm is not None:
        x, y = x[comm.rank::comm.size], y[comm.rank::comm.size]
    model.eval()
    # Normalised weights anew, detached: the last training step's backward freed their graph,
    # which the eval-mode Jacobian term (with --jac-reg) would otherwise walk into.
    with no_grad():
        npdeq.reset_deq(model)
    correct, converged, traces = 0, 0, None
    with no_grad(), warnings.catch_warnings():
        # Unconverged test samples are counted in the returned rate instead.
        warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
        for start in range(0, y.shape[0], batch_size):
            logits, info = model(x[start:start + batch_size])
            predicted = backend.to_numpy(logits.data).argmax(axis=1)
            correct += int((predicted == y[start:start + batch_size]).sum())
            converged += int(backend.to_numpy(info["converged"]).sum())
            if traces is None:
                traces = backend.to_numpy(info["abs_trace"])
    model.train()
    seen = y.shape[0]
    if comm is not None:
        from npdeq.distributed import reduce_scalars
        total = reduce_scalars(comm, {"correct": correct, "converged": converged, "seen": seen})
        correct, converged, seen = total["correct"], total["converged"], total["seen"]
    return correct / seen, converged / seen, traces


@dataclasses.dataclass(slots=True)
class EpochTally:
    """One epoch's running figures on this rank: per-batch losses and solver statistics
    (mean forward and backward iterations, mean residual), and counts over the samples."""

    losses: list = dataclasses.field(default_factory=list)
    forward: list = dataclasses.field(default_factory=list)
    backward: list = dataclasses.field(default_factory=list)
    residual: list = dataclasses.field(default_factory=list)
    correct: int = 0
    seen: int = 0
    converged: int = 0
    largest: float = 0.0

    def add(self, loss: float, correct: int, seen: int, info: dict) -> None:
        """Count one batch: its loss, correct predictions, size and the solver's ``info``."""
        self.losses.append(loss)
        self.correct += correct
        self.seen += seen
        self.forward.append(float(backend.to_numpy(info["nstep"]).mean()))
        lowest = backend.to_numpy(info["abs_lowest"])
        self.residual.append(float(lowest.mean()))
        self.largest = max(self.largest, float(lowest.max()))
        self.converged += int(backend.to_numpy(info["converged"]).sum())
        if info.get("backward") is not None:
            self.backward.append(float(backend.to_numpy(info["backward"]["nstep"]).mean()))

    def figures(self, n: int, seconds: float) -> dict[str, float]:
        """The epoch's figures over ``n`` training samples (one process)."""
        return dict(loss=_mean(self.losses), accuracy=self.correct / n, seconds=seconds,
                    forward=_mean(self.forward), backward=_mean(self.backward),
                    residual=_mean(self.residual), converged=self.converged / n,
                    largest=self.largest)

    def show(self, bar: Any) -> None:
        """Advance the progress bar (if any) by this batch, with the running figures."""
        if bar is None:
            return
        # Accuracy so far in this epoch (over the samples seen), not progress.
        bar.set_postfix(loss=f"{self.losses[-1]:.3f}", acc=f"{self.correct / self.seen:.3f}",
                        fwd=f"{self.forward[-1]:.1f}", res=f"{self.residual[-1]:.1e}",
                        refresh=False)  # drawn by update, with this batch's count
        bar.update(1)


def _step(model: npdeq.nn.Module, optimizer: Any, x: Array, y: Array,
          jacobian_weight: float) -> tuple[float, Any, dict]:
    """One training step on a batch: fresh normalised weights, forward solve, loss,
    backward, update. Returns ``(loss, logits, info)``."""
    npdeq.reset_deq(model)
    logits, info = model(x)
    loss = cross_entropy(logits, y)
    jacobian_loss = info["solution"].jacobian_loss
    if jacobian_loss is not None:  # --jac-reg: keeps f contractive while it learns
        loss = loss + jacobian_weight * jacobian_loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), logits, info


def _record(history: History, figures: dict[str, float], accuracy: float,
            test_converged: float, traces: Any) -> None:
    """Append one epoch's training figures and test evaluation to ``history``."""
    for field, key in (("train_loss", "loss"), ("train_accuracy", "accuracy"),
                       ("epoch_seconds", "seconds"), ("forward_iterations", "forward"),
                       ("backward_iterations", "backward"), ("forward_residual", "residual"),
                       ("largest_residual", "largest"), ("converged_fraction", "converged")):
        getattr(history, field).append(figures[key])
    history.test_accuracy.append(accuracy)
    history.test_converged_fraction.append(test_converged)
    history.residual_traces = traces


def train(model: npdeq.nn.Module, data: Digits, settings: Settings, xp: Any = None,
          device: Any = None, log: Callable[[str], None] = print, comm: Any = None) -> History:
    """Train ``model`` on ``data`` with AdamW and a cosine schedule.

    Args:
        model: the classifier (already on ``xp``/``device``).
        data: the split (host arrays).
        settings: epochs, batch size, learning rate, weight decay, seed, progress bar
            (shown only when :func:`terminal_width` is nonzero for stdout and stderr).
        xp, device: where the model lives (default NumPy).
        log: where the per-epoch line goes (always printed, with or without a bar).
        comm: a communicator (:func:`npdeq.distributed.create_communicator`) to train
            data-parallel: each rank takes ``batch_size // size`` samples of every batch
            (the global batch stays ``batch_size``); the figures are over all ranks.

    Returns:
        The :class:`History`.
    """
    xp = xp or backend.default_namespace()
    x_train, x_test = _on(xp, device, data.x_train), _on(xp, device, data.x_test)
    y_train = _on(xp, device, data.y_train)
    optimizer = optim.AdamW(model.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)
    schedule = optim.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    jacobian_weight = _jacobian_weight(model)
    rng = np.random.default_rng(settings.seed)
    history = History()
    n = data.y_train.shape[0]
    steps = -(-n // settings.batch_size)
    shards = None
    if comm is not None:
        from npdeq.examples.digits.parallel import Shards
        shards = Shards(model, optimizer, comm, n, settings.batch_size, settings.seed)
        optimizer, steps = shards.optimizer, shards.steps
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        tally = EpochTally()
        bar = _progress(settings.progress, steps, f"epoch {epoch + 1}/{settings.epochs}")
        epoch_batches = batches(n, settings.batch_size, rng) if shards is None else \
            shards.batches(epoch)
        with warnings.catch_warnings():
            # Early in training some samples miss the tolerance: that is reported in the
            # metrics (convergence rate), not as a warning per step.
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            for index in epoch_batches:
                key = _on(xp, device, index)
                loss, logits, info = _step(model, optimizer, x_train[key], y_train[key],
                                           jacobian_weight)
                predicted = backend.to_numpy(logits.data).argmax(axis=1)
                tally.add(loss, int((predicted == data.y_train[index]).sum()), index.shape[0],
                          info)
                tally.show(bar)
        schedule.step()
        seconds = time.perf_counter() - start
        # With a communicator, the same figures over every rank's batches.
        figures = tally.figures(n, seconds) if shards is None else \
            shards.reduce_epoch(tally, seconds)
        _record(history, figures, *evaluate(model, x_test, data.y_test, comm=comm))
        if bar is not None:
            bar.close()  # leave=False: the epoch's line below takes the bar's place
        log(epoch_line(history, epoch, settings.epochs))
    return history


def epoch_line(history: History, epoch: int, epochs: int) -> str:
    """The one-line result of epoch ``epoch`` (0-based) of ``epochs``."""
    return (f"epoch {epoch + 1}/{epochs}: loss {history.train_loss[epoch]:.4f}, "
            f"train accuracy {history.train_accuracy[epoch]:.4f}, "
            f"test accuracy {history.test_accuracy[epoch]:.4f}, "
            f"forward iterations {history.forward_iterations[epoch]:.1f}, "
            f"residual {history.forward_residual[epoch]:.1e}, "
            f"{history.epoch_seconds[epoch]:.2f} s")


def _jacobian_weight(model: npdeq.nn.Module) -> float:
    """The Jacobian-regularisation weight of the model's DEQ core (its ``jac_loss_weight``)."""
    for module in model.modules():
        if isinstance(module, npdeq.DEQBase):
            return module.args.get("jac_loss_weight")
    return 0.0


def terminal_width(stream: Any) -> int:
    """The width in columns of the terminal ``stream`` writes to; 0 when it is not a terminal
    (a file, a pipe, CI's log) or the terminal reports no width (a fresh pseudo-terminal)."""
    try:
        if not stream.isatty():
            return 0
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # closed, replaced or fileno-less streams
        return 0


def _progress(enabled: bool, total: int, description: str) -> Any:
    """A tqdm bar on stderr, or ``None``: not asked for, no terminal to draw it on, or no
    tqdm (an optional extra). The per-epoch lines go to stdout, so both must be terminals."""
    if not enabled or not (terminal_width(sys.stdout) and terminal_width(sys.stderr)):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is an extra: without it the demo prints one line per epoch
        return None
    return tqdm(total=total, desc=description, leave=False, dynamic_ncols=True,
                file=sys.stderr)
