"""Learning-rate schedules, PyTorch's ``torch.optim.lr_scheduler``: ``LambdaLR``, ``StepLR``,
``MultiStepLR``, ``ExponentialLR``, ``CosineAnnealingLR`` and ``ReduceLROnPlateau``.

As PyTorch: building a schedule records each group's ``'initial_lr'`` and sets the rate of
step 0; :meth:`LRScheduler.step` (once per epoch, after ``optimizer.step()``) advances
``last_epoch`` and sets every group's ``lr``; :meth:`~LRScheduler.get_last_lr` lists the
rates last set; ``state_dict()``/``load_state_dict()`` save and restore everything but the
optimizer. ``StepLR``, ``MultiStepLR`` and ``ExponentialLR`` multiply the groups' current
rates (PyTorch's chainable form: two schedules on one optimizer compose). Every rate a
schedule sets is checked (finite, >= 0), so a ``lr_lambda`` returning NaN raises at the
step that computes it.
"""

from __future__ import annotations

import math
import types
from collections import Counter
from typing import Any, Callable, Sequence

from npdeq.backend.checks import check_int, check_real
from npdeq.optim.optimizer import Optimizer
from npdeq.optim.plateau import ReduceLROnPlateau
from npdeq.optim.scheduler import LRScheduler, check_optimizer, per_group

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR",
           "CosineAnnealingLR", "ReduceLROnPlateau"]


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)``, one function or one per group.

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the epoch index, or a list of them (one per group).
        last_epoch: see :class:`LRScheduler`.

    ``state_dict()`` keeps ``lr_lambda`` objects that carry state (callable objects) and
    leaves out plain functions and lambdas, as PyTorch.

    Raises:
        TypeError: a ``lr_lambda`` that is not callable.
        ValueError: a list of the wrong length.

    Example:
        >>> import numpy as np, npdeq
        >>> opt = npdeq.optim.SGD([npdeq.nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = LambdaLR(opt, lambda epoch: 0.5 ** epoch)
        >>> opt.step(); sched.step(); sched.get_last_lr()
        [0.5]
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Any],
                 last_epoch: int = -1) -> None:
        check_optimizer(optimizer, "LambdaLR")
        lambdas = per_group(lr_lambda, optimizer, "lr_lambdas", "LambdaLR")
        for index, fn in enumerate(lambdas):
            if not callable(fn):
                raise TypeError(f"LambdaLR: lr_lambda {index} must be callable, got "
                                f"{type(fn).__name__}")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        self.__dict__.update(state)
        for fn, fields in zip(self.lr_lambdas, saved):
            if fields is not None:
                fn.__dict__.update(fields)


class StepLR(LRScheduler):
    """Multiply every group's rate by ``gamma`` every ``step_size`` epochs.

    Args:
        optimizer: the optimizer.
        step_size: epochs between decays (an int >= 1).
        gamma: the factor (finite, >= 0).
        last_epoch: see :class:`LRScheduler`.

    Raises:
        ValueError: a bad ``step_size`` or ``gamma`` (named with its value).

    Example:
        >>> import numpy as np, npdeq
        >>> opt = npdeq.optim.SGD([npdeq.nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = StepLR(opt, step_size=2, gamma=0.1)
        >>> [(sched.step(), round(sched.get_last_lr()[0], 6))[1] for _ in range(4)]
        [1.0, 0.1, 0.1, 0.01]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = check_int("step_size", step_size, 1, owner="StepLR")
        self.gamma = check_real("gamma", gamma, 0.0, owner="StepLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return [group["lr"] for group in groups]
        return [group["lr"] * self.gamma for group in groups]


class MultiStepLR(LRScheduler):
    """Multiply every group's rate by ``gamma`` at each epoch listed in ``milestones``
    (a milestone listed twice decays twice, as PyTorch).

    Args:
        optimizer: the optimizer.
        milestones: epoch indices (ints >= 0).
        gamma: the factor (finite, >= 0).
        last_epoch: see :class:`LRScheduler`.

    Raises:
        ValueError: a bad milestone or ``gamma``.

    Example:
        >>> import numpy as np, npdeq
        >>> opt = npdeq.optim.SGD([npdeq.nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = MultiStepLR(opt, milestones=[1, 3], gamma=0.5)
        >>> [(sched.step(), sched.get_last_lr()[0])[1] for _ in range(4)]
        [0.5, 0.5, 0.25, 0.25]
    """

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = Counter(check_int(f"milestones[{i}]", m, 0, owner="MultiStepLR")
                                  for i, m in enumerate(milestones))
        self.gamma = check_real("gamma", gamma, 0.0, owner="MultiStepLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = self.gamma ** self.milestones.get(self.last_epoch, 0)
        return [group["lr"] * factor for group in self.optimizer.param_groups]


class ExponentialLR(LRScheduler):
    """Multiply every group's rate by ``gamma`` every epoch.

    Args:
        optimizer: the optimizer.
        gamma: the factor (finite, >= 0).
        last_epoch: see :class:`LRScheduler`.

    Example:
        >>> import numpy as np, npdeq
        >>> opt = npdeq.optim.SGD([npdeq.nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = ExponentialLR(opt, gamma=0.5)
        >>> sched.step(); sched.step(); sched.get_last_lr()
        [0.25]
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_real("gamma", gamma, 0.0, owner="ExponentialLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """Cosine schedule: ``lr_t = eta_min + (lr_0 - eta_min)(1 + cos(pi t/T_max))/2``.

    Call :meth:`step` once per epoch (or per batch, with ``T_max`` counted in batches).
    Unlike PyTorch's, whose rate climbs back up after ``T_max`` (it is periodic), the rate
    stays at ``eta_min`` after ``T_max`` steps (use :class:`LambdaLR` for restarts).
    Optional linear warm-up over the first ``warmup`` steps (an npdeq addition; 0: none,
    PyTorch's schedule).

    Args:
        optimizer: the optimizer whose groups' ``lr`` to set.
        T_max: steps in one half cosine period (an int >= 1).
        eta_min: the final learning rate (finite, >= 0).
        last_epoch: see :class:`LRScheduler`.
        warmup: steps of linear warm-up from ``lr_0 / warmup`` (an int >= 0; keyword only).

    Raises:
        ValueError: ``T_max < 1``, a negative ``warmup``, an ``eta_min`` that is negative or
            not finite, or any of them of the wrong type (named with its value).
        TypeError: ``optimizer`` is not an :class:`~npdeq.optim.Optimizer`.

    Example:
        >>> import numpy as np, npdeq
        >>> opt = npdeq.optim.SGD([npdeq.nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = CosineAnnealingLR(opt, T_max=2)
        >>> [(sched.step(), round(sched.get_last_lr()[0], 3))[1] for _ in range(3)]
        [0.5, 0.0, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1, *, warmup: int = 0) -> None:
        owner = "CosineAnnealingLR"
        check_optimizer(optimizer, owner)
        self.T_max = check_int("T_max", T_max, 1, owner=owner)
        self.warmup = check_int("warmup", warmup, 0, owner=owner)
        self.eta_min = check_real("eta_min", eta_min, 0.0, owner=owner)
        super().__init__(optimizer, last_epoch)

    @property
    def last_step(self) -> int:
        """``last_epoch`` (this schedule's earlier name for it)."""
        return self.last_epoch

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        if t < self.warmup:
            return [base * (t + 1) / self.warmup for base in self.base_lrs]
        t = min(t - self.warmup, self.T_max)
        scale = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * scale for base in self.base_lrs]
