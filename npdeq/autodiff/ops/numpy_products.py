"""NumPy's products beyond ``matmul``/``einsum``/``outer``: ``dot``, ``tensordot``,
``inner``, ``kron`` and ``cross``, with NumPy's semantics.

Each is a composition of permute, reshape, matmul, mul and stack, so gradients of any order
come from those ops' rules. Raw arrays in give Tensors out.

Example:
    >>> import numpy as np, npdeq
    >>> a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    >>> np.allclose(npdeq.tensordot(a, b, axes=1).numpy(), np.tensordot(a, b, axes=1))
    True
    >>> npdeq.cross(np.array([1.0, 0, 0]), np.array([0.0, 1, 0])).numpy()
    array([0., 0., 1.])
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq.autodiff.ops.elementwise import mul
from npdeq.autodiff.ops.linalg import matmul
from npdeq.autodiff.ops.shape import pad, permute, reshape, stack
from npdeq.autodiff.ops.util import raw
from npdeq.autodiff.tensor import Tensor

__all__ = ["dot", "tensordot", "inner", "kron", "cross"]


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(getattr(raw(a), "shape", ()))  # a Python number is 0-d


def _axes_list(name: str, value: Any, ndim: int, which: str) -> list[int]:
    axes = list(value) if isinstance(value, (tuple, list)) else [value]
    out = []
    for ax in axes:
        if isinstance(ax, bool) or not hasattr(ax, "__index__"):
            raise TypeError(f"{name}: axes for {which} must be ints, got {value!r}")
        ax = int(ax)
        if not -ndim <= ax < ndim:
            raise ValueError(f"{name}: axis {ax} of axes={value!r} is out of range for {which}, "
                             f"an array of {ndim} dimensions")
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: repeated axis in axes={value!r} for {which}")
    return out


def tensordot(a: Any, b: Any, axes: int | Sequence = 2) -> Tensor:
    """Sum products over the given axes, as ``numpy.tensordot``: ``axes=n`` pairs the last
    ``n`` axes of ``a`` with the first ``n`` of ``b``; ``axes=(axes_a, axes_b)`` pairs them
    explicitly (ints or sequences). The result has ``a``'s free axes, then ``b``'s.

    Raises:
        ValueError: paired axes of different lengths, axes out of range or repeated, or a
            negative ``n`` larger than either array's dimensions.
    """
    sa, sb = _shape(a), _shape(b)
    if isinstance(axes, (tuple, list)):
        if len(axes) != 2:
            raise ValueError(f"tensordot: axes must be an int or a pair (axes_a, axes_b), got "
                             f"{axes!r}")
        ax_a = _axes_list("tensordot", axes[0], len(sa), "a")
        ax_b = _axes_list("tensordot", axes[1], len(sb), "b")
        if len(ax_a) != len(ax_b):
            raise ValueError(f"tensordot: axes={axes!r} pairs {len(ax_a)} axes of a with "
                             f"{len(ax_b)} of b")
    else:
        if isinstance(axes, bool) or not hasattr(axes, "__index__"):
            raise TypeError(f"tensordot: axes must be an int or a pair of sequences, got "
                            f"{axes!r}")
        n = int(axes)
        if not 0 <= n <= min(len(sa), len(sb)):
            raise ValueError(f"tensordot: axes={n} must be between 0 and the smaller number of "
                             f"dimensions, got shapes {sa} and {sb}")
        ax_a, ax_b = list(range(len(sa) - n, len(sa))), list(range(n))
    for i, j in zip(ax_a, ax_b):
        if sa[i] != sb[j]:
            raise ValueError(f"tensordot: shapes {sa} and {sb} are not aligned: axis {i} of a "
                             f"has length {sa[i]}, axis {j} of b has length {sb[j]}")
    free_a = [i for i in range(len(sa)) if i not in ax_a]
    free_b = [j for j in range(len(sb)) if j not in ax_b]
    k = math.prod(sa[i] for i in ax_a)
    left = reshape(permute(a, tuple(free_a + ax_a)), (math.prod(sa[i] for i in free_a), k))
    right = reshape(permute(b, tuple(ax_b + free_b)), (k, math.prod(sb[j] for j in free_b)))
    return reshape(matmul(left, right), tuple(sa[i] for i in free_a) +
                   tuple(sb[j] for j in free_b))


def dot(a: Any, b: Any) -> Tensor:
    """The dot product with NumPy's semantics: a product with a 0-d operand, the inner
    product of vectors, the matrix product of 2-d arrays, and for N-d arrays a sum over the
    last axis of ``a`` and the second-to-last of ``b`` (the only axis of a 1-d ``b``).

    Raises:
        ValueError: the summed axes differ in length.
    """
    sa, sb = _shape(a), _shape(b)
    if not sa or not sb:
        return mul(a, b)
    if len(sb) == 1:
        return tensordot(a, b, axes=([-1], [0]))
    if len(sa) <= 2 and len(sb) == 2:
        if sa[-1] != sb[0]:
            raise ValueError(f"dot: shapes {sa} and {sb} are not aligned: {sa[-1]} (last "
                             f"dimension of a) != {sb[0]} (second-to-last dimension of b)")
        return matmul(a, b)
    return tensordot(a, b, axes=([-1], [-2]))


def inner(a: Any, b: Any) -> Tensor:
    """Sum products over the last axes of ``a`` and ``b``, as ``numpy.inner`` (a product
    with a 0-d operand).

    Raises:
        ValueError: the last axes differ in length.
    """
    if not _shape(a) or not _shape(b):
        return mul(a, b)
    return tensordot(a, b, axes=([-1], [-1]))


def kron(a: Any, b: Any) -> Tensor:
    """The Kronecker product, as ``numpy.kron``: blocks ``a[i, j] * b`` (the operand with
    fewer dimensions gets leading axes of length 1)."""
    sa, sb = _shape(a), _shape(b)
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    # (s0, s1) x (t0, t1) -> (s0, 1, s1, 1) * (1, t0, 1, t1) -> (s0*t0, s1*t1)
    wide_a = reshape(a, tuple(x for s in sa for x in (s, 1)))
    wide_b = reshape(b, tuple(x for t in sb for x in (1, t)))
    return reshape(mul(wide_a, wide_b), tuple(s * t for s, t in zip(sa, sb)))


def _components(v: Any, axis: int, name: str) -> tuple[Tensor, int]:
    shape = _shape(v)
    if not shape:
        raise ValueError(f"cross: {name} must have at least 1 dimension, got shape ()")
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"cross: axis{name}={axis} is out of range for {name} of shape {shape}")
    axis %= len(shape)
    n = shape[axis]
    if n not in (2, 3):
        raise ValueError(f"cross: {name} must have 2 or 3 components along axis {axis}, got "
                         f"shape {shape}")
    order = tuple(i for i in range(len(shape)) if i != axis) + (axis,)
    return permute(v, order), n


def cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1,
          axis: int | None = None) -> Tensor:
    """The cross product of vectors of 3 (or 2) components along ``axisa``/``axisb``
    (``axis`` sets all three), the other axes broadcasting, as ``numpy.cross``. Two 2-vectors
    give the scalar z-component; a 2-vector with a 3-vector is taken with a zero third
    component.

    Raises:
        ValueError: vectors of another length, or an axis out of range.
    """
    if axis is not None:
        axisa = axisb = axisc = axis
    a, na = _components(a, axisa, "a")
    b, nb = _components(b, axisb, "b")
    if na == 2 and nb == 2:
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    if na == 2:
        a = pad(a, [(0, 0)] * (len(_shape(a)) - 1) + [(0, 1)])
    if nb == 2:
        b = pad(b, [(0, 0)] * (len(_shape(b)) - 1) + [(0, 1)])
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    c = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    nd = len(_shape(c))
    if not -nd <= axisc < nd:
        raise ValueError(f"cross: axisc={axisc} is out of range for a result of {nd} dimensions")
    axisc %= nd
    order = list(range(nd - 1))
    order.insert(axisc, nd - 1)
    return permute(c, tuple(order))
