"""The base class of the learning-rate schedules, PyTorch's ``LRScheduler``, and the checks
every schedule shares. The schedules themselves are in :mod:`npdeq.optim.lr_scheduler`.
"""

from __future__ import annotations

from typing import Any

from npdeq.backend.checks import check_int, check_real
from npdeq.optim.optimizer import Optimizer

__all__ = ["LRScheduler", "check_optimizer", "per_group"]


def check_optimizer(optimizer: Any, owner: str) -> Optimizer:
    """``optimizer``, checked to be an :class:`Optimizer` (else TypeError naming ``owner``)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{owner}: optimizer must be an npdeq.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    return optimizer


def per_group(value: Any, optimizer: Optimizer, name: str, owner: str) -> list[Any]:
    """A setting given once or one per parameter group, as a list of one per group (else
    ValueError)."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(f"{owner}: expected {groups} {name} (one per parameter group), "
                             f"got {len(value)}")
        return list(value)
    return [value] * groups


class LRScheduler:
    """Base class of the schedules (PyTorch's ``LRScheduler``).

    The epoch-driven schedules define :meth:`get_lr`, the groups' rates at ``last_epoch``;
    :class:`~npdeq.optim.lr_scheduler.ReduceLROnPlateau` has its own ``__init__`` and
    ``step(metrics)``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` to set.
        last_epoch: the index of the last epoch when resuming (``-1``: start afresh; else
            every group must hold ``'initial_lr'``, as PyTorch).

    Raises:
        TypeError: ``optimizer`` is not an :class:`~npdeq.optim.Optimizer`.
        ValueError: a bad ``last_epoch``, or resuming without ``'initial_lr'``.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        owner = type(self).__name__
        self.optimizer = check_optimizer(optimizer, owner)
        last_epoch = check_int("last_epoch", last_epoch, -1, owner=owner)
        for index, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise ValueError(f"{owner}: last_epoch={last_epoch} resumes a schedule, but "
                                 f"parameter group {index} has no 'initial_lr' (build the "
                                 "schedule with last_epoch=-1 first, or set it)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> list[float]:
        """The rate of each group at ``last_epoch``."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The rates the last :meth:`step` (or the constructor) set, one per group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set every group's ``lr``.

        Raises:
            ValueError: a computed rate that is negative or not finite (nothing is set).
        """
        self.last_epoch += 1
        owner = type(self).__name__
        lrs = [check_real(f"the learning rate of group {i}", lr, 0.0, owner=owner)
               for i, lr in enumerate(self.get_lr())]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (PyTorch's convention)."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.__dict__.update(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"
