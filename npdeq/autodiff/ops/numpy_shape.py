"""NumPy's array rearrangements built on the shape and indexing ops: ``ravel``, ``moveaxis``,
``atleast_1d/2d/3d``, ``fliplr``, ``flipud``, ``rot90``, ``diag``, ``diagonal``, ``diff``,
``split``, ``array_split``, ``hsplit``, ``vsplit``, ``dsplit``, ``tile``, ``repeat``.

All are compositions of primitives (reshape, permute, flip, pad, getitem, take, sub), so their
gradients, of any order, come from those ops' rules. Raw arrays in give Tensors out.

Example:
    >>> import numpy as np, npdeq
    >>> npdeq.diag(np.array([1.0, 2.0]), k=1).numpy()
    array([[0., 1., 0.],
           [0., 0., 2.],
           [0., 0., 0.]])
    >>> [p.shape for p in npdeq.array_split(np.arange(7.0), 3)]
    [(3,), (2,), (2,)]
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff.ops.elementwise import sub
from npdeq.autodiff.ops.indexing import getitem, take
from npdeq.autodiff.ops.shape import (broadcast_to, concat, expand_dims, flip, pad, permute,
                                      reshape)
from npdeq.autodiff.ops.util import as_operand, axis_arg, int_arg, ns, raw
from npdeq.autodiff.tensor import Tensor

__all__ = ["ravel", "moveaxis", "atleast_1d", "atleast_2d", "atleast_3d", "fliplr", "flipud",
           "rot90", "diag", "diff", "array_split", "hsplit", "vsplit", "dsplit", "split", "tile",
           "repeat", "diagonal"]


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(raw(a).shape)


def ravel(a: Any) -> Tensor:
    """The elements as a 1-d Tensor, in C order, as ``numpy.ravel``."""
    return reshape(a, (-1,))


def moveaxis(a: Any, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:
    """Move axes to new positions, the others keeping their order, as ``numpy.moveaxis``.

    Raises:
        ValueError: an axis out of range, repeated axes, or ``source`` and ``destination``
            of different lengths.
    """
    nd = len(_shape(a))
    src = [source] if not isinstance(source, (tuple, list)) else list(source)
    dst = [destination] if not isinstance(destination, (tuple, list)) else list(destination)
    if len(src) != len(dst):
        raise ValueError(f"moveaxis: source={source!r} and destination={destination!r} must "
                         "have the same number of elements")
    src = [axis_arg("moveaxis", "source", s, nd) for s in src]
    dst = [axis_arg("moveaxis", "destination", d, nd) for d in dst]
    for name, axes, given in (("source", src, source), ("destination", dst, destination)):
        if len(set(axes)) != len(axes):
            raise ValueError(f"moveaxis: repeated axis in {name}={given!r}")
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(a, tuple(order))


def _atleast(arys: tuple, ndim: int, name: str):
    if not arys:
        raise TypeError(f"{name}: needs at least one array")
    out = []
    for a in arys:
        a = a if hasattr(raw(a), "shape") else as_operand(a)  # Python numbers and lists
        shape = _shape(a)
        if len(shape) < ndim:
            if ndim == 3 and len(shape) == 1:
                shape = (1,) + shape + (1,)
            elif ndim == 3 and len(shape) == 2:
                shape = shape + (1,)
            else:
                shape = (1,) * (ndim - len(shape)) + shape
        out.append(reshape(a, shape))
    return out[0] if len(out) == 1 else tuple(out)


def atleast_1d(*arys: Any):
    """Each input with at least one dimension (a 0-d array becomes shape ``(1,)``); one
    Tensor for one input, a tuple otherwise, as ``numpy.atleast_1d``."""
    return _atleast(arys, 1, "atleast_1d")


def atleast_2d(*arys: Any):
    """Each input with at least two dimensions (``(N,)`` becomes ``(1, N)``), as
    ``numpy.atleast_2d``."""
    return _atleast(arys, 2, "atleast_2d")


def atleast_3d(*arys: Any):
    """Each input with at least three dimensions (``(N,)`` becomes ``(1, N, 1)``, ``(M, N)``
    becomes ``(M, N, 1)``), as ``numpy.atleast_3d``."""
    return _atleast(arys, 3, "atleast_3d")


def fliplr(m: Any) -> Tensor:
    """Reverse the columns (axis 1), as ``numpy.fliplr``.

    Raises:
        ValueError: fewer than 2 dimensions.
    """
    if len(_shape(m)) < 2:
        raise ValueError(f"fliplr: m must have at least 2 dimensions, got shape {_shape(m)}")
    return flip(m, 1)


def flipud(m: Any) -> Tensor:
    """Reverse the rows (axis 0), as ``numpy.flipud``.

    Raises:
        ValueError: a 0-d input.
    """
    if len(_shape(m)) < 1:
        raise ValueError("flipud: m must have at least 1 dimension, got shape ()")
    return flip(m, 0)


def rot90(m: Any, k: int = 1, axes: Sequence[int] = (0, 1)) -> Tensor:
    """Rotate by 90 degrees ``k`` times in the plane of ``axes``, from the first axis towards
    the second, as ``numpy.rot90``.

    Raises:
        ValueError: ``axes`` not two distinct axes in range.
        TypeError: ``k`` not an int.
    """
    k = int_arg("rot90", "k", k) % 4
    nd = len(_shape(m))
    axes = tuple(axes)
    if len(axes) != 2:
        raise ValueError(f"rot90: axes must be two axes, got {axes!r}")
    a0, a1 = (axis_arg("rot90", "axes", a, nd) for a in axes)
    if a0 == a1:
        raise ValueError(f"rot90: axes={axes!r} must be two different axes")
    if k == 0:
        return reshape(m, _shape(m))
    if k == 2:
        return flip(flip(m, a0), a1)
    order = list(range(nd))
    order[a0], order[a1] = order[a1], order[a0]
    if k == 1:
        return permute(flip(m, a1), tuple(order))
    return flip(permute(m, tuple(order)), a1)


def diag(v: Any, k: int = 0) -> Tensor:
    """The ``k``-th diagonal of a 2-d input, or a square matrix with a 1-d input on its
    ``k``-th diagonal (``k`` > 0 above the main one), as ``numpy.diag``.

    Raises:
        ValueError: an input of another number of dimensions.
    """
    k = int_arg("diag", "k", k)
    shape = _shape(v)
    if len(shape) == 2:
        return diagonal(v, offset=k)
    if len(shape) != 1:
        raise ValueError(f"diag: v must be 1-d or 2-d, got shape {shape}")
    n = shape[0]
    # Each element followed by n zeros, flattened and cut to n*n: the n x n diagonal matrix;
    # then padded into the (n+|k|) square at the offset.
    spaced = pad(reshape(v, (n, 1)), [(0, 0), (0, n)])
    square = reshape(getitem(reshape(spaced, (-1,)), slice(0, n * n)), (n, n))
    if k == 0:
        return square
    width = [(0, k), (k, 0)] if k > 0 else [(-k, 0), (0, -k)]
    return pad(square, width)


def _edge(a: Any, value: Any, axis: int, name: str) -> Any:
    """``prepend``/``append`` of :func:`diff`: a 0-d value or number broadcast to ``a``'s shape
    with length 1 along ``axis``; an array is used as given."""
    shape = list(_shape(a))
    shape[axis] = 1
    data = raw(a)
    if type(value) in (int, float):
        xp = ns(data)
        return xp.full(tuple(shape), value, dtype=data.dtype, device=backend.device(data))
    if not hasattr(raw(value), "shape"):
        raise TypeError(f"diff: {name} must be a number or an array, got {value!r}")
    return broadcast_to(value, tuple(shape)) if not _shape(value) else value


def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = None, append: Any = None) -> Tensor:
    """The ``n``-th forward difference along ``axis``, ``out[i] = a[i+1] - a[i]`` applied
    ``n`` times, as ``numpy.diff``; ``prepend``/``append`` (numbers or arrays) are joined to
    ``a`` along ``axis`` first.

    Raises:
        ValueError: a negative ``n``, an axis out of range, or a 0-d input.
    """
    n = int_arg("diff", "n", n, minimum=0)
    nd = len(_shape(a))
    if nd == 0:
        raise ValueError("diff: a must have at least 1 dimension, got shape ()")
    axis = axis_arg("diff", "axis", axis, nd)
    if prepend is not None or append is not None:
        parts = [a]
        if prepend is not None:
            parts.insert(0, _edge(a, prepend, axis, "prepend"))
        if append is not None:
            parts.append(_edge(a, append, axis, "append"))
        a = concat(parts, axis=axis)
    head = (slice(None),) * axis
    out = reshape(a, _shape(a))
    for _ in range(n):
        out = sub(getitem(out, head + (slice(1, None),)), getitem(out, head + (slice(None, -1),)))
    return out


def array_split(ary: Any, indices_or_sections: int | Sequence[int], axis: int = 0) -> list:
    """Split along ``axis`` into ``N`` nearly equal parts (an int: the first
    ``length % N`` parts one longer) or at the given indices, as ``numpy.array_split``.

    Raises:
        ValueError: a number of sections below 1, or an axis out of range.
    """
    nd = len(_shape(ary))
    if nd == 0:
        raise ValueError("array_split: ary must have at least 1 dimension, got shape ()")
    axis = axis_arg("array_split", "axis", axis, nd)
    if isinstance(indices_or_sections, (tuple, list)):
        return split(ary, [int_arg("array_split", "each index", i) for i in indices_or_sections],
                     axis=axis)
    sections = int_arg("array_split", "indices_or_sections", indices_or_sections)
    if not sections >= 1:
        raise ValueError(f"array_split: indices_or_sections must be >= 1 sections, got "
                         f"{sections}")
    length = _shape(ary)[axis]
    size, extra = divmod(length, sections)
    bounds = [0]
    for i in range(sections):
        bounds.append(bounds[-1] + size + (1 if i < extra else 0))
    head = (slice(None),) * axis
    return [getitem(ary, head + (slice(lo, hi),)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _split_along(ary: Any, indices_or_sections: Any, axis: int, need: int, name: str) -> list:
    if len(_shape(ary)) < need:
        raise ValueError(f"{name}: ary must have at least {need} dimensions, got shape "
                         f"{_shape(ary)}")
    return split(ary, indices_or_sections, axis=axis)


def hsplit(ary: Any, indices_or_sections: int | Sequence[int]) -> list:
    """Split along axis 1 (axis 0 for a 1-d input) into equal parts or at indices, as
    ``numpy.hsplit``."""
    axis = 1 if len(_shape(ary)) > 1 else 0
    return _split_along(ary, indices_or_sections, axis, 1, "hsplit")


def vsplit(ary: Any, indices_or_sections: int | Sequence[int]) -> list:
    """Split along axis 0 of an input of at least 2 dimensions, as ``numpy.vsplit``."""
    return _split_along(ary, indices_or_sections, 0, 2, "vsplit")


def dsplit(ary: Any, indices_or_sections: int | Sequence[int]) -> list:
    """Split along axis 2 of an input of at least 3 dimensions, as ``numpy.dsplit``."""
    return _split_along(ary, indices_or_sections, 2, 3, "dsplit")


def split(a: Tensor, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split along ``axis`` into equal sections (an int) or at the given indices (a list).

    Raises:
        ValueError: an int that does not divide the axis length.
    """
    length = a.shape[axis]
    if isinstance(indices_or_sections, int):
        if indices_or_sections <= 0 or length % indices_or_sections:
            raise ValueError(
                f"split: cannot split an axis of length {length} into {indices_or_sections} "
                "equal sections")
        step = length // indices_or_sections
        bounds = list(range(0, length + 1, step))
    else:
        bounds = [0, *indices_or_sections, length]
    axis_ = axis % a.ndim
    head = (slice(None),) * axis_
    # getitem, not a[...]: a raw array in gives Tensors out, and the key is made portable.
    return [getitem(a, head + (slice(lo, hi),)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def tile(a: Any, reps: Any) -> Tensor:
    """Repeat the whole array ``reps[i]`` times along each axis, as ``numpy.tile`` (a shorter
    ``reps`` is padded with ones in front, a shorter ``a`` gets leading axes of size 1).

    Raises:
        TypeError: a repetition count that is not an int.
        ValueError: a negative repetition count.
    """
    reps = (reps,) if not isinstance(reps, (tuple, list)) else tuple(reps)
    reps = tuple(int_arg("tile", "reps", r, minimum=0) for r in reps)
    shape = tuple(raw(a).shape)
    n = max(len(shape), len(reps))
    shape = (1,) * (n - len(shape)) + shape
    reps = (1,) * (n - len(reps)) + reps
    # (s0, s1) -> (1, s0, 1, s1) -> (r0, s0, r1, s1) -> (r0*s0, r1*s1)
    spread = reshape(a, tuple(x for s in shape for x in (1, s)))
    wide = broadcast_to(spread, tuple(x for r, s in zip(reps, shape) for x in (r, s)))
    return reshape(wide, tuple(r * s for r, s in zip(reps, shape)))


def repeat(a: Any, repeats: Any, axis: int | None = None) -> Tensor:
    """Repeat each element ``repeats`` times (an int, or one count per element along
    ``axis``), as ``numpy.repeat``; ``axis=None`` repeats the flattened array.

    Raises:
        TypeError: a count that is not an int.
        ValueError: a negative count, an axis out of range, or a count sequence whose length
            is not the axis length.
    """
    a_raw = raw(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    ndim = len(raw(a).shape)
    axis = int_arg("repeat", "axis", axis)
    if not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"repeat: axis={axis!r} is out of range for an array of "
                         f"{len(a_raw.shape)} dimensions")
    if ndim == 0:
        a, ndim = reshape(a, (1,)), 1
    axis %= ndim
    shape = tuple(raw(a).shape)
    if hasattr(repeats, "shape") or isinstance(repeats, (list, tuple)):
        counts = (backend.to_numpy(raw(repeats)).tolist() if hasattr(repeats, "shape")
                  else list(repeats))
        counts = [counts] if not isinstance(counts, list) else counts
        counts = [int_arg("repeat", "each count in repeats", c, minimum=0) for c in counts]
        if len(counts) == 1:
            repeats = counts[0]
        else:
            if len(counts) != shape[axis]:
                raise ValueError(f"repeat: {len(counts)} counts in repeats for an axis of "
                                 f"length {shape[axis]}")
            xp = ns(raw(a))
            index = [i for i, c in enumerate(counts) for _ in range(c)]
            return take(a, xp.asarray(index, dtype=xp.int64, device=backend.device(raw(a))),
                        axis=axis)
    repeats = int_arg("repeat", "repeats", repeats, minimum=0)
    spread = expand_dims(a, axis + 1)
    wide = broadcast_to(spread, shape[:axis + 1] + (repeats,) + shape[axis + 1:])
    return reshape(wide, shape[:axis] + (shape[axis] * repeats,) + shape[axis + 1:])


def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """The diagonal of the 2-d slices over ``axis1`` and ``axis2``, as ``numpy.diagonal``:
    those two axes are removed and the diagonal appended as the last axis (``offset`` > 0
    above the main diagonal).

    Raises:
        TypeError: a non-int ``offset``, ``axis1`` or ``axis2`` (as NumPy).
        ValueError: fewer than 2 dimensions, an axis out of range, or ``axis1 == axis2``.
    """
    shape = tuple(raw(a).shape)
    nd = len(shape)
    if nd < 2:
        raise ValueError(f"diagonal: needs an array of at least 2 dimensions, got shape {shape}")
    ax1, ax2 = axis_arg("diagonal", "axis1", axis1, nd), axis_arg("diagonal", "axis2", axis2, nd)
    if ax1 == ax2:
        raise ValueError(f"diagonal: axis1={axis1} and axis2={axis2} are the same axis")
    offset = int_arg("diagonal", "offset", offset)
    rest = [i for i in range(nd) if i not in (ax1, ax2)]
    moved = permute(a, tuple(rest) + (ax1, ax2))
    n, m = shape[ax1], shape[ax2]
    # In the flattened (n*m) matrix the diagonal is every (m+1)-th element from its start.
    start = offset if offset >= 0 else -offset * m
    length = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    flat = reshape(moved, tuple(shape[i] for i in rest) + (n * m,))
    head = (slice(None),) * len(rest)
    if length == 0:
        return getitem(flat, head + (slice(0, 0),))
    return getitem(flat, head + (slice(start, start + (length - 1) * (m + 1) + 1, m + 1),))
