"""1-D and 2-D convolution as 2-D matrix products, with PyTorch's argument conventions.

Three primitives carry the work: ``_conv2d`` (the forward, with the bias), ``_conv2d_input_grad``
(its VJP with respect to the input, a transposed convolution) and ``_conv2d_weight_grad``
(with respect to the weight). Their raw kernels (:mod:`npdeq.backend.convolution`) run 2-D
matrix products on slices of contiguous buffers (on NumPy one per kernel row and image), so
the arithmetic stays in BLAS (cuBLAS on CuPy). The three are bilinear and each one's VJPs are
the other two (the bias's a sum), so gradients of any order work. ``conv1d`` runs ``conv2d``
on a unit height axis.
The sliding-window primitives ``image_windows``/``_fold`` (each the other's VJP) serve the
pooling ops (:mod:`npdeq.autodiff.ops.pooling`).

May import: ``npdeq.backend`` and the other op modules (no NumPy).
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.backend import convolution as _kernels
from npdeq.autodiff.ops.reductions import sum as sum_
from npdeq.autodiff.ops.shape import reshape
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["conv1d", "conv2d"]

Pair = int | tuple[int, int]


@primitive(name="sliding_windows")
def image_windows(x, kernel, stride, dilation):
    """``(B, C, H, W) -> (B, C, kh, kw, Ho, Wo)``: the windows of an already padded batch."""
    return backend.sliding_windows(x, kernel, stride, dilation)


@primitive(name="fold_windows")
def _fold(cols, image_shape, stride, dilation):
    """``(B, C, kh, kw, Ho, Wo) -> (B, C, H, W)``: overlapping windows summed into an image."""
    return backend.fold_windows(cols, image_shape, stride, dilation)


defvjp(image_windows, lambda g, ans, x, kernel, stride, dilation:
       _fold(g, tuple(x.shape), stride, dilation))
defvjp(_fold, lambda g, ans, cols, image_shape, stride, dilation:
       image_windows(g, tuple(cols.shape[2:4]), stride, dilation))


# --- convolution as 2-D matrix products -------------------------------------------------
# Geometry keywords: stride (sh, sw), padding ((top, bottom), (left, right)), dilation
# (dh, dw), groups; weights are (C_out, C_in // groups, kh, kw), images (B, C, H, W).


@primitive
def _conv2d(x, w, b=None, *, stride, padding, dilation, groups):
    """``(x, w[, b]) -> y``: the convolution plus an optional per-channel bias (geometry as
    keywords; the kernels add the bias while the result is in cache)."""
    return _kernels.conv_forward(x, w, stride, padding, dilation, groups, b)


@primitive
def _conv2d_input_grad(g, w, *, image_shape, stride, padding, dilation, groups):
    """``(g, w) -> x̄``: the VJP of ``_conv2d`` for ``x`` (a transposed convolution)."""
    return _kernels.conv_input_grad(g, w, image_shape, stride, padding, dilation, groups)


@primitive
def _conv2d_weight_grad(x, g, *, weight_shape, stride, padding, dilation, groups):
    """``(x, g) -> w̄``: the VJP of ``_conv2d`` with respect to ``w``."""
    return _kernels.conv_weight_grad(x, g, weight_shape, stride, padding, dilation, groups)


# All three are bilinear: <conv(x, w), g> = <x, input_grad(g, w)> = <w, weight_grad(x, g)>.
# Each rule is one of the three (the bias's a sum), so every order of derivative stays on
# these primitives.
defvjp(_conv2d,
       lambda g, ans, x, w, b=None, **geo:
       _conv2d_input_grad(g, w, image_shape=tuple(x.shape), **geo),
       lambda g, ans, x, w, b=None, **geo:
       _conv2d_weight_grad(x, g, weight_shape=tuple(w.shape), **geo),
       lambda g, ans, x, w, b, **geo: sum_(g, axis=(0, 2, 3)))
defvjp(_conv2d_input_grad,
       lambda v, ans, g, w, image_shape, **geo: _conv2d(v, w, **geo),
       lambda v, ans, g, w, image_shape, **geo:
       _conv2d_weight_grad(v, g, weight_shape=tuple(w.shape), **geo))
defvjp(_conv2d_weight_grad,
       lambda v, ans, x, g, weight_shape, **geo:
       _conv2d_input_grad(g, v, image_shape=tuple(x.shape), **geo),
       lambda v, ans, x, g, weight_shape, **geo: _conv2d(x, v, **geo))


def check_pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as a pair, each at least ``minimum``."""
    single = backend.as_count(value)
    pair = (single, single) if single is not None else (
        tuple(backend.as_count(v) for v in value) if isinstance(value, (tuple, list)) else ())
    if len(pair) != 2 or None in pair:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def check_padding(padding: Any, kernel: tuple[int, int], stride: tuple[int, int],
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
    ph, pw = check_pair(padding, "padding", 0)
    return (ph, ph), (pw, pw)


def _check_fits(x: Any, kernel: tuple[int, int], dilation: tuple[int, int], padding: tuple,
                what: str) -> None:
    """Raise unless the dilated kernel fits ``x`` padded by ``padding``."""
    (pt, pb), (pl, pr) = padding
    h, w = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    if h < dilation[0] * (kernel[0] - 1) + 1 or w < dilation[1] * (kernel[1] - 1) + 1:
        raise ValueError(
            f"{what}: kernel {kernel} with dilation {dilation} does not fit the input of shape "
            f"{tuple(x.shape)} padded by {padding} (padded spatial size {(h, w)})")


def check_image(x: Any, what: str) -> None:
    if len(x.shape) != 4:
        raise ValueError(f"{what}: input must have shape (B, C, H, W), got shape "
                         f"{tuple(x.shape)}")


def _check_channels(x: Any, weight: Any, bias: Any, groups: Any, what: str) -> int:
    """``groups`` as an int after checking it against the channels of ``x``, ``weight`` and
    ``bias`` (``what`` names the op in the messages)."""
    count = backend.as_count(groups)
    if count is None or count < 1:
        raise ValueError(f"{what}: groups must be a positive int, got {groups!r}")
    groups = count
    c_in, c_out, c_group = x.shape[1], weight.shape[0], weight.shape[1]
    if c_in % groups or c_out % groups:
        raise ValueError(f"{what}: groups={groups} must divide both input channels ({c_in}, "
                         f"input shape {tuple(x.shape)}) and output channels ({c_out}, "
                         f"weight shape {tuple(weight.shape)})")
    if c_group * groups != c_in:
        raise ValueError(
            f"{what}: input shape {tuple(x.shape)} has {c_in} channels but weight shape "
            f"{tuple(weight.shape)} with groups={groups} expects {c_group * groups}")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"{what}: bias must have shape ({c_out},) for weight shape "
                         f"{tuple(weight.shape)}, got shape {tuple(bias.shape)}")
    return groups


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
    check_image(x, "conv2d")
    if len(weight.shape) != 4:
        raise ValueError(f"conv2d: weight must have shape (C_out, C_in // groups, kh, kw), "
                         f"got shape {tuple(weight.shape)}")
    groups = _check_channels(x, weight, bias, groups, "conv2d")
    _, _, kh, kw = weight.shape
    stride_ = check_pair(stride, "conv2d: stride", 1)
    dilation_ = check_pair(dilation, "conv2d: dilation", 1)
    pads = check_padding(padding, (kh, kw), stride_, dilation_)
    _check_fits(x, (kh, kw), dilation_, pads, "conv2d")
    return _conv2d(x, weight, bias, stride=stride_, padding=pads, dilation=dilation_,
                   groups=groups)


def check_single(value: Any, name: str, minimum: int) -> int:
    """An int or a 1-sequence of ints (PyTorch's ``(s,)``) as an int, at least ``minimum``."""
    single = backend.as_count(value)
    if single is None and isinstance(value, (tuple, list)) and len(value) == 1:
        single = backend.as_count(value[0])
    if single is None:
        raise ValueError(f"{name} must be an int or a 1-tuple of ints, got {value!r}")
    if single < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return single


def check_sequence(x: Any, what: str) -> None:
    if len(x.shape) != 3:
        raise ValueError(f"{what}: input must have shape (B, C, L), got shape {tuple(x.shape)}")


def conv1d(x: Any, weight: Any, bias: Any = None, stride: int | tuple[int] = 1,
           padding: int | tuple[int] | str = 0, dilation: int | tuple[int] = 1,
           groups: int = 1) -> Tensor:
    """1-D cross-correlation, as ``torch.nn.functional.conv1d``.

    ``out[b, o, i] = bias[o] + sum_{c, p} weight[o, c, p] * xpad[b, g*Cg + c, i*s + p*d]``
    with ``g`` the group of output channel ``o``.

    Args:
        x: ``(B, C_in, L)`` Tensor or array.
        weight: ``(C_out, C_in // groups, k)``.
        bias: ``(C_out,)`` or None.
        stride: int or ``(s,)``, >= 1.
        padding: int or ``(p,)`` zeros added on both sides, or ``'valid'`` (none) or
            ``'same'`` (output length equals input length; stride 1 only).
        dilation: int or ``(d,)``, >= 1.
        groups: number of channel groups; divides both ``C_in`` and ``C_out``.

    Returns:
        ``(B, C_out, Lo)`` Tensor with ``Lo = (L + 2 p - d (k - 1) - 1) // s + 1``, in ``x``'s
        namespace and on its device.

    Raises:
        ValueError: wrong ranks, channel counts that do not match ``groups``, a bias of the
            wrong shape, bad stride/padding/dilation, or a kernel longer than the padded input.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.conv1d(np.ones((2, 3, 7)), np.ones((4, 3, 3)), padding=1).shape
        (2, 4, 7)
    """
    check_sequence(x, "conv1d")
    if len(weight.shape) != 3:
        raise ValueError(f"conv1d: weight must have shape (C_out, C_in // groups, k), got "
                         f"shape {tuple(weight.shape)}")
    groups = _check_channels(x, weight, bias, groups, "conv1d")
    s = check_single(stride, "conv1d: stride", 1)
    d = check_single(dilation, "conv1d: dilation", 1)
    b, c, n = x.shape
    o, cg, k = weight.shape
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"conv1d: padding must be an int, a 1-tuple, 'valid' or 'same', "
                             f"got {padding!r}")
        if padding == "same" and s != 1:
            raise ValueError(f"conv1d: padding='same' needs stride 1, got stride {stride!r}")
        total = 0 if padding == "valid" else d * (k - 1)
        before, after = total // 2, total - total // 2  # an odd total pads more after
    else:
        before = after = check_single(padding, "conv1d: padding", 0)
    if n + before + after < d * (k - 1) + 1:
        raise ValueError(f"conv1d: kernel size {k} with dilation {d} does not fit the input of "
                         f"shape {tuple(x.shape)} padded by {padding!r} (padded length "
                         f"{n + before + after})")
    out = _conv2d(reshape(x, (b, c, 1, n)), reshape(weight, (o, cg, 1, k)), bias,
                  stride=(1, s), padding=((0, 0), (before, after)), dilation=(1, d),
                  groups=groups)
    return reshape(out, (b, o, out.shape[3]))
