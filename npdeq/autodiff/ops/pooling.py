"""1-D and 2-D average and max pooling, with PyTorch's argument conventions.

All four are composites over the sliding-window primitives of
:mod:`npdeq.autodiff.ops.conv` (1-D pooling runs on a unit height axis), so gradients of
any order come from those primitives' rules. Average pooling is a mean over the window axes
(padded zeros count, PyTorch's ``count_include_pad=True``). Max pooling pads with ``-inf``
and keeps, in each window, the first position holding the largest value (as
``argmax``; NaN counts as largest, so it propagates): the gradient goes to that one
position, also on ties, as PyTorch's.

May import: ``npdeq.backend`` and the other op modules (no NumPy).
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops.util import ns, raw
from npdeq.autodiff.ops.conv import (check_image, check_pair, check_sequence, check_single,
                                     image_windows)
from npdeq.autodiff.ops.elementwise import where
from npdeq.autodiff.ops.reductions import mean, sum
from npdeq.autodiff.ops.shape import pad, reshape
from npdeq.autodiff.tensor import Tensor

__all__ = ["avg_pool1d", "avg_pool2d", "max_pool1d", "max_pool2d"]

Pair = int | tuple[int, int]


def _pool_windows(x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int], fill: float,
                  what: str, shown: tuple | None = None) -> Tensor:
    """``(B, C, kh, kw, Ho, Wo)`` windows of ``x`` padded by ``fill``. ``shown``: the
    ``(kernel, padding, dilation, input shape)`` to name in errors when they differ from
    these (1-D pooling names its own, without the unit height axis)."""
    (ph, pw), (kh, kw), (dh, dw) = padding, kernel, dilation
    k_, p_, d_, shape_ = shown or (kernel, padding, dilation, tuple(x.shape))
    check_half_kernel(kernel, padding, what, (p_, k_))
    if x.shape[2] + 2 * ph < dh * (kh - 1) + 1 or x.shape[3] + 2 * pw < dw * (kw - 1) + 1:
        raise ValueError(f"{what}: kernel {k_} with dilation {d_} does not fit the input of "
                         f"shape {shape_} padded by {p_}")
    if ph or pw:
        x = pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), value=fill)
    return image_windows(x, kernel, stride, dilation)


def _max_over_windows(cols: Tensor) -> Tensor:
    """The largest entry of each window, with one winner (the first) per window."""
    b, c, kh, kw, ho, wo = cols.shape
    flat = reshape(cols, (b, c, kh * kw, ho, wo))
    values = raw(flat)
    xp = ns(values)
    # A constant for the tape: the gradient goes through ``where`` to the winner only.
    winner = xp.argmax(values, axis=2, keepdims=True)
    positions = xp.reshape(xp.arange(kh * kw, dtype=winner.dtype, device=backend.device(values)),
                           (1, 1, kh * kw, 1, 1))
    return sum(where(positions == winner, flat, 0.0), axis=2)


def check_half_kernel(kernel: tuple[int, ...], padding: tuple[int, ...], what: str,
                      shown: tuple | None = None) -> None:
    """Raise unless the padding is at most half the kernel on every axis (PyTorch's rule);
    ``shown``: the ``(padding, kernel)`` to name, if not these."""
    if any(2 * p > k for p, k in zip(padding, kernel)):
        p_, k_ = shown or (padding, kernel)
        raise ValueError(f"{what}: padding {p_} must be at most half the kernel size {k_}")


def check_pool_flags(ceil_mode: Any, return_indices: Any, what: str) -> None:
    """Raise unless ``ceil_mode`` and ``return_indices`` are False (the only modes here)."""
    if ceil_mode is not False:
        raise ValueError(f"{what}: ceil_mode={ceil_mode!r} is not supported (only False: the "
                         "output size is rounded down)")
    if return_indices is not False:
        raise ValueError(f"{what}: return_indices={return_indices!r} is not supported (only "
                         "False)")


def _geometry(what: str, to_tuple: Any, kernel_size: Any, stride: Any, padding: Any,
              dilation: Any = 1) -> tuple:
    """The checked ``(kernel, stride, padding, dilation)``, each through ``to_tuple``
    (``check_single`` or ``check_pair``); the stride defaults to the kernel."""
    kernel = to_tuple(kernel_size, f"{what}: kernel_size", 1)
    return (kernel, kernel if stride is None else to_tuple(stride, f"{what}: stride", 1),
            to_tuple(padding, f"{what}: padding", 0), to_tuple(dilation, f"{what}: dilation", 1))


def avg_pool1d(x: Any, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
               padding: int | tuple[int] = 0) -> Tensor:
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d`` with
    ``count_include_pad=True`` and ``ceil_mode=False`` (padded zeros count in the average).

    Args:
        x: ``(B, C, L)`` Tensor or array.
        kernel_size: int or ``(k,)``.
        stride: int or ``(s,)``; default ``kernel_size``.
        padding: int or ``(p,)``, at most half the kernel size.

    Returns:
        ``(B, C, Lo)`` Tensor with ``Lo = (L + 2 p - k) // s + 1``.

    Raises:
        ValueError: a wrong rank, bad sizes, padding over half the kernel, or a kernel longer
            than the padded input.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.avg_pool1d(np.arange(6.0).reshape(1, 1, 6), 2).numpy().tolist()
        [[[0.5, 2.5, 4.5]]]
    """
    check_sequence(x, "avg_pool1d")
    k, s, p, _ = _geometry("avg_pool1d", check_single, kernel_size, stride, padding)
    b, c, n = x.shape
    cols = _pool_windows(reshape(x, (b, c, 1, n)), (1, k), (1, s), (0, p), (1, 1), 0.0,
                         "avg_pool1d", (k, p, 1, tuple(x.shape)))
    return reshape(mean(cols, axis=(2, 3)), (b, c, cols.shape[5]))


def avg_pool2d(x: Any, kernel_size: Pair, stride: Pair | None = None,
               padding: Pair = 0) -> Tensor:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d`` with
    ``count_include_pad=True`` and ``ceil_mode=False`` (padded zeros count in the average).

    Args:
        x: ``(B, C, H, W)`` Tensor or array.
        kernel_size: int or ``(kh, kw)``.
        stride: int or ``(sh, sw)``; default ``kernel_size``.
        padding: int or ``(ph, pw)``, at most half the kernel size.

    Returns:
        ``(B, C, Ho, Wo)`` Tensor with ``Ho = (H + 2 ph - kh) // sh + 1`` (likewise ``Wo``).

    Raises:
        ValueError: a wrong rank, bad sizes, padding over half the kernel, or a kernel larger
            than the padded input.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.avg_pool2d(np.ones((1, 1, 4, 4)), 2).shape
        (1, 1, 2, 2)
    """
    check_image(x, "avg_pool2d")
    kernel, stride_, padding_, _ = _geometry("avg_pool2d", check_pair, kernel_size, stride, padding)
    cols = _pool_windows(x, kernel, stride_, padding_, (1, 1), 0.0, "avg_pool2d")
    return mean(cols, axis=(2, 3))


def max_pool1d(x: Any, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
               padding: int | tuple[int] = 0, dilation: int | tuple[int] = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """1-D max pooling, as ``torch.nn.functional.max_pool1d`` (padding is ``-inf``).

    The gradient of each output goes to the one input it was taken from: the first largest
    entry of its window (ties have one winner, as PyTorch's).

    Args:
        x: ``(B, C, L)`` Tensor or array.
        kernel_size: int or ``(k,)``.
        stride: int or ``(s,)``; default ``kernel_size``.
        padding: int or ``(p,)``, at most half the kernel size.
        dilation: int or ``(d,)``, the spacing of a window's entries.
        ceil_mode, return_indices: only ``False`` (PyTorch's defaults) is supported.

    Returns:
        ``(B, C, Lo)`` Tensor with ``Lo = (L + 2 p - d (k - 1) - 1) // s + 1``.

    Raises:
        ValueError: a wrong rank, bad sizes, padding over half the kernel, a kernel longer
            than the padded input, or ``ceil_mode``/``return_indices`` other than False.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.max_pool1d(np.array([[[1.0, 3.0, 2.0, 0.0]]]), 2).numpy().tolist()
        [[[3.0, 2.0]]]
    """
    check_sequence(x, "max_pool1d")
    k, s, p, d = _geometry("max_pool1d", check_single, kernel_size, stride, padding, dilation)
    check_pool_flags(ceil_mode, return_indices, "max_pool1d")
    b, c, n = x.shape
    cols = _pool_windows(reshape(x, (b, c, 1, n)), (1, k), (1, s), (0, p), (1, d),
                         -float("inf"), "max_pool1d", (k, p, d, tuple(x.shape)))
    return reshape(_max_over_windows(cols), (b, c, cols.shape[5]))


def max_pool2d(x: Any, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
               dilation: Pair = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d`` (padding is ``-inf``).

    The gradient of each output goes to the one input it was taken from: the first largest
    entry of its window in row-major order (ties have one winner, as PyTorch's).

    Args:
        x: ``(B, C, H, W)`` Tensor or array.
        kernel_size: int or ``(kh, kw)``.
        stride: int or ``(sh, sw)``; default ``kernel_size``.
        padding: int or ``(ph, pw)``, at most half the kernel size.
        dilation: int or ``(dh, dw)``, the spacing of a window's entries.
        ceil_mode, return_indices: only ``False`` (PyTorch's defaults) is supported.

    Returns:
        ``(B, C, Ho, Wo)`` Tensor with ``Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1``
        (likewise ``Wo``).

    Raises:
        ValueError: a wrong rank, bad sizes, padding over half the kernel, a kernel larger
            than the padded input, or ``ceil_mode``/``return_indices`` other than False.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2).numpy().tolist()
        [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
    check_image(x, "max_pool2d")
    kernel, stride_, padding_, dilation_ = _geometry("max_pool2d", check_pair, kernel_size, stride,
                                                     padding, dilation)
    check_pool_flags(ceil_mode, return_indices, "max_pool2d")
    cols = _pool_windows(x, kernel, stride_, padding_, dilation_, -float("inf"), "max_pool2d")
    return _max_over_windows(cols)
