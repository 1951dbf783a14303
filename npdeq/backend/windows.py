"""Image windows (im2col / col2im) and scatter-add: what convolution and indexing VJPs need
and the array API standard lacks. Strided views on NumPy and CuPy, a portable fallback in
the standard's functions elsewhere.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from npdeq.backend.namespace import Array, array_namespace, device, is_cupy, is_numpy

__all__ = ["sliding_windows", "fold_windows", "scatter_add", "add_rows"]


def sliding_windows(x: Array, kernel: tuple[int, int], stride: tuple[int, int],
                    dilation: tuple[int, int]) -> Array:
    """Gather the sliding windows of a padded image batch (im2col).

    Args:
        x: ``(B, C, H, W)`` array, already padded.
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        dilation: ``(dh, dw)``.

    Returns:
        ``(B, C, kh, kw, Ho, Wo)`` array (a copy) in ``x``'s namespace and on its device, with
        ``Ho = (H - dh*(kh-1) - 1) // sh + 1`` and likewise ``Wo``.
    """
    xp = array_namespace(x)
    b, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"kernel {kernel} with dilation {dilation} does not fit the padded input of spatial "
            f"size {(h, w)}"
        )
    if is_numpy(xp) or is_cupy(xp):
        lib = np if is_numpy(xp) else importlib.import_module("cupy")
        s = x.strides
        view = lib.lib.stride_tricks.as_strided(
            x,
            shape=(b, c, kh, kw, ho, wo),
            strides=(s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw),
        )
        return lib.ascontiguousarray(view)
    # Portable fallback: one strided slice per kernel offset.
    rows = []
    for i in range(kh):
        cols = []
        for j in range(kw):
            cols.append(x[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh,
                          j * dw: j * dw + sw * (wo - 1) + 1: sw])
        rows.append(xp.stack(cols, axis=2))
    return xp.stack(rows, axis=2)


def fold_windows(cols: Array, image_shape: tuple[int, int, int, int], stride: tuple[int, int],
                 dilation: tuple[int, int]) -> Array:
    """Sum sliding windows back into an image (col2im): the adjoint of :func:`sliding_windows`.

    Args:
        cols: ``(B, C, kh, kw, Ho, Wo)`` array.
        image_shape: ``(B, C, H, W)`` of the padded image.
        stride: ``(sh, sw)``.
        dilation: ``(dh, dw)``.

    Returns:
        ``(B, C, H, W)`` array where overlapping windows are added.
    """
    xp = array_namespace(cols)
    _, _, kh, kw, ho, wo = cols.shape
    sh, sw = stride
    dh, dw = dilation
    out = xp.zeros(image_shape, dtype=cols.dtype, device=device(cols))
    # kh*kw strided slice-adds: works in every namespace and is what NumPy does fastest too.
    for i in range(kh):
        for j in range(kw):
            key = (slice(None), slice(None),
                   slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
                   slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))
            out[key] = out[key] + cols[:, :, i, j, :, :]
    return out


# --- scatter-add ---------------------------------------------------------------------------


def scatter_add(shape: tuple[int, ...], key: Any, values: Array) -> Array:
    """``zeros(shape)`` with ``values`` added at index ``key``; repeated indices add up.

    Args:
        shape: shape of the result.
        key: an index tuple (slices, ints, integer arrays) valid for an array of ``shape``.
        values: array shaped like ``zeros(shape)[key]``.

    Returns:
        Array of ``shape`` with ``values``' dtype, namespace and device.
    """
    xp = array_namespace(values)
    out = xp.zeros(shape, dtype=values.dtype, device=device(values))
    if is_numpy(xp) or is_cupy(xp):
        # ufunc.at is unbuffered: repeated indices add up (cupyx.scatter_add, its older
        # spelling on CuPy, is deprecated since CuPy 14).
        lib = np if is_numpy(xp) else importlib.import_module("cupy")
        lib.add.at(out, key, values)
        return out
    # Portable fallback: find the flat position of every selected element, then add them in
    # with a one-hot matrix product (O(selected * size) memory: fine for tests, slow at scale).
    size = math.prod(shape)
    positions = xp.reshape(xp.reshape(xp.arange(size, device=device(values)), shape)[key], (-1,))
    grid = xp.arange(size, device=device(values))
    onehot = xp.astype(positions[:, None] == grid[None, :], values.dtype)
    return xp.reshape(xp.reshape(values, (-1,)) @ onehot, shape)




def add_rows(num_rows: int, index: Array, values: Array) -> Array:
    """Rows added up by index (an embedding's gradient): ``out[index[i]] += values[i]``.

    Args:
        num_rows: rows of the result.
        index: 1-D integer array of row numbers in ``[0, num_rows)``, repeats allowed.
        values: array of shape ``(len(index), ...)``.

    Returns:
        Array of shape ``(num_rows, ...)`` with ``values``' dtype, namespace and device.
    """
    xp = array_namespace(values)
    shape = (num_rows,) + tuple(values.shape[1:])
    if is_numpy(xp) or is_cupy(xp):
        return scatter_add(shape, (index,), values)
    # Portable fallback: a one-hot (num_rows, len(index)) matrix product, O(num_rows * len)
    # memory (the standard has no scatter); fine for tests and small vocabularies.
    rows = xp.arange(num_rows, dtype=index.dtype, device=device(values))
    onehot = xp.astype(rows[:, None] == index[None, :], values.dtype)
    # The row width given, not -1: there may be no rows.
    flat = xp.reshape(values, (values.shape[0], math.prod(shape[1:])))
    return xp.reshape(onehot @ flat, shape)
