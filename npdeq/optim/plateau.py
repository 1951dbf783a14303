"""``ReduceLROnPlateau``: PyTorch's metric-driven schedule (``torch.optim.lr_scheduler``),
importable from :mod:`npdeq.optim.lr_scheduler`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_int, check_real
from npdeq.optim.optimizer import Optimizer
from npdeq.optim.scheduler import LRScheduler, check_optimizer, per_group

__all__ = ["ReduceLROnPlateau"]


def _metric(value: Any) -> float:
    """A scalar metric (Python or NumPy number, 0-d or one-element array or Tensor)."""
    data = value.data if isinstance(value, Tensor) else value
    if isinstance(data, (bool, str)) or data is None:
        raise TypeError(f"ReduceLROnPlateau.step: metrics must be a number, got "
                        f"{type(value).__name__}")
    try:
        xp = backend.array_namespace(data)
    except TypeError:
        try:
            return float(data)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: metrics must be a number, got "
                            f"{type(value).__name__}") from None
    size = math.prod(data.shape)
    if size != 1:
        raise ValueError(f"ReduceLROnPlateau.step: metrics must be one number, got an array "
                         f"of shape {tuple(data.shape)}")
    return float(backend.to_scalar(xp.reshape(data, ())))


class ReduceLROnPlateau(LRScheduler):
    """Reduce every group's rate by ``factor`` once a metric stops improving (PyTorch's
    rule, arguments and defaults).

    After each :meth:`step` with the epoch's metric: a metric better than the best so far
    (by ``threshold``) resets the count of bad epochs; more than ``patience`` bad epochs in a
    row multiply each rate by ``factor`` (not below ``min_lr``; changes smaller than ``eps``
    are skipped) and start ``cooldown`` epochs during which bad epochs are not counted. A
    NaN metric is never better, so it counts as a bad epoch.

    Args:
        optimizer: the optimizer.
        mode: ``'min'`` (a loss) or ``'max'`` (an accuracy).
        factor: the reduction factor, in ``[0, 1)``.
        patience: bad epochs tolerated before reducing (an int >= 0).
        threshold: the least improvement that counts (finite, >= 0).
        threshold_mode: ``'rel'`` (better than ``best * (1 -/+ threshold)``) or ``'abs'``
            (better than ``best -/+ threshold``).
        cooldown: epochs to wait after a reduction (an int >= 0).
        min_lr: a floor for every rate, or a list of one per group (finite, >= 0).
        eps: the smallest change of rate applied (finite, >= 0).

    Raises:
        ValueError: a bad argument (named with its value).
        TypeError: ``optimizer`` is not an :class:`~npdeq.optim.Optimizer`.

    Example:
        >>> import numpy as np, npdeq
        >>> opt = npdeq.optim.SGD([npdeq.nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = ReduceLROnPlateau(opt, patience=1, factor=0.5)
        >>> for loss in [3.0, 2.0, 2.0, 2.0, 2.0]:
        ...     sched.step(loss)
        >>> sched.get_last_lr()
        [0.5]
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | Sequence[float] = 0.0,
                 eps: float = 1e-8) -> None:
        # Not LRScheduler.__init__ (as PyTorch's): there is no 'initial_lr' to record and no
        # rule to step without a metric.
        owner = "ReduceLROnPlateau"
        self.optimizer = check_optimizer(optimizer, owner)
        if mode not in ("min", "max"):
            raise ValueError(f"{owner}: mode={mode!r} is not 'min' or 'max'")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{owner}: threshold_mode={threshold_mode!r} is not 'rel' or "
                             "'abs'")
        self.factor = check_real("factor", factor, 0.0, 1.0, high_open=True, owner=owner)
        self.min_lrs = [check_real(f"min_lr[{i}]" if isinstance(min_lr, (list, tuple))
                                   else "min_lr", m, 0.0, owner=owner)
                        for i, m in enumerate(per_group(min_lr, optimizer, "min_lr", owner))]
        self.patience = check_int("patience", patience, 0, owner=owner)
        self.cooldown = check_int("cooldown", cooldown, 0, owner=owner)
        self.threshold = check_real("threshold", threshold, 0.0, owner=owner)
        self.eps = check_real("eps", eps, 0.0, owner=owner)
        self.mode, self.threshold_mode = mode, threshold_mode
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` improves on ``best`` by the threshold."""
        if self.mode == "min":
            bound = best * (1 - self.threshold) if self.threshold_mode == "rel" else \
                best - self.threshold
            return a < bound
        bound = best * (1 + self.threshold) if self.threshold_mode == "rel" else \
            best + self.threshold
        return a > bound

    @property
    def in_cooldown(self) -> bool:
        """Whether bad epochs are being ignored after a reduction."""
        return self.cooldown_counter > 0

    def step(self, metrics: Any) -> None:
        """Record the epoch's metric and reduce the rates if it has stopped improving.

        Args:
            metrics: a number (a Python or NumPy scalar, or a one-element array or Tensor;
                reading it from a GPU array is a host synchronisation).

        Raises:
            TypeError, ValueError: ``metrics`` is not one number.
        """
        current = _metric(metrics)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, floor)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
