"""Reductions, cumulative sums and products, and the softmax family, each forward beside its
VJP rules.

``mean``, ``var``, ``std``, ``logsumexp``, ``softmax`` and ``log_softmax`` are composites of
the primitives here, so their gradients (of any order) come from the primitives' rules.
"""

from __future__ import annotations

import math
from typing import Any

from npdeq.autodiff.ops.elementwise import exp, log, sqrt, where
from npdeq.autodiff.ops.shape import broadcast_to, reshape, squeeze
from npdeq.autodiff.ops.util import as_operand, mask_like, normalize_axis, ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["sum", "mean", "var", "std", "max", "min", "prod", "cumsum", "cumprod", "logsumexp",
           "softmax", "log_softmax"]


def unreduce(g: Tensor, shape: tuple[int, ...], axis: Any, keepdims: bool) -> Tensor:
    """Reinsert reduced axes of ``g`` as size 1 so it broadcasts against ``shape``."""
    if keepdims:
        return g
    axes = normalize_axis(axis, len(shape))
    kept = tuple(1 if i in axes else s for i, s in enumerate(shape))
    return reshape(g, kept)


@primitive
def sum(a, axis=None, keepdims=False):
    xp = ns(a)
    return xp.sum(a, axis=axis, keepdims=keepdims, dtype=a.dtype)


def _sum_vjp(g, ans, a, axis=None, keepdims=False):
    return broadcast_to(unreduce(g, a.shape, axis, keepdims), a.shape)


defvjp(sum, _sum_vjp)


def _count(shape: tuple[int, ...], axis: Any) -> int:
    return math.prod(shape[i] for i in normalize_axis(axis, len(shape)))


def mean(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes by default)."""
    return sum(a, axis=axis, keepdims=keepdims) * (1.0 / _count(tuple(a.shape), axis))


def var(a: Tensor, axis: Any = None, keepdims: bool = False, correction: float = 0.0) -> Tensor:
    """Variance over ``axis``; ``correction=1`` gives the unbiased estimate."""
    a = as_operand(a)
    centred = a - mean(a, axis=axis, keepdims=True)
    n = _count(tuple(a.shape), axis)
    return sum(centred * centred, axis=axis, keepdims=keepdims) * (1.0 / (n - correction))


def std(a: Tensor, axis: Any = None, keepdims: bool = False, correction: float = 0.0) -> Tensor:
    """Standard deviation over ``axis``: ``sqrt(var(a, axis, keepdims, correction))``.

    Its gradient is infinite where the variance is zero (as in NumPy-based autodiff and
    PyTorch).
    """
    return sqrt(var(a, axis=axis, keepdims=keepdims, correction=correction))


def _extreme_vjp(g, ans, a, axis=None, keepdims=False):
    # The cotangent is shared equally among the positions that attain the extreme value.
    a_raw = raw(a)
    xp = ns(a_raw)
    hit = xp.astype(a_raw == raw(unreduce(ans, a_raw.shape, axis, keepdims)), a_raw.dtype)
    share = hit / xp.sum(hit, axis=axis, keepdims=True)
    return unreduce(g, a_raw.shape, axis, keepdims) * share


max = primitive(lambda a, axis=None, keepdims=False: ns(a).max(a, axis=axis, keepdims=keepdims),
                name="max")
defvjp(max, _extreme_vjp)

min = primitive(lambda a, axis=None, keepdims=False: ns(a).min(a, axis=axis, keepdims=keepdims),
                name="min")
defvjp(min, _extreme_vjp)


@primitive
def _prod(a, axis=None, keepdims=False):
    return ns(a).prod(a, axis=axis, keepdims=keepdims, dtype=a.dtype)


def prod(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Product over ``axis`` (all axes by default), NumPy's ``prod``.

    The gradient is exact with zeros in the input: with one zero in a reduced slice, the
    zero's entry is the product of the others and every other entry is 0; with two or more,
    all are 0. Gradients of gradients are exact with at most one zero per slice.

    Example:
        >>> import numpy as np, npdeq
        >>> x = npdeq.Tensor(np.array([2.0, 0.0, 3.0]), requires_grad=True)
        >>> npdeq.grad(npdeq.prod(x), [x])[0].numpy()
        array([0., 6., 0.])
    """
    if axis is not None:
        normalize_axis(axis, a.ndim)  # a clear error before the namespace's own
    return _prod(a, axis=axis, keepdims=keepdims)


def _prod_vjp(g, ans, a, axis=None, keepdims=False):
    # d prod / d a_i = prod / a_i where a_i != 0. At a zero, the product of the other
    # (nonzero) entries if it is the slice's only zero, else 0. The masks are constants; the
    # values are npdeq ops, so the rule differentiates again.
    a_raw = raw(a)
    xp = ns(a_raw)
    zero = a_raw == 0
    count = xp.sum(xp.astype(zero, a_raw.dtype), axis=axis, keepdims=True)
    safe = where(zero, 1.0, a)
    others = _prod(safe, axis=axis, keepdims=True) * xp.astype(count == 1, a_raw.dtype)
    return unreduce(g, a_raw.shape, axis, keepdims) * where(
        zero, others, unreduce(ans, a_raw.shape, axis, keepdims) / safe)


defvjp(_prod, _prod_vjp)


def _cumulative(a, axis, kind):
    xp = ns(a)
    fun = getattr(xp, f"cumulative_{kind}", None)
    if fun is None:  # a namespace older than the 2024.12 standard
        fun = getattr(xp, f"cum{kind}")
    return fun(a, axis=axis)


def _flip(a, axis):
    return ns(a).flip(a, axis=axis)


_cumsum = primitive(lambda a, axis: _cumulative(a, axis, "sum"), name="cumsum")
# Sums from the end: the adjoint of the cumulative sum, and the other way round.
_cumsum_reverse = primitive(
    lambda a, axis: _flip(_cumulative(_flip(a, axis), axis, "sum"), axis), name="cumsum")
defvjp(_cumsum, lambda g, ans, a, axis: _cumsum_reverse(g, axis))
defvjp(_cumsum_reverse, lambda g, ans, a, axis: _cumsum(g, axis))


def _cumprod_vjp(g, ans, a, axis):
    # d out_j / d a_i = prod_{k <= j, k != i} a_k for i <= j. Before a slice's first zero,
    # sum_{j >= i} g_j out_j / a_i (out_j is 0 from the zero on); at the first zero, the same
    # sum with that zero replaced by 1; after it (up to a second zero), that sum times the
    # zero, kept as a factor so the rule's own derivative sees it; after a second zero, 0.
    # Masks are constants, values npdeq ops.
    a_raw = raw(a)
    xp = ns(a_raw)
    zero = a_raw == 0
    zeros_so_far = _cumulative(xp.astype(zero, a_raw.dtype), axis, "sum")
    first = xp.logical_and(zero, zeros_so_far == 1)
    safe = where(zero, 1.0, a)
    before = _cumsum_reverse(g * ans, axis) / safe
    at_first = _cumsum_reverse(g * cumprod(where(first, 1.0, a), axis=axis), axis)
    pivot = sum(a * mask_like(first, a_raw), axis=axis, keepdims=True)
    after = xp.logical_and(zeros_so_far == 1, xp.logical_not(zero))
    return where(zeros_so_far == 0, before,
                 where(first, at_first, where(after, pivot * at_first / safe, 0.0)))


_cumprod = primitive(lambda a, axis: _cumulative(a, axis, "prod"), name="cumprod")
defvjp(_cumprod, _cumprod_vjp)


def _cumulative_args(a: Any, axis: Any, name: str) -> tuple[Tensor, int]:
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise TypeError(f"{name}: axis must be an int or None, got {axis!r}")
    a = as_operand(a)
    if axis is None or a.ndim == 0:
        if axis is not None:
            normalize_axis(axis, 0)
        return reshape(a, (-1,)), 0
    return a, normalize_axis(axis, a.ndim)[0]


def cumsum(a: Tensor, axis: int | None = None) -> Tensor:
    """Cumulative sum along ``axis``; ``axis=None`` sums over the flattened input (NumPy's
    ``cumsum``; the array API's ``cumulative_sum`` underneath).

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.cumsum(np.array([[1.0, 2.0], [3.0, 4.0]])).numpy()
        array([ 1.,  3.,  6., 10.])
    """
    a, axis = _cumulative_args(a, axis, "cumsum")
    return _cumsum(a, axis)


def cumprod(a: Tensor, axis: int | None = None) -> Tensor:
    """Cumulative product along ``axis``; ``axis=None`` multiplies over the flattened input
    (NumPy's ``cumprod``).

    The gradient is exact with zeros in the input; gradients of gradients are exact with at
    most one zero per slice along ``axis``.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.cumprod(np.array([1.0, 2.0, 0.0, 4.0])).numpy()
        array([1., 2., 0., 0.])
    """
    a, axis = _cumulative_args(a, axis, "cumprod")
    return _cumprod(a, axis)


def logsumexp(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """``log(sum(exp(a), axis))`` computed stably (shifted by the detached maximum)."""
    a = as_operand(a)
    shift = Tensor(ns(a.data).max(a.data, axis=axis, keepdims=True))
    # A non-finite maximum (all -inf) must not turn into NaN through inf - inf.
    xp = ns(shift.data)
    shift = Tensor(xp.where(xp.isfinite(shift.data), shift.data, 0.0))
    out = log(sum(exp(a - shift), axis=axis, keepdims=True)) + shift
    if keepdims:
        return out
    return squeeze(out, axis=normalize_axis(axis, a.ndim))


def log_softmax(a: Tensor, axis: int = -1) -> Tensor:
    """``a - logsumexp(a, axis)``."""
    a = as_operand(a)
    return a - logsumexp(a, axis=axis, keepdims=True)


def softmax(a: Tensor, axis: int = -1) -> Tensor:
    """``exp(log_softmax(a, axis))``."""
    return exp(log_softmax(a, axis=axis))
