"""Reductions and the softmax family, each forward beside its VJP rules.

``mean``, ``var``, ``logsumexp``, ``softmax`` and ``log_softmax`` are composites of the
primitives here, so their gradients (of any order) come from the primitives' rules.
"""

from __future__ import annotations

from typing import Any

from npdeq.autodiff.ops._util import as_operand, normalize_axis, ns, raw
from npdeq.autodiff.ops.elementwise import exp, log
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["sum", "mean", "var", "max", "min", "logsumexp", "softmax", "log_softmax"]


def _keep(g: Tensor, shape: tuple[int, ...], axis: Any, keepdims: bool) -> Tensor:
    """Reinsert reduced axes of ``g`` as size 1 so it broadcasts against ``shape``."""
    from npdeq.autodiff.ops.shape import reshape

    if keepdims:
        return g
    axes = normalize_axis(axis, len(shape))
    kept = tuple(1 if i in axes else s for i, s in enumerate(shape))
    return reshape(g, kept)


def _sum(a, axis=None, keepdims=False):
    xp = ns(a)
    return xp.sum(a, axis=axis, keepdims=keepdims, dtype=a.dtype)


sum = primitive(_sum, name="sum")


def _sum_vjp(g, ans, a, axis=None, keepdims=False):
    from npdeq.autodiff.ops.shape import broadcast_to

    return broadcast_to(_keep(g, a.shape, axis, keepdims), a.shape)


defvjp(sum, _sum_vjp)


def _count(shape: tuple[int, ...], axis: Any) -> int:
    n = 1
    for i in normalize_axis(axis, len(shape)):
        n *= shape[i]
    return n


def mean(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes by default)."""
    return sum(a, axis=axis, keepdims=keepdims) * (1.0 / _count(tuple(a.shape), axis))


def var(a: Tensor, axis: Any = None, keepdims: bool = False, correction: float = 0.0) -> Tensor:
    """Variance over ``axis``; ``correction=1`` gives the unbiased estimate."""
    a = as_operand(a)
    centred = a - mean(a, axis=axis, keepdims=True)
    n = _count(tuple(a.shape), axis)
    return sum(centred * centred, axis=axis, keepdims=keepdims) * (1.0 / (n - correction))


def _extreme_vjp(g, ans, a, axis=None, keepdims=False):
    # The cotangent is shared equally among the positions that attain the extreme value.
    a_raw = raw(a)
    xp = ns(a_raw)
    hit = xp.astype(a_raw == raw(_keep(ans, a_raw.shape, axis, keepdims)), a_raw.dtype)
    share = hit / xp.sum(hit, axis=axis, keepdims=True)
    return _keep(g, a_raw.shape, axis, keepdims) * share


max = primitive(lambda a, axis=None, keepdims=False: ns(a).max(a, axis=axis, keepdims=keepdims),
                name="max")
defvjp(max, _extreme_vjp)

min = primitive(lambda a, axis=None, keepdims=False: ns(a).min(a, axis=axis, keepdims=keepdims),
                name="min")
defvjp(min, _extreme_vjp)


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
    from npdeq.autodiff.ops.shape import squeeze

    return squeeze(out, axis=normalize_axis(axis, a.ndim))


def log_softmax(a: Tensor, axis: int = -1) -> Tensor:
    """``a - logsumexp(a, axis)``."""
    a = as_operand(a)
    return a - logsumexp(a, axis=axis, keepdims=True)


def softmax(a: Tensor, axis: int = -1) -> Tensor:
    """``exp(log_softmax(a, axis))``."""
    return exp(log_softmax(a, axis=axis))
