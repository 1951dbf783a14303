"""The functions of :mod:`npdeq.linalg` (NumPy's ``numpy.linalg`` on the tape): norms,
``solve``, ``inv``, ``det`` and ``slogdet``, each forward beside its VJP rules, written with
npdeq's ops so gradients of any order work.

Not exported at the package top level (``npdeq.linalg.norm``, as ``numpy.linalg.norm``).
Norms have a safe subgradient at zero: the gradient of the 2-norm at the zero vector is 0,
not NaN, and its gradient of the gradient is finite.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from npdeq.autodiff.ops.elementwise import abs, mul, neg, sign
from npdeq.autodiff.ops.linalg import matmul, trace as _trace
from npdeq.autodiff.ops.reductions import max, min, sum, unreduce
from npdeq.autodiff.ops.numpy_shape import diagonal as _diagonal
from npdeq.autodiff.ops.shape import reshape, squeeze, swapaxes
from npdeq.autodiff.ops.util import check_square, mask_like, normalize_axis, ns, raw
from npdeq.autodiff.primitive import defvjp, defvjp_argnums, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["norm", "vector_norm", "matrix_norm", "solve", "inv", "det", "slogdet",
           "SlogdetResult", "matrix_transpose", "diagonal", "trace"]

_INF = math.inf


# --- norms -------------------------------------------------------------------------------


@primitive
def _vector_norm(x, p, axis, keepdims):
    """The vector p-norm for a finite ``p >= 1`` (axes already normalised)."""
    return ns(x).linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=p)


def _vector_norm_vjp(g, ans, x, p, axis, keepdims):
    shape = tuple(x.shape)
    g = unreduce(g, shape, axis, keepdims)
    n = unreduce(ans, shape, axis, keepdims)
    if p == 1:
        return g * sign(x)
    # The norm is 0 only where x is 0 along the reduced axes: dividing by 1 there gives the
    # subgradient 0 (and a finite derivative of it), where x / n would be 0 / 0.
    safe = n + mask_like(raw(n) == 0, n)
    if p == 2:
        return g * x / safe
    return g * sign(x) * abs(x) ** (p - 1) / safe ** (p - 1)


defvjp(_vector_norm, _vector_norm_vjp)


def _check_ord(ord: Any, name: str) -> None:
    if isinstance(ord, bool) or not isinstance(ord, (int, float)) or ord != ord:
        raise ValueError(f"{name}: ord={ord!r} is not a vector norm order (a number, inf or "
                         "-inf)")


def vector_norm(x: Any, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Tensor:
    """The vector ``ord``-norm over ``axis`` (all axes when None, as one vector), as the array
    API's ``linalg.vector_norm``: ``sum(|x|**ord)**(1/ord)``, ``max|x|`` for ``inf``, ``min|x|``
    for ``-inf``, the count of non-zeros for 0 (not differentiable). The gradient at the zero
    vector is 0.

    Raises:
        ValueError: an ``ord`` that is not a number, or an axis out of range.

    Example:
        >>> import numpy as np, npdeq.linalg
        >>> float(npdeq.linalg.vector_norm(np.array([3., 4.])).numpy())
        5.0
    """
    _check_ord(ord, "vector_norm")
    x_raw = raw(x)
    axes = normalize_axis(axis, x_raw.ndim)
    if ord == _INF or ord == -_INF:
        return (max if ord > 0 else min)(abs(x), axis=axes, keepdims=keepdims)
    if ord == 0:
        xp = ns(x_raw)
        return Tensor(xp.sum(mask_like(x_raw != 0, x_raw), axis=axes, keepdims=keepdims))
    if ord >= 1:
        return _vector_norm(x, ord, axes, keepdims)
    return sum(abs(x) ** ord, axis=axes, keepdims=keepdims) ** (1.0 / ord)


def _matrix_norm(x: Any, ord: Any, axes: tuple[int, int], keepdims: bool, name: str) -> Tensor:
    row, col = axes
    if ord in ("fro", None):
        out = _vector_norm(x, 2, tuple(sorted(axes)), True)
    elif ord in (1, -1, _INF, -_INF) and not isinstance(ord, bool):
        # 1: the largest column sum of |x|; inf: the largest row sum.
        inner, outer = (row, col) if ord in (1, -1) else (col, row)
        out = (max if ord > 0 else min)(sum(abs(x), axis=inner, keepdims=True), axis=outer,
                                        keepdims=True)
    else:
        raise ValueError(f"{name}: ord={ord!r} is not a supported matrix norm order ('fro', 1, "
                         "-1, inf, -inf; 'nuc' and 2 need the SVD and are not available)")
    return out if keepdims else squeeze(out, axis=tuple(sorted(axes)))


def matrix_norm(x: Any, keepdims: bool = False, ord: Any = "fro") -> Tensor:
    """The matrix norm of the last two axes, as the array API's ``linalg.matrix_norm``:
    ``'fro'`` (Frobenius), 1 / -1 (largest / smallest column sum of ``|x|``), inf / -inf
    (rows).

    Raises:
        ValueError: fewer than 2 dimensions, or an unsupported ``ord``.
    """
    nd = raw(x).ndim
    if nd < 2:
        raise ValueError(f"matrix_norm: needs at least 2 dimensions, got shape "
                         f"{tuple(raw(x).shape)}")
    return _matrix_norm(x, ord, (nd - 2, nd - 1), keepdims, "matrix_norm")


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Tensor:
    """A vector or matrix norm, as ``numpy.linalg.norm``: with ``axis=None`` the 2-norm of the
    flattened array (``ord=None``), or the ``ord`` norm of a 1-d (vector) or 2-d (matrix)
    array; an int ``axis`` takes vector norms along it, a pair of axes matrix norms. Vector
    orders: any number, ``inf``, ``-inf``; matrix orders: ``'fro'``, 1, -1, ``inf``, ``-inf``.
    The gradient at zero is 0, never NaN.

    Raises:
        ValueError: an unsupported ``ord``, a bad ``axis``, or ``ord`` given for an array of
            more than 2 dimensions without ``axis``.

    Example:
        >>> import numpy as np, npdeq.linalg
        >>> float(npdeq.linalg.norm(np.array([[3., 0.], [0., 4.]])).numpy())
        5.0
    """
    x_raw = raw(x)
    nd = x_raw.ndim
    if axis is None:
        if ord is None:
            return _vector_norm(x, 2, tuple(range(nd)), keepdims)
        if nd == 1:
            axis = 0
        elif nd == 2:
            axis = (0, 1)
        else:
            raise ValueError(f"norm: ord={ord!r} needs axis for an array of {nd} dimensions "
                             "(vectors are 1-d, matrices 2-d)")
    if isinstance(axis, int) or (isinstance(axis, tuple) and len(axis) == 1):
        if isinstance(ord, str):
            raise ValueError(f"norm: ord={ord!r} is a matrix norm; a vector norm needs a number")
        return vector_norm(x, axis=axis, keepdims=keepdims, ord=2 if ord is None else ord)
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else None
    if axes is None or len(axes) != 2:
        raise ValueError(f"norm: axis={axis!r} must be None, an int or a pair of ints")
    r, c = normalize_axis(axes[0], nd)[0], normalize_axis(axes[1], nd)[0]
    if r == c:
        raise ValueError(f"norm: axis={axis!r} names the same axis twice")
    return _matrix_norm(x, ord, (r, c), keepdims, "norm")


def tensor_norm(self: Any, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
    """``Tensor.norm`` with PyTorch's meaning: ``'fro'`` and numbers are vector norms over
    ``dim`` (all elements when None), so ``x.norm()`` is the 2-norm of every entry and
    ``x.norm(dim=-1, keepdim=True)`` the 2-norm of each row."""
    if p == "fro":
        p = 2
    elif isinstance(p, str):
        raise ValueError(f"norm: p={p!r} is not supported ('fro' or a number)")
    return vector_norm(self, axis=dim, keepdims=keepdim, ord=p)


# --- solve, inv, det ---------------------------------------------------------------------


def matrix_transpose(x: Any) -> Tensor:
    """Swap the last two axes, as ``numpy.linalg.matrix_transpose``."""
    return swapaxes(x, -1, -2)


_solve = primitive(lambda a, b: ns(a, b).linalg.solve(a, b), name="solve")
"""``solve`` of a batch of matrices ``(..., M, M)`` and right-hand sides ``(..., M, K)``."""


def _solve_vjps(argnums, g, ans, a, b):
    # One adjoint solve serves both operands: b̄ = A⁻ᵀ ḡ, Ā = -b̄ xᵀ.
    gb = _solve(matrix_transpose(a), g)
    return tuple(gb if i == 1 else neg(matmul(gb, matrix_transpose(ans))) for i in argnums)


defvjp_argnums(_solve, _solve_vjps)


def solve(a: Any, b: Any) -> Tensor:
    """The solution ``x`` of ``a @ x = b``, as ``numpy.linalg.solve``: ``a`` of shape
    ``(..., M, M)``, ``b`` a vector ``(M,)`` or matrices ``(..., M, K)``; batch axes
    broadcast. The gradient solves with ``a``'s transpose.

    Raises:
        ValueError: ``a`` not square or ``b``'s shape not matching.
        The library's ``LinAlgError`` for a singular matrix.

    Example:
        >>> import numpy as np, npdeq.linalg
        >>> npdeq.linalg.solve(np.diag([2., 4.]), np.array([2., 2.])).numpy()
        array([1. , 0.5])
    """
    a_raw, b_raw = raw(a), raw(b)
    check_square(a_raw, "solve")
    m = a_raw.shape[-1]
    if b_raw.ndim == 1:
        if b_raw.shape[0] != m:
            raise ValueError(f"solve: b of shape {tuple(b_raw.shape)} does not match a of shape "
                             f"{tuple(a_raw.shape)}")
        x = _solve(a, reshape(b, (m, 1)))
        return reshape(x, tuple(x.shape[:-1]))
    if b_raw.ndim < 2 or b_raw.shape[-2] != m:
        raise ValueError(f"solve: b of shape {tuple(b_raw.shape)} does not match a of shape "
                         f"{tuple(a_raw.shape)} (b is a vector (M,) or matrices (..., M, K))")
    return _solve(a, b)


@primitive
def inv(a):
    """The inverse of each square matrix of the last two axes, as ``numpy.linalg.inv``."""
    check_square(a, "inv")
    return ns(a).linalg.inv(a)


defvjp(inv, lambda g, ans, a: neg(matmul(matmul(matrix_transpose(ans), g),
                                         matrix_transpose(ans))))


def _as_matrix_scale(g: Any) -> Tensor:
    # A cotangent per matrix, shaped to scale a (..., M, M) array.
    return reshape(g, tuple(g.shape) + (1, 1))


@primitive
def det(a):
    """The determinant of each square matrix of the last two axes, as ``numpy.linalg.det``;
    its gradient ``det(a) inv(a)ᵀ`` needs a non-singular matrix."""
    check_square(a, "det")
    return ns(a).linalg.det(a)


defvjp(det, lambda g, ans, a: mul(_as_matrix_scale(g * ans), matrix_transpose(inv(a))))


@primitive
def _slogdet(a):
    check_square(a, "slogdet")
    return ns(a).linalg.slogdet(a)[1]


defvjp(_slogdet, lambda g, ans, a: mul(_as_matrix_scale(g), matrix_transpose(inv(a))))


class SlogdetResult(NamedTuple):
    """``slogdet``'s result: the sign of the determinant (not differentiable) and the log of
    its absolute value."""

    sign: Tensor
    logabsdet: Tensor


def slogdet(a: Any) -> SlogdetResult:
    """``(sign, logabsdet)`` of each square matrix, as ``numpy.linalg.slogdet``: the
    determinant is ``sign * exp(logabsdet)``, without overflow. The gradient flows through
    ``logabsdet`` (``inv(a)ᵀ``).

    Example:
        >>> import numpy as np, npdeq.linalg
        >>> sign, logdet = npdeq.linalg.slogdet(np.diag([-2., 3.]))
        >>> float(sign.numpy()), round(float(logdet.numpy()), 4)
        (-1.0, 1.7918)
    """
    a_raw = raw(a)
    check_square(a_raw, "slogdet")
    sign_ = Tensor(ns(a_raw).linalg.slogdet(a_raw)[0])
    return SlogdetResult(sign_, _slogdet(a))


def diagonal(x: Any, *, offset: int = 0) -> Tensor:
    """The diagonals of the last two axes, as ``numpy.linalg.diagonal``."""
    return _diagonal(x, offset=offset, axis1=-2, axis2=-1)


def trace(x: Any, *, offset: int = 0) -> Tensor:
    """The traces of the last two axes, as ``numpy.linalg.trace``."""
    return _trace(x, offset=offset, axis1=-2, axis2=-1)
