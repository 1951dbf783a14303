"""NumPy's names for npdeq's elementwise ops, and the elementwise functions of HIPS autograd's
VJP table that the other modules lack: ``mod``/``remainder``, ``fmax``/``fmin``,
``nan_to_num``, ``logaddexp2``, ``sinc``.

The aliases are the same objects as the ops they name, as in NumPy (``npdeq.multiply is
npdeq.mul``); ``fabs`` and ``concatenate`` are thin functions because their checks or
signatures differ. The new primitives keep their forward beside their VJP rules; ``sinc`` and
``logaddexp2`` are compositions of existing ops, so gradients of any order come for free.

Example:
    >>> import numpy as np, npdeq
    >>> npdeq.multiply is npdeq.mul, npdeq.amax is npdeq.max
    (True, True)
    >>> x = npdeq.Tensor(np.array([5.5, -5.5]), requires_grad=True)
    >>> npdeq.mod(x, 2.0).numpy()
    array([1.5, 0.5])
    >>> (g,) = npdeq.grad(npdeq.mod(3.0, x).sum(), [x])
    >>> g.numpy()  # -floor(3 / x)
    array([-0.,  1.])
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff.ops.elementwise import (abs, div, logaddexp, mul, neg, pow, sub, where)
from npdeq.autodiff.ops.reductions import max, min
from npdeq.autodiff.ops.shape import concat, reshape
from npdeq.autodiff.ops.trigonometric import deg2rad, rad2deg, sin
from npdeq.autodiff.ops.util import as_operand, mask_like, ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = [
    "absolute", "fabs", "amax", "amin", "divide", "true_divide", "multiply", "subtract",
    "negative", "power", "degrees", "radians", "concatenate",
    "mod", "remainder", "fmax", "fmin", "nan_to_num", "logaddexp2", "sinc",
]

# --- aliases: the same objects as the ops, as in NumPy ----------------------------------

absolute = abs
amax, amin = max, min
divide = true_divide = div
multiply, subtract, negative, power = mul, sub, neg, pow
degrees, radians = rad2deg, deg2rad


def fabs(x: Any) -> Tensor:
    """The absolute value of real input, as ``numpy.fabs`` (:func:`npdeq.abs` otherwise).

    Raises:
        TypeError: complex input (NumPy's ``fabs`` refuses it too).
    """
    data = raw(x)
    if hasattr(data, "dtype") and ns(data).isdtype(data.dtype, "complex floating"):
        raise TypeError(f"fabs: x must be real, got an array of dtype {data.dtype}; use "
                        "npdeq.abs for the modulus of complex numbers")
    return abs(x)


def concatenate(arrays: Sequence[Any], axis: int | None = 0) -> Tensor:
    """Join arrays along an existing axis, as ``numpy.concatenate`` (the array API's
    :func:`npdeq.concat`); ``axis=None`` flattens them first.

    Raises:
        TypeError: ``arrays`` is a single array or Tensor instead of a sequence.
    """
    if isinstance(arrays, Tensor) or hasattr(arrays, "shape"):
        raise TypeError(f"concatenate: arrays must be a sequence of arrays, got one "
                        f"{type(arrays).__name__} of shape {tuple(arrays.shape)}")
    arrays = list(arrays)
    if axis is None:
        return concat([reshape(a, (-1,)) for a in arrays], axis=0)
    return concat(arrays, axis=axis)


# --- remainder: NumPy's sign convention (the result has the sign of the divisor) ---------


def _floor_quotient(a, b):
    a, b = raw(a), raw(b)
    return ns(a, b).floor(a / b)


mod = primitive(lambda a, b: ns(a, b).remainder(a, b), name="mod")
"""The elementwise remainder ``a - floor(a / b) * b`` with the sign of ``b``, as
``numpy.mod``; its gradient is 1 for ``a`` and ``-floor(a / b)`` for ``b`` (a constant step
function: zero second derivatives)."""
defvjp(mod,
       lambda g, ans, a, b: g,
       lambda g, ans, a, b: -g * _floor_quotient(a, b))
remainder = mod


# --- NaN-ignoring maximum and minimum ----------------------------------------------------


def _as_array(x, like):
    # A Python scalar operand as an array of the other operand's dtype, namespace, device.
    if hasattr(x, "shape"):
        return x
    return ns(like).asarray(x, dtype=like.dtype, device=backend.device(like))


def _nan_ignoring(kind):
    def forward(a, b):
        a, b = _as_array(a, b), _as_array(b, a)
        xp = ns(a, b)
        best = getattr(xp, kind)(a, b)
        return xp.where(xp.isnan(b), a, xp.where(xp.isnan(a), b, best))
    return forward


def _share(x, ans, other):
    """HIPS autograd's ``balanced_eq``: 1 where ``x`` is the result, 1/2 on ties, 0 where
    the other argument (or NaN in ``x``) is; a constant for the tape."""
    x, ans, other = raw(x), raw(ans), raw(other)
    xp = ns(ans)
    hit = xp.astype(x == ans, ans.dtype)
    return hit / (1.0 + xp.astype(x == other, ans.dtype))


fmax = primitive(_nan_ignoring("maximum"), name="fmax")
"""The elementwise maximum ignoring NaN (NaN only where both are NaN), as ``numpy.fmax``;
ties share the gradient equally."""
defvjp(fmax,
       lambda g, ans, a, b: g * _share(a, ans, b),
       lambda g, ans, a, b: g * _share(b, ans, a))

fmin = primitive(_nan_ignoring("minimum"), name="fmin")
"""The elementwise minimum ignoring NaN (NaN only where both are NaN), as ``numpy.fmin``;
ties share the gradient equally."""
defvjp(fmin,
       lambda g, ans, a, b: g * _share(a, ans, b),
       lambda g, ans, a, b: g * _share(b, ans, a))


# --- replacing non-finite values ---------------------------------------------------------


@primitive
def _nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    xp = ns(x)
    if not xp.isdtype(x.dtype, "real floating"):
        return xp.asarray(x, copy=True)  # integers and bools: nothing to replace
    big = xp.finfo(x.dtype).max
    out = xp.where(xp.isnan(x), nan, x)
    out = xp.where(xp.logical_and(xp.isinf(x), x > 0), big if posinf is None else posinf, out)
    return xp.where(xp.logical_and(xp.isinf(x), x < 0), -big if neginf is None else neginf,
                    out)


defvjp(_nan_to_num, lambda g, ans, x, nan=0.0, posinf=None, neginf=None:
       g * mask_like(ns(raw(x)).isfinite(raw(x)), g))


def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: float | None = None,
               neginf: float | None = None) -> Tensor:
    """Replace NaN by ``nan`` and infinities by ``posinf``/``neginf`` (default: the largest
    finite value of the dtype, with its sign), as ``numpy.nan_to_num``. The gradient is 1
    where ``x`` is finite and 0 where a value was replaced.

    Args:
        x: a real array or Tensor (never modified).
        copy: must be True: npdeq never writes into its input.
        nan, posinf, neginf: the replacement values (Python numbers).

    Raises:
        ValueError: ``copy=False``.
        TypeError: a replacement value that is not a real number, or complex ``x``.
    """
    if copy is not True:
        raise ValueError(f"nan_to_num: copy={copy!r} is not supported; npdeq never modifies "
                         "its input, so copy must be True")
    for name, value in (("nan", nan), ("posinf", posinf), ("neginf", neginf)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"nan_to_num: {name} must be a real Python number, got {value!r}")
    data = raw(x)
    if hasattr(data, "dtype") and ns(data).isdtype(data.dtype, "complex floating"):
        raise TypeError(f"nan_to_num: x must be a real array, got dtype {data.dtype}")
    return _nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)


# --- composites ---------------------------------------------------------------------------

_LN2 = math.log(2.0)


def logaddexp2(a: Any, b: Any) -> Tensor:
    """``log2(2**a + 2**b)`` without overflow, as ``numpy.logaddexp2``."""
    return logaddexp(_scaled(a), _scaled(b)) * (1.0 / _LN2)


def _scaled(x: Any) -> Any:
    # A Python number stays one (it takes the other operand's namespace in logaddexp).
    return x * _LN2 if type(x) in (int, float) else as_operand(x) * _LN2


# Near 0, sin(t)/t is its Taylor series (exact to double precision for |t| <= 0.1); the
# polynomial has finite derivatives of every order at 0 (the first is 0 there).
_SERIES = 0.1 / math.pi


def sinc(x: Any) -> Tensor:
    """The normalised sinc function ``sin(pi x) / (pi x)`` (1 at 0), as ``numpy.sinc``.

    Its derivatives of every order are finite everywhere: near 0 it is evaluated as its
    Taylor series (the first derivative at 0 is exactly 0).

    Example:
        >>> import numpy as np, npdeq
        >>> x = npdeq.Tensor(np.array([0.0, 0.5]), requires_grad=True)
        >>> (g,) = npdeq.grad(npdeq.sinc(x).sum(), [x])
        >>> np.allclose(g.numpy(), [0.0, -4 / np.pi])
        True
    """
    x = as_operand(x)
    xp = ns(x.data)
    near = xp.abs(x.data) <= _SERIES
    t2 = (x * x) * (math.pi * math.pi)
    series = 1.0 - t2 * (1.0 / 6.0 - t2 * (1.0 / 120.0 - t2 * (
        1.0 / 5040.0 - t2 * (1.0 / 362880.0))))
    t = where(near, 1.0, x) * math.pi
    return where(near, series, sin(t) / t)

