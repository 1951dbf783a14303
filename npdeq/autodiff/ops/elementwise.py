"""Elementwise arithmetic and math ops, each forward beside its VJP rules.

Broadcasting is allowed everywhere; the engine sums cotangents back to each input's shape.
Binary forwards use Python operators so that Python scalars work on either side.
"""

from __future__ import annotations

import math

from npdeq import backend
from npdeq.autodiff.ops.util import mask_like, ns, raw
from npdeq.autodiff.primitive import defvjp, primitive

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "tanh", "sigmoid",
    "relu", "leaky_relu", "softplus", "maximum", "minimum", "where", "clip", "sign",
    "log1p", "expm1", "log2", "log10", "exp2", "logaddexp", "square", "reciprocal",
]

add = primitive(lambda a, b: a + b, name="add")
defvjp(add, lambda g, ans, a, b: g, lambda g, ans, a, b: g)

sub = primitive(lambda a, b: a - b, name="sub")
defvjp(sub, lambda g, ans, a, b: g, lambda g, ans, a, b: -g)

mul = primitive(lambda a, b: a * b, name="mul")
defvjp(mul, lambda g, ans, a, b: g * b, lambda g, ans, a, b: g * a)

div = primitive(lambda a, b: a / b, name="div")
defvjp(div, lambda g, ans, a, b: g / b, lambda g, ans, a, b: -g * ans / b)

neg = primitive(lambda a: -a, name="neg")
defvjp(neg, lambda g, ans, a: -g)


def _safe_log(a):
    # d(a**b)/db = a**b * log(a); at a == 0 the product is 0 for b > 0, so log(1) is used there.
    # A Python scalar base (``2.0 ** x``) is a constant with no namespace: a Python log.
    if type(a) in (bool, int, float):
        return math.log(a) if a > 0 else 0.0
    return log(where(raw(a) > 0, a, 1.0))


pow = primitive(lambda a, b: a ** b, name="pow")
defvjp(pow,
       lambda g, ans, a, b: g * b * a ** (b - 1),
       lambda g, ans, a, b: g * ans * _safe_log(a))

exp = primitive(lambda a: ns(a).exp(a), name="exp")
defvjp(exp, lambda g, ans, a: g * ans)

log = primitive(lambda a: ns(a).log(a), name="log")
defvjp(log, lambda g, ans, a: g / a)

log1p = primitive(lambda a: ns(a).log1p(a), name="log1p")
defvjp(log1p, lambda g, ans, a: g / (1.0 + a))

expm1 = primitive(lambda a: ns(a).expm1(a), name="expm1")
defvjp(expm1, lambda g, ans, a: g * (ans + 1.0))

log2 = primitive(lambda a: ns(a).log2(a), name="log2")
defvjp(log2, lambda g, ans, a: g / (a * math.log(2.0)))

log10 = primitive(lambda a: ns(a).log10(a), name="log10")
defvjp(log10, lambda g, ans, a: g / (a * math.log(10.0)))


@primitive
def exp2(a):
    xp = ns(a)
    # The array API standard has no exp2 (array_api_strict lacks it): a power of 2 there.
    return xp.exp2(a) if hasattr(xp, "exp2") else xp.pow(xp.full_like(a, 2.0), a)


defvjp(exp2, lambda g, ans, a: g * ans * math.log(2.0))

logaddexp = primitive(lambda a, b: ns(a, b).logaddexp(a, b), name="logaddexp")
defvjp(logaddexp,
       lambda g, ans, a, b: g * exp(a - ans),
       lambda g, ans, a, b: g * exp(b - ans))

square = primitive(lambda a: ns(a).square(a), name="square")
defvjp(square, lambda g, ans, a: g * (2.0 * a))


@primitive
def reciprocal(a):
    xp = ns(a)
    # reciprocal entered the array API standard in 2025.12; older namespaces divide.
    return xp.reciprocal(a) if hasattr(xp, "reciprocal") else 1.0 / a


defvjp(reciprocal, lambda g, ans, a: -g * ans * ans)

sqrt = primitive(lambda a: ns(a).sqrt(a), name="sqrt")
defvjp(sqrt, lambda g, ans, a: g / (2.0 * ans))

sign = primitive(lambda a: ns(a).sign(a), name="sign")
defvjp(sign, lambda g, ans, a: g * 0.0)

abs = primitive(lambda a: ns(a).abs(a), name="abs")
defvjp(abs, lambda g, ans, a: g * ns(raw(a)).sign(raw(a)))

tanh = primitive(lambda a: ns(a).tanh(a), name="tanh")
defvjp(tanh, lambda g, ans, a: g * (1.0 - ans * ans))


@primitive
def sigmoid(a):
    xp = ns(a)
    # exp of a non-positive number only: no overflow for large |a|.
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


defvjp(sigmoid, lambda g, ans, a: g * ans * (1.0 - ans))

# maximum, not where(a > 0, a, 0): several times faster on NumPy, and NaN stays NaN (as
# torch.relu) instead of becoming a silent 0.
relu = primitive(lambda a: ns(a).maximum(a, ns(a).zeros((), dtype=a.dtype,
                                                      device=backend.device(a))), name="relu")
defvjp(relu, lambda g, ans, a: g * mask_like(raw(a) > 0, g))

leaky_relu = primitive(
    lambda a, negative_slope=0.01: ns(a).where(a > 0, a, a * negative_slope), name="leaky_relu")


def _leaky_relu_slope(a, negative_slope):
    """1 where ``a > 0``, ``negative_slope`` elsewhere, from a 0/1 mask: ``where`` with two
    Python scalars is not in the array API standard (array_api_strict refuses it)."""
    positive = mask_like(raw(a) > 0, a)
    return positive + negative_slope * (1.0 - positive)


defvjp(leaky_relu, lambda g, ans, a, negative_slope=0.01:
       g * _leaky_relu_slope(a, negative_slope))


@primitive
def softplus(a, beta=1.0, threshold=20.0):
    xp = ns(a)
    scaled = a * beta
    # Above the threshold softplus(x) == x to float precision (PyTorch's convention).
    return xp.where(scaled > threshold, a, xp.logaddexp(xp.zeros_like(a), scaled) / beta)


defvjp(softplus, lambda g, ans, a, beta=1.0, threshold=20.0:
       where(raw(a) * beta > threshold, g, g * sigmoid(a * beta)))


def _tie_weights(a, b):
    """Share of the cotangent that goes to ``a`` in max(a, b): 1, 0, or 1/2 on ties."""
    a_raw, b_raw = raw(a), raw(b)
    xp = ns(a_raw, b_raw)
    dtype = (a_raw if hasattr(a_raw, "dtype") else b_raw).dtype
    return (xp.astype(a_raw > b_raw, dtype) + 0.5 * xp.astype(a_raw == b_raw, dtype))


maximum = primitive(lambda a, b: ns(a, b).maximum(a, b), name="maximum")
defvjp(maximum,
       lambda g, ans, a, b: g * _tie_weights(a, b),
       lambda g, ans, a, b: g * _tie_weights(b, a))

minimum = primitive(lambda a, b: ns(a, b).minimum(a, b), name="minimum")
defvjp(minimum,
       lambda g, ans, a, b: g * _tie_weights(b, a),
       lambda g, ans, a, b: g * _tie_weights(a, b))


@primitive
def where(condition, a, b):
    return ns(condition, a, b).where(condition, a, b)


defvjp(where, None,
       lambda g, ans, c, a, b: where(c, g, 0.0),
       lambda g, ans, c, a, b: where(c, 0.0, g))


@primitive
def clip(a, min=None, max=None):
    xp = ns(a)
    if min is not None:
        a = xp.maximum(a, min)
    if max is not None:
        a = xp.minimum(a, max)
    return a


def _inside(a, min, max):
    a = raw(a)
    xp = ns(a)
    inside = xp.ones_like(a, dtype=xp.bool)
    if min is not None:
        inside = xp.logical_and(inside, a >= min)
    if max is not None:
        inside = xp.logical_and(inside, a <= max)
    return xp.astype(inside, a.dtype)


defvjp(clip, lambda g, ans, a, min=None, max=None: g * _inside(a, min, max))
