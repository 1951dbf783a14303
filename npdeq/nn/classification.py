"""``nll_loss`` and ``cross_entropy`` with PyTorch's full signatures (class weights,
``ignore_index``, ``label_smoothing``, probability targets, ``(N, C, d1, ...)`` inputs), for
:mod:`npdeq.nn.functional`, which re-exports them.

Class indices are turned into a one-hot matrix (no data-dependent indexing, so this runs in
every namespace); the labels are checked to lie in ``[0, C)`` (or equal ``ignore_index``),
which reads two scalars back to the host.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff import ops
from npdeq.autodiff.ops.losses import check_reduction
from npdeq.autodiff.ops.util import as_operand, raw
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_int, check_real

__all__ = ["nll_loss", "cross_entropy", "check_no_legacy"]


def check_no_legacy(size_average: Any, reduce: Any, what: str) -> None:
    """Refuse PyTorch's deprecated ``size_average``/``reduce`` loss arguments, naming
    ``reduction`` (``what``: the function or class, for the message)."""
    if size_average is not None or reduce is not None:
        raise ValueError(f"{what}: size_average and reduce are PyTorch's deprecated "
                         "arguments; use reduction='mean', 'sum' or 'none'")


def _classes_last(x: Tensor, what: str) -> tuple[Tensor, tuple[int, ...]]:
    """``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` as ``(M, C)`` rows; and the shape of one
    loss per row (``()``, ``(N,)``, ``(N, d1, ...)``)."""
    shape = tuple(x.shape)
    if not shape:
        raise ValueError(f"{what}: input must have a class axis, shape (C,), (N, C) or "
                         f"(N, C, d1, ...), got a 0-d input")
    if len(shape) == 1:
        return ops.reshape(x, (1, shape[0])), ()
    if len(shape) == 2:
        return x, shape[:1]
    moved = ops.permute(x, (0, *range(2, len(shape)), 1))
    return ops.reshape(moved, (-1, shape[1])), (shape[0], *shape[2:])


def _check_weight(weight: Any, classes: int, what: str) -> None:
    if weight is not None and tuple(getattr(weight, "shape", ())) != (classes,):
        raise ValueError(f"{what}: weight must have shape ({classes},), one per class, got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")


def _onehot(target: Any, out_shape: tuple[int, ...], classes: int, ignore_index: int,
            like: Any, what: str) -> Any:
    """The ``(M, C)`` one-hot rows of the labels, zero rows where ``ignore_index``."""
    labels = raw(target)
    if not hasattr(labels, "shape") or tuple(labels.shape) != out_shape:
        raise ValueError(f"{what}: target must have shape {out_shape} of class indices for "
                         f"an input with {classes} classes, got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    xp = backend.check_same_namespace([like, labels], what)
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"{what}: target must hold integer class indices (or, for "
                        f"cross_entropy, probabilities of the input's shape), got dtype "
                        f"{labels.dtype}")
    labels = xp.reshape(labels, (-1,))
    valid = labels != ignore_index
    if labels.shape[0]:
        kept = xp.where(valid, labels, xp.zeros_like(labels))
        low, high = backend.to_scalar(xp.min(kept)), backend.to_scalar(xp.max(kept))
        if low < 0 or high >= classes:
            raise ValueError(f"{what}: target labels must lie in [0, {classes}) or equal "
                             f"ignore_index={ignore_index}, got values from {low} to {high}")
    index = xp.arange(classes, device=backend.device(labels))
    hits = (xp.astype(labels, index.dtype)[:, None] == index[None, :]) & valid[:, None]
    return xp.astype(hits, like.dtype)


def _weighted_rows(onehot: Any, weight: Any) -> Any:
    """The one-hot rows scaled by each class's weight (a Tensor weight stays on the tape)."""
    return onehot if weight is None else ops.mul(onehot, weight)


def _finish(per_row: Tensor, row_weight: Any, reduction: str, out_shape: tuple[int, ...],
            what: str) -> Tensor:
    if reduction == "none":
        return ops.reshape(per_row, out_shape)
    if reduction == "sum":
        return ops.sum(per_row)
    total = ops.sum(row_weight) if isinstance(row_weight, Tensor) else Tensor(
        backend.array_namespace(row_weight).sum(row_weight))
    if not backend.to_scalar(raw(total)) != 0:
        # PyTorch returns NaN, which then silently poisons every parameter it reaches.
        raise ValueError(f"{what}: reduction='mean' has nothing to average (an empty batch, "
                         "every target equal to ignore_index, or a zero total weight); use "
                         "reduction='sum' or 'none'")
    return ops.sum(per_row) / total


def _class_loss(logp: Tensor, target: Any, weight: Any, ignore_index: Any, reduction: str,
                smoothing: float, what: str) -> Tensor:
    rows, out_shape = _classes_last(logp, what)
    classes = rows.shape[1]
    _check_weight(weight, classes, what)
    ignore_index = check_int("ignore_index", ignore_index, owner=what)
    onehot = _onehot(target, out_shape, classes, ignore_index, raw(rows), what)
    picked = _weighted_rows(onehot, weight)  # w[t] at the target's class, 0 elsewhere
    per_row = -ops.sum(rows * picked, axis=1)
    if smoothing:
        # PyTorch: (1 - e) * nll + e / C * sum_c w_c (-log p_c), over the kept rows, with
        # the same denominator.
        xp = backend.array_namespace(onehot)
        kept = xp.sum(onehot, axis=1)
        spread = rows if weight is None else rows * ops.reshape(weight, (1, classes))
        smooth = -ops.sum(spread, axis=1) * kept
        per_row = per_row * (1.0 - smoothing) + smooth * (smoothing / classes)
    return _finish(per_row, ops.sum(picked, axis=1) if isinstance(picked, Tensor)
                   else backend.array_namespace(picked).sum(picked, axis=1),
                   reduction, out_shape, what)


def nll_loss(input: Any, target: Any, weight: Any = None, size_average: Any = None,
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices, as ``torch.nn.functional.nll_loss``:
    ``loss[i] = -weight[t_i] * input[i, t_i]``, 0 where ``t_i == ignore_index``.

    Args:
        input: log-probabilities, ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: integer class indices, ``(N,)``, ``(N, d1, ...)`` or ``()``.
        weight: ``(C,)`` class weights, or None.
        size_average, reduce: PyTorch's deprecated arguments; must be None.
        ignore_index: a label whose entries contribute nothing (nor to the mean's weight).
        reduction: ``'mean'`` (``sum(loss) / sum(weight[t_i])`` over kept entries),
            ``'sum'`` or ``'none'`` (the target's shape).

    Raises:
        ValueError: wrong shapes, labels out of range, an unknown ``reduction``, legacy
            arguments, or ``'mean'`` with nothing to average (PyTorch: NaN).
        TypeError: non-integer labels.

    Example:
        >>> import numpy as np
        >>> logp = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
        >>> round(float(nll_loss(logp, np.array([0, -100]))), 6)  # the second is ignored
        0.693147
    """
    check_no_legacy(size_average, reduce, "nll_loss")
    check_reduction(reduction, "nll_loss")
    return _class_loss(as_operand(input), target, weight, ignore_index, reduction, 0.0,
                       "nll_loss")


def cross_entropy(input: Any, target: Any, weight: Any = None, size_average: Any = None,
                  ignore_index: int = -100, reduce: Any = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of logits, as ``torch.nn.functional.cross_entropy``:
    :func:`nll_loss` of ``log_softmax(input, dim=1)`` for class indices, or
    ``-sum_c weight[c] target[i, c] log_softmax(input)[i, c]`` for class probabilities (a
    floating ``target`` of the input's shape; ``'mean'`` divides by the number of rows).

    Args:
        input: logits, ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices (integers, the input's shape without the class axis) or
            probabilities (floating, the input's shape).
        weight: ``(C,)`` class weights, or None.
        size_average, reduce: PyTorch's deprecated arguments; must be None.
        ignore_index: a label that contributes nothing (class indices only).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        label_smoothing: ``e`` in ``[0, 1]``: the target is mixed with the uniform
            distribution, ``(1 - e) * target + e / C``.

    Raises:
        ValueError: as :func:`nll_loss`; a bad ``label_smoothing``; ``ignore_index`` with
            probability targets.
        TypeError: labels that are neither integers nor floating point.

    Example:
        >>> import numpy as np
        >>> round(float(cross_entropy(np.zeros((2, 4)), np.array([0, 3]))), 6)  # log(4)
        1.386294
        >>> round(float(cross_entropy(np.zeros((1, 2)), np.array([1]),
        ...                           label_smoothing=0.2)), 6)
        0.693147
    """
    what = "cross_entropy"
    check_no_legacy(size_average, reduce, what)
    check_reduction(reduction, what)
    smoothing = check_real("label_smoothing", label_smoothing, 0.0, 1.0, owner=what)
    x = as_operand(input)
    logp = ops.log_softmax(x, axis=1 if x.ndim > 1 else 0)
    labels = raw(target)
    xp = backend.array_namespace(x.data)
    if not (hasattr(labels, "dtype") and xp.isdtype(labels.dtype, "real floating")):
        return _class_loss(logp, target, weight, ignore_index, reduction, smoothing, what)
    # Class probabilities.
    if tuple(labels.shape) != tuple(x.shape):
        raise ValueError(f"{what}: probability targets must have the input's shape "
                         f"{tuple(x.shape)}, got {tuple(labels.shape)}")
    if ignore_index != -100:
        raise ValueError(f"{what}: ignore_index applies to class-index targets only, got "
                         f"ignore_index={ignore_index!r} with probability targets")
    rows, out_shape = _classes_last(logp, what)
    probs, _ = _classes_last(as_operand(target), what)
    classes = rows.shape[1]
    _check_weight(weight, classes, what)
    if smoothing:
        probs = probs * (1.0 - smoothing) + smoothing / classes
    if weight is not None:
        probs = probs * ops.reshape(weight, (1, classes))
    per_row = -ops.sum(rows * probs, axis=1)
    count = xp.ones(per_row.shape, dtype=x.data.dtype, device=backend.device(x.data))
    return _finish(per_row, count, reduction, out_shape, what)
