"""Convolution kernels: the forward and both VJPs of a batched 2-D cross-correlation.

Three paths, chosen per call:

- NumPy, stride 1: per image, one BLAS product per kernel row on a row-window copy of the
  input (:mod:`.conv_rows`); the input VJP runs the same products (a stride-1 transposed
  convolution is a stride-1 convolution);
- NumPy, strided: the same products on row windows split by stride phase
  (:mod:`.conv_phases`);
- strided elsewhere (``array_api_strict``, CuPy): im2col, one product on the small window
  matrix (:mod:`.conv_im2col`);
- stride 1 elsewhere (``array_api_strict``, CuPy): one product per kernel offset on a padded
  grid, in the standard's functions (:mod:`.conv_grid`), also the reference the NumPy path is
  tested against.

NumPy work arrays are reused across calls (:mod:`.workspace`); results are always fresh
C-contiguous arrays (NumPy, CuPy).
"""

from __future__ import annotations

from typing import Any

from npdeq.backend.conv_grid import geometry, grid_forward, grid_input_grad, grid_weight_grad
from npdeq.backend.conv_im2col import strided_forward, strided_input_grad, strided_weight_grad
from npdeq.backend.conv_phases import phases_forward, phases_input_grad, phases_weight_grad
from npdeq.backend.conv_rows import rows_forward, rows_input_grad, rows_weight_grad
from npdeq.backend.namespace import array_namespace, is_numpy

__all__ = ["conv_forward", "conv_input_grad", "conv_weight_grad"]


def conv_forward(x: Any, w: Any, stride: tuple[int, int], padding: tuple,
                 dilation: tuple[int, int], groups: int, bias: Any = None) -> Any:
    """Cross-correlation of an image batch with a kernel bank, plus an optional bias.

    Args:
        x: ``(B, C, H, W)`` array.
        w: ``(O, C // groups, kh, kw)`` array.
        stride: ``(sh, sw)``; dilation: ``(dh, dw)``.
        padding: ``((top, bottom), (left, right))`` zeros around the image.
        groups: channel groups, dividing ``C`` and ``O``.
        bias: ``(O,)`` array or None.

    Returns:
        ``(B, O, Ho, Wo)`` array in ``x``'s namespace and device, of the dtype ``x``, ``w``
        and ``bias`` promote to (C-contiguous on NumPy and CuPy).
    """
    geo = geometry(x.shape, w.shape[2:], stride, dilation, padding)
    xp = array_namespace(x, w)
    if is_numpy(xp):  # the bias is added block by block
        if tuple(stride) == (1, 1):
            return rows_forward(x, w, padding, dilation, groups, bias)
        return phases_forward(x, w, stride, padding, dilation, groups, bias)
    if tuple(stride) != (1, 1):
        y = strided_forward(x, w, geo, stride, padding, dilation, groups)
    else:
        y = grid_forward(x, w, stride, padding, dilation, groups)
    return y if bias is None else y + xp.reshape(bias, (1, w.shape[0], 1, 1))


def conv_input_grad(g: Any, w: Any, image_shape: tuple[int, int, int, int],
                    stride: tuple[int, int], padding: tuple, dilation: tuple[int, int],
                    groups: int) -> Any:
    """The VJP of :func:`conv_forward` with respect to ``x`` (a transposed convolution).

    Args:
        g: ``(B, O, Ho, Wo)`` cotangent.
        w: ``(O, C // groups, kh, kw)``.
        image_shape: ``(B, C, H, W)``.
        stride, padding, dilation, groups: as for :func:`conv_forward`.

    Returns:
        ``(B, C, H, W)`` array in ``g``'s namespace, dtype and device.
    """
    geo = geometry(image_shape, w.shape[2:], stride, dilation, padding)
    if is_numpy(array_namespace(g, w)):
        if tuple(stride) == (1, 1):
            return rows_input_grad(g, w, image_shape, padding, dilation, groups)
        return phases_input_grad(g, w, image_shape, stride, padding, dilation, groups)
    if tuple(stride) != (1, 1):
        return strided_input_grad(g, w, geo, image_shape, stride, padding, dilation, groups)
    return grid_input_grad(g, w, image_shape, stride, padding, dilation, groups)


def conv_weight_grad(x: Any, g: Any, weight_shape: tuple[int, int, int, int],
                     stride: tuple[int, int], padding: tuple, dilation: tuple[int, int],
                     groups: int) -> Any:
    """The VJP of :func:`conv_forward` with respect to ``w``.

    Args:
        x: ``(B, C, H, W)`` input.
        g: ``(B, O, Ho, Wo)`` cotangent.
        weight_shape: ``(O, C // groups, kh, kw)``.
        stride, padding, dilation, groups: as for :func:`conv_forward`.

    Returns:
        ``(O, C // groups, kh, kw)`` array in ``x``'s namespace, dtype and device.
    """
    geo = geometry(x.shape, weight_shape[2:], stride, dilation, padding)
    if is_numpy(array_namespace(x, g)):
        if tuple(stride) == (1, 1):
            return rows_weight_grad(x, g, weight_shape, padding, dilation, groups)
        return phases_weight_grad(x, g, weight_shape, stride, padding, dilation, groups)
    if tuple(stride) != (1, 1):
        return strided_weight_grad(x, g, geo, weight_shape, stride, padding, dilation, groups)
    return grid_weight_grad(x, g, weight_shape, stride, padding, dilation, groups)
