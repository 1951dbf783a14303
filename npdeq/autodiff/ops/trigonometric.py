"""Trigonometric and hyperbolic functions, their inverses, ``arctan2``, ``hypot`` and the
angle conversions, each forward beside its VJP rules.

NumPy's names (``arcsin``, ``arctan2``, ...) and the array API's (``asin``, ``atan2``, ...)
are the same objects. Forwards call the namespace's array-API function, so they run on
NumPy, CuPy and ``array_api_strict`` alike; rules are written with npdeq ops, so gradients
of gradients work.

Example:
    >>> import numpy as np, npdeq
    >>> x = npdeq.Tensor(np.array([0.0, 0.5]), requires_grad=True)
    >>> (g,) = npdeq.grad(npdeq.sin(x).sum(), [x])
    >>> np.allclose(g.numpy(), np.cos([0.0, 0.5]))
    True
    >>> npdeq.asin is npdeq.arcsin
    True
"""

from __future__ import annotations

import math

from npdeq.autodiff.ops.elementwise import sqrt
from npdeq.autodiff.ops.util import ns
from npdeq.autodiff.primitive import defvjp, primitive

__all__ = [
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "hypot",
    "sinh", "cosh", "arcsinh", "arccosh", "arctanh", "deg2rad", "rad2deg",
    "asin", "acos", "atan", "atan2", "asinh", "acosh", "atanh",
]

sin = primitive(lambda a: ns(a).sin(a), name="sin")
defvjp(sin, lambda g, ans, a: g * cos(a))

cos = primitive(lambda a: ns(a).cos(a), name="cos")
defvjp(cos, lambda g, ans, a: -g * sin(a))

tan = primitive(lambda a: ns(a).tan(a), name="tan")
defvjp(tan, lambda g, ans, a: g * (1.0 + ans * ans))

arcsin = primitive(lambda a: ns(a).asin(a), name="arcsin")
defvjp(arcsin, lambda g, ans, a: g / sqrt(1.0 - a * a))

arccos = primitive(lambda a: ns(a).acos(a), name="arccos")
defvjp(arccos, lambda g, ans, a: -g / sqrt(1.0 - a * a))

arctan = primitive(lambda a: ns(a).atan(a), name="arctan")
defvjp(arctan, lambda g, ans, a: g / (1.0 + a * a))

# In each binary rule the argument being differentiated (a Tensor) comes first in every
# product, so the other argument may be a raw array or a Python scalar.
arctan2 = primitive(lambda y, x: ns(y, x).atan2(y, x), name="arctan2")
defvjp(arctan2,
       lambda g, ans, y, x: g * x / (y * y + x * x),
       lambda g, ans, y, x: -g * y / (x * x + y * y))

hypot = primitive(lambda a, b: ns(a, b).hypot(a, b), name="hypot")
defvjp(hypot, lambda g, ans, a, b: g * a / ans, lambda g, ans, a, b: g * b / ans)

sinh = primitive(lambda a: ns(a).sinh(a), name="sinh")
defvjp(sinh, lambda g, ans, a: g * cosh(a))

cosh = primitive(lambda a: ns(a).cosh(a), name="cosh")
defvjp(cosh, lambda g, ans, a: g * sinh(a))

arcsinh = primitive(lambda a: ns(a).asinh(a), name="arcsinh")
defvjp(arcsinh, lambda g, ans, a: g / sqrt(a * a + 1.0))

arccosh = primitive(lambda a: ns(a).acosh(a), name="arccosh")
defvjp(arccosh, lambda g, ans, a: g / sqrt(a * a - 1.0))

arctanh = primitive(lambda a: ns(a).atanh(a), name="arctanh")
defvjp(arctanh, lambda g, ans, a: g / (1.0 - a * a))

_DEG = math.pi / 180.0

deg2rad = primitive(lambda a: a * _DEG, name="deg2rad")
defvjp(deg2rad, lambda g, ans, a: g * _DEG)

_RAD = 180.0 / math.pi

rad2deg = primitive(lambda a: a * _RAD, name="rad2deg")
defvjp(rad2deg, lambda g, ans, a: g * _RAD)

# The array API standard's names.
asin, acos, atan, atan2 = arcsin, arccos, arctan, arctan2
asinh, acosh, atanh = arcsinh, arccosh, arctanh
