"""2-D convolution and average pooling through im2col, with PyTorch's argument conventions.

Two primitives carry the work: ``_windows`` gathers the sliding windows of a padded image
batch (``backend.sliding_windows``) and ``_fold`` sums windows back into an image
(``backend.fold_windows``). They are each other's adjoint, so each is the other's VJP and
gradients of any order work. ``conv2d`` is then a reshape and one batched matmul (groups
become a batch axis), ``avg_pool2d`` a mean over the window axes; both are composites.

May import: ``npdeq.backend`` and the other op modules (no NumPy).
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops.linalg import matmul
from npdeq.autodiff.ops.reductions import mean
from npdeq.autodiff.ops.shape import pad, reshape
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["conv2d", "avg_pool2d"]

Pair = int | tuple[int, int]


def _windows_raw(x, kernel, stride, dilation):
    return backend.sliding_windows(x, kernel, stride, dilation)


def _fold_raw(cols, image_shape, stride, dilation):
    return backend.fold_windows(cols, image_shape, stride, dilation)


_windows = primitive(_windows_raw, name="sliding_windows")
"""``(B, C, H, W) -> (B, C, kh, kw, Ho, Wo)``: the windows of an already padded batch."""

_fold = primitive(_fold_raw, name="fold_windows")
"""``(B, C, kh, kw, Ho, Wo) -> (B, C, H, W)``: overlapping windows summed into an image."""

defvjp(_windows, lambda g, ans, x, kernel, stride, dilation:
       _fold(g, tuple(x.shape), stride, dilation))
defvjp(_fold, lambda g, ans, cols, image_shape, stride, dilation:
       _windows(g, tuple(cols.shape[2:4]), stride, dilation))


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as a pair, each at least ``minimum``."""
    single = backend.as_count(value)
    pair = (single, single) if single is not None else (
        tuple(backend.as_count(v) for v in value) if isinstance(value, (tuple, list)) else ())
    if len(pair) != 2 or None in pair:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def _padding(padding: Any, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(before, after)`` padding of the height and width axes."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride {stride}")
        # As PyTorch: an odd total pads one more after than before.
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((t // 2, t - t // 2) for t in total)  # type: ignore[return-value]
    ph, pw = _pair(padding, "padding", 0)
    return (ph, ph), (pw, pw)


def _padded_windows(x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                    dilation: tuple[int, int], padding: tuple, what: str) -> Tensor:
    """``(B, C, kh, kw, Ho, Wo)`` windows of ``x`` zero-padded by ``padding``."""
    (pt, pb), (pl, pr) = padding
    h, w = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    if h < dilation[0] * (kernel[0] - 1) + 1 or w < dilation[1] * (kernel[1] - 1) + 1:
        raise ValueError(
            f"{what}: kernel {kernel} with dilation {dilation} does not fit the input of shape "
            f"{tuple(x.shape)} padded by {padding} (padded spatial size {(h, w)})")
    if pt or pb or pl or pr:
        x = pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    return _windows(x, kernel, stride, dilation)


def _check_image(x: Any, what: str) -> None:
    if len(x.shape) != 4:
        raise ValueError(f"{what}: input must have shape (B, C, H, W), got shape "
                         f"{tuple(x.shape)}")


def conv2d(x: Any, weight: Any, bias: Any = None, stride: Pair = 1,
           padding: Pair | str = 0, dilation: Pair = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    ``out[b, o, i, j] = bias[o] + sum_{c, p, q} weight[o, c, p, q] *
    xpad[b, g*Cg + c, i*sh + p*dh, j*sw + q*dw]`` with ``g`` the group of output channel ``o``.

    Args:
        x: ``(B, C_in, H, W)`` Tensor or array.
        weight: ``(C_out, C_in // groups, kh, kw)``.
        bias: ``(C_out,)`` or None.
        stride: int or ``(sh, sw)``, >= 1.
        padding: int or ``(ph, pw)`` zeros added on both sides, or ``'valid'`` (none) or
            ``'same'`` (output size equals input size; stride 1 only).
        dilation: int or ``(dh, dw)``, >= 1.
        groups: number of channel groups; divides both ``C_in`` and ``C_out``.

    Returns:
        ``(B, C_out, Ho, Wo)`` Tensor with ``Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1``
        (likewise ``Wo``), in ``x``'s namespace and on its device.

    Raises:
        ValueError: wrong ranks, channel counts that do not match ``groups``, a bias of the
            wrong shape, bad stride/padding/dilation, or a kernel larger than the padded input.

    Example:
        >>> import numpy as np, npdeq
        >>> out = npdeq.conv2d(np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3)), padding=1)
        >>> out.shape
        (2, 4, 5, 5)
    """
    _check_image(x, "conv2d")
    if len(weight.shape) != 4:
        raise ValueError(f"conv2d: weight must have shape (C_out, C_in // groups, kh, kw), "
                         f"got shape {tuple(weight.shape)}")
    count = backend.as_count(groups)
    if count is None or count < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    groups = count
    b, c_in = x.shape[0], x.shape[1]
    c_out, c_group, kh, kw = weight.shape
    if c_in % groups or c_out % groups:
        raise ValueError(f"conv2d: groups={groups} must divide both input channels ({c_in}, "
                         f"input shape {tuple(x.shape)}) and output channels ({c_out}, "
                         f"weight shape {tuple(weight.shape)})")
    if c_group * groups != c_in:
        raise ValueError(
            f"conv2d: input shape {tuple(x.shape)} has {c_in} channels but weight shape "
            f"{tuple(weight.shape)} with groups={groups} expects {c_group * groups}")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"conv2d: bias must have shape ({c_out},) for weight shape "
                         f"{tuple(weight.shape)}, got shape {tuple(bias.shape)}")
    stride_ = _pair(stride, "conv2d: stride", 1)
    dilation_ = _pair(dilation, "conv2d: dilation", 1)
    kernel = (kh, kw)
    cols = _padded_windows(x, kernel, stride_, dilation_,
                           _padding(padding, kernel, stride_, dilation_), "conv2d")
    ho, wo = cols.shape[4], cols.shape[5]
    k = c_group * kh * kw
    # Channels are group-major, so splitting C_in into (groups, C_in/groups) is a reshape.
    cols = reshape(cols, (b, groups, k, ho * wo))
    w = reshape(weight, (1, groups, c_out // groups, k))
    out = reshape(matmul(w, cols), (b, c_out, ho, wo))
    if bias is not None:
        out = out + reshape(bias, (1, c_out, 1, 1))
    return out


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
    _check_image(x, "avg_pool2d")
    kernel = _pair(kernel_size, "avg_pool2d: kernel_size", 1)
    stride_ = kernel if stride is None else _pair(stride, "avg_pool2d: stride", 1)
    ph, pw = _pair(padding, "avg_pool2d: padding", 0)
    if 2 * ph > kernel[0] or 2 * pw > kernel[1]:
        raise ValueError(f"avg_pool2d: padding {(ph, pw)} must be at most half the kernel "
                         f"size {kernel}")
    cols = _padded_windows(x, kernel, stride_, (1, 1), ((ph, ph), (pw, pw)), "avg_pool2d")
    return mean(cols, axis=(2, 3))
