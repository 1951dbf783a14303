"""Loss modules, PyTorch's ``torch.nn`` loss classes: each holds its settings and calls the
function of the same name in :mod:`npdeq.nn.functional` (same arguments, same checks).
"""

from __future__ import annotations

from typing import Any

from npdeq.autodiff.ops.losses import check_reduction
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_int, check_real
from npdeq.nn import functional as F
from npdeq.nn.classification import check_no_legacy
from npdeq.nn.module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss"]


class _Loss(Module):
    def __init__(self, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        name = type(self).__name__
        check_no_legacy(size_average, reduce, name)
        check_reduction(reduction, name)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class _WeightedLoss(_Loss):
    def __init__(self, weight: Any = None, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        # A constant, as PyTorch's registered buffer: saved and moved with the module.
        self.register_buffer("weight", weight.data if isinstance(weight, Tensor) else weight)


class CrossEntropyLoss(_WeightedLoss):
    """:func:`npdeq.nn.functional.cross_entropy` as a module (logits and class indices or
    probabilities).

    Args:
        weight: ``(C,)`` class weights (a buffer), or None.
        size_average, reduce: PyTorch's deprecated arguments; must be None.
        ignore_index: a label that contributes nothing.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        label_smoothing: in ``[0, 1]``.

    Raises:
        ValueError: a bad setting (named), here rather than at the first call.

    Example:
        >>> import numpy as np
        >>> loss = CrossEntropyLoss()(np.zeros((2, 4)), np.array([0, 3]))
        >>> round(float(loss), 6)
        1.386294
    """

    def __init__(self, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
                 reduce: Any = None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = check_int("ignore_index", ignore_index, owner="CrossEntropyLoss")
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0.0, 1.0,
                                          owner="CrossEntropyLoss")

    def forward(self, input: Any, target: Any) -> Tensor:
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """:func:`npdeq.nn.functional.nll_loss` as a module (log-probabilities and class
    indices); arguments as :class:`CrossEntropyLoss` without ``label_smoothing``."""

    def __init__(self, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
                 reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = check_int("ignore_index", ignore_index, owner="NLLLoss")

    def forward(self, input: Any, target: Any) -> Tensor:
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class MSELoss(_Loss):
    """:func:`npdeq.nn.functional.mse_loss` as a module.

    Example:
        >>> import numpy as np
        >>> float(MSELoss(reduction="sum")(np.array([1.0, 2.0]), np.zeros(2)))
        5.0
    """

    def forward(self, input: Any, target: Any) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """:func:`npdeq.nn.functional.l1_loss` as a module."""

    def forward(self, input: Any, target: Any) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)
