"""Indexing: ``getitem`` (basic slicing and integer-array indexing) and its adjoint
``index_add_zeros`` (scatter the cotangent back, adding at repeated indices). Each is the
other's VJP, so gradients of any order work."""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops._util import ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["getitem", "index_add_zeros"]


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


getitem_ = primitive(lambda a, key: a[key], name="getitem")


def getitem(a: Any, key: Any) -> Tensor:
    """``a[key]`` with basic slicing (ints, slices, None, Ellipsis) and integer arrays."""
    return getitem_(a, _normalize_key(key, raw(a)))


def _index_add_zeros(g, shape, key):
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


index_add_zeros = primitive(_index_add_zeros, name="index_add_zeros")
"""``zeros(shape)`` with ``g`` added at ``key`` (repeated integer indices add up)."""

defvjp(getitem_, lambda g, ans, a, key: index_add_zeros(g, tuple(a.shape), key))
defvjp(index_add_zeros, lambda g, ans, v, shape, key: getitem_(g, key))
