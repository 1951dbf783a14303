"""The error function and GELU: the primitives ``erf``/``erfc`` and the composite ``gelu``.

The array API standard has no error function, so ``erf`` and ``erfc`` are evaluated here with
standard array functions only, in the style of the classic piecewise libm approximations:

* ``|x| < 1``: ``erf(x) = x * P(x**2)``;
* ``1 <= |x| < 3``: ``erfc(|x|) = exp(-x**2) * M(|x|)``;
* ``|x| >= 3``: ``erfc(|x|) = exp(-x**2) * T(1/|x|) / |x|``,

where P, M and T are Chebyshev series (least-squares fits at Chebyshev nodes of the scaled
complementary error function, made once in float64 and written below). ``exp(-x**2)`` is
computed as ``exp(-s**2) * exp((s - x)(s + x))`` with ``s`` a short-mantissa copy of ``x`` so
``s**2`` is exact: this keeps the relative error of ``erfc`` in its far tail near 1e-15 instead
of growing with ``x**2``. Every branch is computed on clamped inputs and selected with
``where``, so no branch sees values it would divide by zero or overflow on.

May import: ``npdeq.backend`` and the other op modules (no NumPy, no SciPy).
"""

from __future__ import annotations

import math
from typing import Any

from npdeq.autodiff.ops.elementwise import exp, sigmoid
from npdeq.autodiff.ops.util import ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["erf", "erfc", "gelu"]

# erf(x) / x as a Chebyshev series in t = 2 x**2 - 1, for x**2 in [0, 1].
_SMALL = (
    0.9754769393826539, -0.14226120510371368, 0.010035582187599795,
    -0.0005768764699767639, 2.7419931252230406e-05, -1.1043175507510926e-06,
    3.8488755432873606e-08, -1.180858255117198e-09, 3.2334181981104394e-11,
    -7.991148959128772e-13, 1.799924377470837e-14, -3.727725654761605e-16,
)
# exp(x**2) erfc(x) as a Chebyshev series in t = x - 2, for x in [1, 3].
_MID = (
    0.27853893659779233, -0.11964641832736303, 0.023925887746485526,
    -0.004503974067265828, 0.0008045451692535863, -0.00013720361484011195,
    2.2444582753744753e-05, -3.5355728652354805e-06, 5.38008309110533e-07,
    -7.929694886456139e-08, 1.1346142353385274e-08, -1.5791182588198018e-09,
    2.1413963717539557e-10, -2.833658663824137e-11, 3.663898717280112e-12,
    -4.634337039584518e-13, 5.741553007369025e-14, -6.955281018576188e-15,
    8.472475279615809e-16, -7.180345593823753e-17,
)
# x exp(x**2) erfc(x) as a Chebyshev series in t = 6/x - 1, for x >= 3.
_TAIL = (
    0.5536148878640627, -0.013809626472952245, -0.0030315568258966687,
    0.00021991896709349878, 1.308136802617982e-05, -3.3999321687611515e-06,
    1.125453805282953e-07, 4.2529264823942605e-08, -6.55636415349553e-09,
    -7.485694542374325e-11, 1.519594949773539e-10, -1.8847419865047853e-11,
    -1.1317668787261257e-12, 6.820283487034541e-13, -7.682440743101273e-14,
    -7.753635603012228e-15, 3.794658803789282e-15, -4.306349316816863e-16,
    -5.230243991024788e-17, 3.0121598635846975e-17, -6.159595401045404e-18,
)
_SMALL_END = 1.0
_MID_END = 3.0
# erfc(x) underflows to 0 in float64 beyond about 27.3; clamping there avoids overflow in x**2.
_TAIL_END = 28.0
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _chebyshev(t: Any, coefs: tuple[float, ...]) -> Any:
    """Clenshaw's recurrence for ``sum_k coefs[k] T_k(t)`` (stable for |t| <= 1)."""
    b1, b2 = 0.0, 0.0
    t2 = 2.0 * t
    for c in reversed(coefs[1:]):
        b1, b2 = t2 * b1 - b2 + c, b1
    return t * b1 - b2 + coefs[0]


def _exp_minus_square(a: Any, xp: Any) -> Any:
    """``exp(-a**2)`` for ``0 <= a <= 28`` without the rounding error of ``a**2``."""
    # s keeps 25 significant bits of a (a < 2**5), so s*s is exact in float64.
    s = xp.floor(a * 2.0 ** 20) * 2.0 ** -20
    return xp.exp(-(s * s)) * xp.exp((s - a) * (s + a))


def _check_floating(x: Any, name: str) -> Any:
    xp = ns(x)
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name}: expected a real floating-point array, got dtype {x.dtype}")
    return xp


def _erf_parts(x: Any) -> tuple[Any, Any, Any, Any]:
    """The pieces both functions need: namespace, ``|x|``, ``x * P(x**2)`` (valid where
    ``|x| < 1``) and ``erfc(|x|)`` (valid where ``|x| >= 1``)."""
    xp = _check_floating(x, "erf")
    a = xp.abs(x)
    small_x = xp.clip(x, -_SMALL_END, _SMALL_END)
    small = small_x * _chebyshev(2.0 * small_x * small_x - 1.0, _SMALL)
    mid_a = xp.clip(a, _SMALL_END, _MID_END)
    tail_a = xp.clip(a, _MID_END, _TAIL_END)
    tail_u = 1.0 / tail_a
    scaled = xp.where(a < _MID_END, _chebyshev(mid_a - 2.0, _MID),
                      _chebyshev(6.0 * tail_u - 1.0, _TAIL) * tail_u)
    big_a = xp.clip(a, _SMALL_END, _TAIL_END)
    return xp, a, small, scaled * _exp_minus_square(big_a, xp)


def _gaussian(x: Any) -> Tensor:
    """``2/sqrt(pi) * exp(-x**2)``, the derivative of erf, recorded on the tape."""
    return exp(-(x * x)) * _TWO_OVER_SQRT_PI


@primitive
def erf(x: Any) -> Tensor:
    """The error function ``erf(x) = 2/sqrt(pi) * integral_0^x exp(-t**2) dt``.

    Accurate to about 1e-15 relative error in float64, in any array namespace.

    Args:
        x: real floating-point Tensor or array, any shape.

    Returns:
        Tensor of ``x``'s shape, dtype, namespace and device.

    Raises:
        TypeError: ``x`` is not real floating point.

    Example:
        >>> import numpy as np, npdeq
        >>> float(npdeq.erf(np.array(0.5)).data)  # doctest: +ELLIPSIS
        0.5204998778130...
    """
    xp, a, small, erfc_a = _erf_parts(x)
    # NaN fails every comparison and lands in the second branch, whose value is NaN too.
    big = xp.where(x < 0, erfc_a - 1.0, 1.0 - erfc_a)
    return xp.where(a < _SMALL_END, small, xp.where(xp.isnan(x), x, big))


@primitive
def erfc(x: Any) -> Tensor:
    """The complementary error function ``erfc(x) = 1 - erf(x)``, without the
    cancellation of computing ``1 - erf(x)`` for large ``x`` (relative error about 1e-15 down to
    the float64 underflow near ``x = 27``). Arguments, result and errors as :func:`erf`.

    Example:
        >>> import numpy as np, npdeq
        >>> float(npdeq.erfc(np.array(10.0)).data)  # doctest: +ELLIPSIS
        2.088487583762...e-45
    """
    xp, a, small, erfc_a = _erf_parts(x)
    big = xp.where(x < 0, 2.0 - erfc_a, erfc_a)
    return xp.where(a < _SMALL_END, 1.0 - small, xp.where(xp.isnan(x), x, big))


defvjp(erf, lambda g, ans, x: g * _gaussian(x))
defvjp(erfc, lambda g, ans, x: -g * _gaussian(x))


_GELU_MODES = ("none", "tanh")
_SQRT_HALF = math.sqrt(0.5)
_SQRT_TWO_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu(x: Any, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit, as ``torch.nn.functional.gelu``.

    ``'none'``: ``x * Phi(x)`` with Phi the standard normal CDF, computed as
    ``x/2 * erfc(-x/sqrt(2))`` (no cancellation for very negative ``x``). ``'tanh'``:
    ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3)))``, computed as ``x * sigmoid(2 u)``
    (the same function, accurate in the negative tail).

    Args:
        x: real floating-point Tensor or array, any shape.
        approximate: ``'none'`` (exact) or ``'tanh'``.

    Returns:
        Tensor of ``x``'s shape, dtype, namespace and device.

    Raises:
        ValueError: an unknown ``approximate``.
        TypeError: ``x`` is not real floating point.

    Example:
        >>> import numpy as np, npdeq
        >>> float(npdeq.gelu(np.array(1.0)).data)  # doctest: +ELLIPSIS
        0.841344746068...
    """
    if approximate not in _GELU_MODES:
        raise ValueError(f"gelu: approximate={approximate!r} is not one of {_GELU_MODES}")
    if not isinstance(x, Tensor):
        x = Tensor(x)
    _check_floating(raw(x), "gelu")
    if approximate == "tanh":
        inner = (x + x * x * x * 0.044715) * _SQRT_TWO_OVER_PI
        # (1 + tanh(u)) / 2 == sigmoid(2 u), without the cancellation for very negative u
        # (where 1 + tanh(u) leaves only the rounding error of tanh).
        return x * sigmoid(inner * 2.0)
    return x * 0.5 * erfc(x * -_SQRT_HALF)
