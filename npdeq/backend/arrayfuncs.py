"""Array functions the array API standard lacks: ``einsum``, adding values in at integer
indices along one axis (the adjoint of ``take`` and ``take_along_axis``), a fast exact
per-row ``where`` (``select_rows``), and products of a
SciPy / CuPy sparse matrix with a dense array. NumPy and CuPy use their own functions; other
namespaces a portable fallback in the standard's functions (correct, not fast). SciPy and
``cupyx`` are imported lazily, only when a sparse matrix is passed: neither is a dependency.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from npdeq.backend.namespace import Array, array_namespace, device, is_cupy, is_numpy

__all__ = ["einsum", "index_add", "add_along_axis", "select_rows", "is_sparse_matrix",
           "sparse_matmul"]


def _library(xp: Any) -> Any:
    return np if is_numpy(xp) else importlib.import_module("cupy")


# --- select_rows -------------------------------------------------------------------------


def select_rows(mask: Array, a: Array, b: Array | float) -> Array:
    """``where(mask[:, None], a, b)`` for a ``(B,)`` bool ``mask`` and a ``(B, D)`` ``a``:
    row ``i`` of ``a`` where ``mask[i]``, else row ``i`` of ``b`` (a ``(B, D)`` array of
    ``a``'s dtype) or the number ``b``; a fresh array, exact for every value (NaN and
    infinities included).

    Solvers freeze samples row by row, and almost always every row is kept: NumPy's
    ``where`` takes one branch per element (about six times a copy's time on a 1 MiB
    float32 state), so on NumPy ``a`` is copied and only the other rows are overwritten.

    Example:
        >>> import numpy as np
        >>> select_rows(np.array([True, False]), np.ones((2, 2)), 0.0).tolist()
        [[1.0, 1.0], [0.0, 0.0]]
    """
    other_array = hasattr(b, "shape")
    if type(a) is np.ndarray and type(mask) is np.ndarray and a.ndim == 2 and (
            not other_array or (type(b) is np.ndarray and b.shape == a.shape
                                and b.dtype == a.dtype)):
        if a.size < _SMALL_SELECT:  # where's branches cost less than the two calls below
            return np.where(mask[:, None], a, b)
        out = a.copy()
        if not mask.all():
            rows = np.logical_not(mask)
            out[rows] = b[rows] if other_array else b
        return out
    return array_namespace(mask, a).where(mask[:, None], a, b)


# Below this many elements select_rows takes NumPy's where as it is.
_SMALL_SELECT = 4096


# --- einsum ------------------------------------------------------------------------------


def einsum(subscripts: str, *operands: Array) -> Array:
    """``numpy.einsum`` with explicit subscripts (``'ij,jk->ik'``, letters only, no ``...``)
    in any namespace: NumPy's or CuPy's own, elsewhere aligned broadcasting and sums.

    Size-1 axes broadcast against the other operands' axes of the same label, as in NumPy.
    """
    xp = array_namespace(*operands)
    if is_numpy(xp) or is_cupy(xp):
        return _library(xp).einsum(subscripts, *operands)
    inputs, output = subscripts.split("->")
    labels = []
    for term in inputs.split(","):
        labels.extend(c for c in term if c not in labels)
    total = None
    for term, x in zip(inputs.split(","), operands):
        # A label repeated inside one operand takes its diagonal: multiply by the identity
        # on the two axes and sum one of them away.
        term = list(term)
        while len(set(term)) < len(term):
            first = next(i for i, c in enumerate(term) if term.index(c) != i)
            i0 = term.index(term[first])
            n = x.shape[i0]
            eye = xp.eye(n, dtype=x.dtype, device=device(x))
            shape = [1] * x.ndim
            shape[i0], shape[first] = n, n
            x = xp.sum(x * xp.reshape(eye, tuple(shape)), axis=first)
            del term[first]
        # Put the operand's axes in the order of ``labels``, with size 1 for missing ones.
        order = [term.index(c) for c in labels if c in term]
        x = xp.permute_dims(x, tuple(order))
        present = [c for c in labels if c in term]
        shape = tuple(x.shape[present.index(c)] if c in present else 1 for c in labels)
        x = xp.reshape(x, shape)
        total = x if total is None else total * x
    summed = tuple(i for i, c in enumerate(labels) if c not in output)
    if summed:
        total = xp.sum(total, axis=summed)
    kept = [c for c in labels if c in output]
    return xp.permute_dims(total, tuple(kept.index(c) for c in output))


# --- index-add ---------------------------------------------------------------------------


def index_add(values: Array, indices: Array, axis: int, length: int) -> Array:
    """Zeros with axis ``axis`` of length ``length``, and ``values[..., k, ...]`` added at
    ``indices[k]`` along that axis (repeated indices add up): the adjoint of
    ``take(a, indices, axis)`` for 1-d integer ``indices``.

    Returns:
        Array of ``values``' dtype, namespace and device, shaped like ``values`` with axis
        ``axis`` of length ``length``.
    """
    xp = array_namespace(values)
    shape = tuple(values.shape[:axis]) + (length,) + tuple(values.shape[axis + 1:])
    if is_numpy(xp) or is_cupy(xp):
        out = xp.zeros(shape, dtype=values.dtype, device=device(values))
        _library(xp).add.at(out, (slice(None),) * axis + (indices,), values)
        return out
    # Portable fallback: a product with the one-hot matrix of the indices.
    grid = xp.arange(length, device=device(values), dtype=indices.dtype)
    onehot = xp.astype(indices[:, None] == grid[None, :], values.dtype)
    moved = xp.moveaxis(values, axis, -1) @ onehot
    return xp.moveaxis(moved, -1, axis)


def add_along_axis(values: Array, indices: Array, axis: int, length: int) -> Array:
    """The adjoint of ``take_along_axis``: zeros shaped like ``values`` with axis ``axis`` of
    length ``length``, and ``values`` added at ``indices`` along that axis (``indices`` of
    ``values``' shape; repeated indices add up)."""
    xp = array_namespace(values)
    shape = tuple(values.shape[:axis]) + (length,) + tuple(values.shape[axis + 1:])
    if is_numpy(xp) or is_cupy(xp):
        lib = _library(xp)
        out = xp.zeros(shape, dtype=values.dtype, device=device(values))
        key = list(lib.ogrid[tuple(slice(n) for n in values.shape)]) if values.ndim else []
        key[axis] = indices
        lib.add.at(out, tuple(key), values)
        return out
    grid = xp.arange(length, device=device(values), dtype=indices.dtype)
    idx = xp.moveaxis(indices, axis, -1)
    onehot = xp.astype(idx[..., None] == grid, values.dtype)  # (..., K, length)
    moved = xp.sum(xp.moveaxis(values, axis, -1)[..., None] * onehot, axis=-2)
    return xp.moveaxis(moved, -1, axis)


# --- sparse matrices ---------------------------------------------------------------------


def is_sparse_matrix(a: Any) -> bool:
    """Whether ``a`` is a SciPy sparse matrix/array or a ``cupyx.scipy.sparse`` matrix
    (checked without importing either library unless ``a`` comes from it)."""
    module = type(a).__module__ or ""
    if module.startswith("scipy.sparse"):
        return importlib.import_module("scipy.sparse").issparse(a)
    if module.startswith("cupyx.scipy.sparse"):
        return importlib.import_module("cupyx.scipy.sparse").issparse(a)
    return False


def sparse_matmul(a: Any, x: Array, transpose: bool = False) -> Array:
    """``a @ x`` (``a.T @ x`` with ``transpose``) for a sparse matrix ``a`` of the library of
    ``x`` (SciPy with NumPy, ``cupyx`` with CuPy) and a dense 1-d or 2-d ``x``; other
    namespaces gather and add with the standard's functions. The caller checks shapes and
    dtypes.

    Returns:
        Dense array in ``x``'s namespace, on its device, of ``x``'s dtype.
    """
    xp = array_namespace(x)
    if transpose:
        a = a.T
    if is_numpy(xp) or is_cupy(xp):
        out = a @ x
        return out if not hasattr(out, "toarray") else out.toarray()
    coo = a.tocoo()
    dev = device(x)
    rows = xp.asarray(np.asarray(coo.row, dtype=np.int64), device=dev)
    cols = xp.asarray(np.asarray(coo.col, dtype=np.int64), device=dev)
    vals = xp.asarray(np.asarray(coo.data), device=dev, dtype=x.dtype)
    gathered = xp.take(x, cols, axis=0)
    weighted = gathered * (vals if x.ndim == 1 else vals[:, None])
    return index_add(weighted, rows, 0, a.shape[0])
