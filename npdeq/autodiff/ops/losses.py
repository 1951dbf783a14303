"""Loss functions with PyTorch's conventions: ``cross_entropy`` (logits and integer labels)
and ``mse_loss``, as composites of the tape's primitives.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops.reductions import log_softmax, mean, sum
from npdeq.autodiff.ops.util import raw
from npdeq.autodiff.tensor import Tensor

__all__ = ["cross_entropy", "mse_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def reduce_loss(per_item: Tensor, reduction: str, what: str) -> Tensor:
    if reduction == "mean":
        if per_item.size == 0:
            # PyTorch returns NaN, which then silently poisons every parameter it reaches.
            raise ValueError(f"{what}: reduction='mean' of an empty batch (shape "
                             f"{tuple(per_item.shape)}) is undefined; use reduction='sum' "
                             "(0 for no items) or 'none'")
        return mean(per_item)
    if reduction == "sum":
        return sum(per_item)
    return per_item


def check_reduction(reduction: str, what: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{what}: reduction={reduction!r} is not one of {_REDUCTIONS}")


def cross_entropy(logits: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy with integer class labels, as ``torch.nn.functional.cross_entropy``.

    ``loss[b] = logsumexp(logits[b]) - logits[b, target[b]]``, computed through a one-hot
    matrix (no data-dependent indexing, so it runs in every array namespace). The labels are
    checked to lie in ``[0, C)``, which reads two scalars back to the host.

    Args:
        logits: ``(B, C)`` floating-point Tensor or array.
        target: ``(B,)`` integer array (or Tensor) of class indices in ``[0, C)``.
        reduction: ``'mean'`` (over the batch), ``'sum'`` or ``'none'`` (shape ``(B,)``).

    Returns:
        Scalar Tensor, or ``(B,)`` for ``reduction='none'``.

    Raises:
        ValueError: wrong shapes, labels out of range, an unknown ``reduction``, or
            ``reduction='mean'`` of an empty batch (undefined; PyTorch returns NaN, which
            would silently spread to every parameter; ``'sum'`` gives 0).
        TypeError: non-integer labels.

    Example:
        >>> import numpy as np, npdeq
        >>> loss = npdeq.cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
        >>> round(float(loss.data), 6)  # log(4)
        1.386294
    """
    check_reduction(reduction, "cross_entropy")
    labels = raw(target)
    shape = tuple(logits.shape)
    if len(shape) != 2:
        raise ValueError(f"cross_entropy: logits must have shape (B, C), got shape {shape}")
    if not hasattr(labels, "shape") or tuple(labels.shape) != shape[:1]:
        raise ValueError(f"cross_entropy: target must have shape ({shape[0]},) for logits of "
                         f"shape {shape}, got {getattr(labels, 'shape', type(labels).__name__)}")
    xp = backend.check_same_namespace([raw(logits), labels], "cross_entropy")
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype "
                        f"{labels.dtype}")
    if shape[0]:
        low, high = backend.to_scalar(xp.min(labels)), backend.to_scalar(xp.max(labels))
        if low < 0 or high >= shape[1]:
            raise ValueError(f"cross_entropy: target labels must lie in [0, {shape[1]}), got "
                             f"values from {low} to {high}")
    classes = xp.arange(shape[1], device=backend.device(labels))
    onehot = xp.astype(xp.astype(labels, classes.dtype)[:, None] == classes[None, :],
                       raw(logits).dtype)
    if not isinstance(logits, Tensor):
        # A raw array on the left of a Tensor operator is not deferred by every namespace.
        logits = Tensor(logits)
    per_item = -sum(log_softmax(logits, axis=1) * onehot, axis=1)
    return reduce_loss(per_item, reduction, "cross_entropy")


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error, as ``torch.nn.functional.mse_loss``.

    Args:
        input: Tensor or array, any shape.
        target: same shape as ``input`` (a Tensor may require a gradient too).
        reduction: ``'mean'`` (over all elements), ``'sum'`` or ``'none'`` (elementwise).

    Returns:
        Scalar Tensor, or the elementwise squared errors for ``reduction='none'``.

    Raises:
        ValueError: shapes that differ, an unknown ``reduction``, or ``reduction='mean'``
            of an empty input (undefined; ``'sum'`` gives 0).

    Example:
        >>> import numpy as np, npdeq
        >>> float(npdeq.mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0])).data)
        5.0
    """
    check_reduction(reduction, "mse_loss")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"mse_loss: input shape {tuple(input.shape)} and target shape "
                         f"{tuple(target.shape)} differ (broadcasting is not applied)")
    if not isinstance(input, Tensor):
        # A raw array on the left of a Tensor operator is not deferred by every namespace.
        input = Tensor(input)
    diff = input - target
    return reduce_loss(diff * diff, reduction, "mse_loss")
