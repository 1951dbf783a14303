"""Indexing: ``getitem`` (basic slicing and integer-array indexing) and its adjoint
``index_add_zeros`` (scatter the cotangent back, adding at repeated indices); NumPy's
``take``, ``take_along_axis`` and ``sort`` (with ``argsort``), whose adjoints add values in at
the indices. Each gather is its scatter's VJP and back, so gradients of any order work."""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops.shape import reshape
from npdeq.autodiff.ops.util import axis_arg, ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["getitem", "index_add_zeros", "take", "take_along_axis", "sort", "argsort"]


def _normalize_key(key: Any, like: Any) -> Any:
    """Unwrap Tensors in ``key``, turn lists into integer arrays of ``like``'s namespace, and
    end a basic key that leaves out trailing axes with an Ellipsis.

    ``x[0]`` means ``x[0, ...]`` in NumPy and CuPy, but the array API standard leaves such
    keys unspecified and array_api_strict refuses them; the explicit Ellipsis makes the same
    Tensor code index every namespace. (Integer-array keys are left as they are: the standard
    allows them only with integers on every axis, and refuses an Ellipsis beside them.)
    """
    if type(key) is not tuple:
        key = (key,)
    out = []
    indexed = 0  # entries that consume an axis; None adds one, Ellipsis stands for the rest
    complete = False  # an Ellipsis or an index array: nothing to append
    for k in key:
        t = type(k)
        if t is int or t is slice:
            indexed += 1
        elif k is None:
            pass
        elif k is Ellipsis:
            complete = True
        else:
            if isinstance(k, Tensor):
                k = k.data
            elif t is list:
                k = ns(like).asarray(k, device=backend.device(like))
            indexed += 1
            complete = complete or hasattr(k, "shape")
        out.append(k)
    if not complete and indexed < like.ndim:
        out.append(Ellipsis)
    return tuple(out)


def _is_advanced(key: tuple) -> bool:
    return any(hasattr(k, "shape") for k in key)


_getitem = primitive(lambda a, key: a[key], name="getitem")


def getitem(a: Any, key: Any) -> Tensor:
    """``a[key]`` with basic slicing (ints, slices, None, Ellipsis) and integer arrays."""
    return _getitem(a, _normalize_key(key, raw(a)))


@primitive
def index_add_zeros(g, shape, key):
    """``zeros(shape)`` with ``g`` added at ``key`` (repeated integer indices add up)."""
    xp = ns(g)
    if not _is_advanced(key):
        out = xp.zeros(shape, dtype=g.dtype, device=backend.device(g))
        if any(k is None for k in key):
            # The standard's setitem has no newaxis (array_api_strict refuses it): drop the
            # inserted axes from the key, and from g, where they have size 1.
            key = tuple(k for k in key if k is not None)
            g = xp.reshape(g, tuple(out[key].shape))
        out[key] = g
        return out
    return backend.scatter_add(shape, key, g)


defvjp(_getitem, lambda g, ans, a, key: index_add_zeros(g, tuple(a.shape), key))
defvjp(index_add_zeros, lambda g, ans, v, shape, key: _getitem(g, key))


# --- take, take_along_axis, sort ---------------------------------------------------------


def _index_array(indices: Any, like: Any, name: str) -> Any:
    """``indices`` (a Tensor, array, list or int) as an integer array of ``like``'s namespace
    on its device."""
    xp = ns(like)
    indices = raw(indices)
    if not hasattr(indices, "shape"):
        if isinstance(indices, float) or (isinstance(indices, list) and any(
                isinstance(i, float) for i in indices)):
            raise TypeError(f"{name}: indices must be integers, got {indices!r}")
        indices = xp.asarray(indices, dtype=xp.int64, device=backend.device(like))
    elif not xp.isdtype(indices.dtype, "integral"):
        raise TypeError(f"{name}: indices must be an integer array, got dtype {indices.dtype}")
    return indices


def _wrap_negative(indices: Any, length: int, name: str) -> Any:
    # NumPy's rule: -length <= i < length, negatives count from the end. One host check.
    xp = ns(indices)
    if backend.to_scalar(xp.any((indices < -length) | (indices >= length))):
        raise IndexError(f"{name}: an index is out of bounds for an axis of length {length}")
    return xp.where(indices < 0, indices + length, indices)


_take = primitive(lambda a, indices, axis: ns(a).take(a, indices, axis=axis), name="take")
# Zeros with v added at indices along axis: the adjoint of take.
_index_add = primitive(lambda v, indices, axis, length: backend.index_add(v, indices, axis,
                                                                          length),
                       name="index_add")
defvjp(_take, lambda g, ans, a, indices, axis: _index_add(g, indices, axis, a.shape[axis]))
defvjp(_index_add, lambda g, ans, v, indices, axis, length: _take(g, indices, axis))


def take(a: Any, indices: Any, axis: int | None = None) -> Tensor:
    """Elements of ``a`` at integer ``indices`` along ``axis`` (of the flattened array when
    None), as ``numpy.take``: the result has shape
    ``a.shape[:axis] + indices.shape + a.shape[axis + 1:]``. Negative indices count from
    the end; the gradient adds up at repeated indices.

    Raises:
        TypeError: indices that are not integers, or an axis that is not an int.
        ValueError: an axis out of range.
        IndexError: an index out of bounds.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.take(np.array([[1., 2.], [3., 4.]]), np.array([1, 1, 0]), axis=1).numpy()
        array([[2., 2., 1.],
               [4., 4., 3.]])
    """
    a_raw = raw(a)
    if axis is None:
        a, a_raw, axis = reshape(a, (-1,)), ns(a_raw).reshape(a_raw, (-1,)), 0
    axis = axis_arg("take", "axis", axis, a_raw.ndim)
    indices = _index_array(indices, a_raw, "take")
    flat = ns(indices).reshape(_wrap_negative(indices, a_raw.shape[axis], "take"), (-1,))
    out = _take(a, flat, axis)
    shape = tuple(a_raw.shape[:axis]) + tuple(indices.shape) + tuple(a_raw.shape[axis + 1:])
    if tuple(out.shape) == shape:
        return out
    return reshape(out, shape)


_take_along_axis = primitive(
    lambda a, indices, axis: ns(a).take_along_axis(a, indices, axis=axis),
    name="take_along_axis")
# Zeros with v added at indices along axis: the adjoint of take_along_axis.
_add_along_axis = primitive(
    lambda v, indices, axis, length: backend.add_along_axis(v, indices, axis, length),
    name="add_along_axis")
defvjp(_take_along_axis, lambda g, ans, a, indices, axis: _add_along_axis(
    g, indices, axis, a.shape[axis]))
defvjp(_add_along_axis, lambda g, ans, v, indices, axis, length: _take_along_axis(
    g, indices, axis))


def take_along_axis(a: Any, indices: Any, axis: int | None = -1) -> Tensor:
    """Pick values of ``a`` at ``indices`` along ``axis``, as ``numpy.take_along_axis``:
    ``indices`` has ``a``'s number of dimensions (the other axes broadcast), e.g. the result
    of ``argsort``; ``axis=None`` works on the flattened array with 1-d ``indices``.

    Raises:
        TypeError: indices that are not integers, or an axis that is not an int.
        ValueError: an axis out of range, or indices of another number of dimensions.
        IndexError: an index out of bounds.

    Example:
        >>> import numpy as np, npdeq
        >>> a = np.array([[3., 1., 2.]])
        >>> npdeq.take_along_axis(a, npdeq.argsort(a, axis=1), axis=1).numpy()
        array([[1., 2., 3.]])
    """
    a_raw = raw(a)
    if axis is None:
        a, a_raw, axis = reshape(a, (-1,)), ns(a_raw).reshape(a_raw, (-1,)), 0
    axis = axis_arg("take_along_axis", "axis", axis, a_raw.ndim)
    indices = _index_array(indices, a_raw, "take_along_axis")
    if indices.ndim != a_raw.ndim:
        raise ValueError(f"take_along_axis: indices of shape {tuple(indices.shape)} need as "
                         f"many dimensions as the array of shape {tuple(a_raw.shape)}")
    return _take_along_axis(a, _wrap_negative(indices, a_raw.shape[axis], "take_along_axis"),
                            axis)


def argsort(a: Any, axis: int | None = -1, *, stable: bool = True) -> Tensor:
    """The indices that sort ``a`` along ``axis`` (the flattened array when None), as
    ``numpy.argsort``; ties keep their order. An integer Tensor, not differentiable."""
    a_raw = raw(a)
    xp = ns(a_raw)
    if axis is None:
        a_raw, axis = xp.reshape(a_raw, (-1,)), 0
    axis = axis_arg("argsort", "axis", axis, a_raw.ndim)
    return Tensor(xp.argsort(a_raw, axis=axis, stable=stable))


def sort(a: Any, axis: int | None = -1) -> Tensor:
    """``a`` sorted along ``axis`` (the flattened array when None), as ``numpy.sort``; the
    gradient follows the permutation (each input gets the cotangent of the place it moved
    to).

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.sort(np.array([3., 1., 2.])).numpy()
        array([1., 2., 3.])
    """
    a_raw = raw(a)
    if axis is None:
        a, a_raw, axis = reshape(a, (-1,)), ns(a_raw).reshape(a_raw, (-1,)), 0
    axis = axis_arg("sort", "axis", axis, a_raw.ndim)
    return _take_along_axis(a, argsort(a_raw, axis=axis).data, axis)
