"""Convolution layers: ``Conv1d`` and ``Conv2d`` (PyTorch's ``torch.nn`` names, arguments,
defaults and initialisation), thin Modules over :func:`npdeq.conv1d` and :func:`npdeq.conv2d`,
and the checks of size settings that the convolution and pooling layers share.

Weights are initialised as PyTorch's (Kaiming-uniform with ``a = sqrt(5)``, i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = in_channels / groups * prod(kernel)``,
the bias from the same interval), drawn from ``seed`` or npdeq's default generator.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq.autodiff import ops
from npdeq.autodiff.ops.conv import check_padding, check_single
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_int, check_int_or_pair
from npdeq.nn import init
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter

__all__ = ["Conv1d", "Conv2d"]


def check_size(name: str, value: Any, minimum: int, dims: int,
               owner: str) -> int | tuple[int, ...]:
    """A size setting of a ``dims``-D layer, checked with its op's rules (else ValueError):
    for ``dims=1`` an int or a 1-tuple, returned as a 1-tuple; for ``dims=2`` an int or a
    pair, returned as Python ints."""
    if dims == 1:
        return (check_single(value, f"{owner}: {name}", minimum),)
    return check_int_or_pair(name, value, minimum, owner=owner)


def as_tuple(size: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    """A checked size (see :func:`check_size`) as a ``dims``-tuple."""
    return (size,) * dims if isinstance(size, int) else tuple(size)


class _ConvNd(Module):
    """The checks, initialisation, forward and repr shared by ``Conv1d`` and ``Conv2d``."""

    _dims: int
    _op: Callable[..., Tensor]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True, *,
                 seed: Any = None, xp: Any = None, dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        owner, dims = type(self).__name__, self._dims
        self.in_channels = check_int("in_channels", in_channels, 1, owner=owner)
        self.out_channels = check_int("out_channels", out_channels, 1, owner=owner)
        self.groups = groups = check_int("groups", groups, 1, owner=owner)
        bias = check_bool("bias", bias, owner=owner)
        if self.in_channels % groups or self.out_channels % groups:
            raise ValueError(f"{owner}: groups={groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")
        kernel = as_tuple(check_size("kernel_size", kernel_size, 1, dims, owner), dims)
        self.stride = check_size("stride", stride, 1, dims, owner)
        self.dilation = check_size("dilation", dilation, 1, dims, owner)
        if isinstance(padding, str):
            # The op's rules ('valid', or 'same' with stride 1), checked here so that a bad
            # setting fails where it is written rather than at the first forward call.
            lead = (1,) * (2 - dims)
            check_padding(padding, lead + kernel, lead + as_tuple(self.stride, dims),
                     lead + as_tuple(self.dilation, dims))
        else:
            padding = check_size("padding", padding, 0, dims, owner)
        self.kernel_size, self.padding = kernel, padding
        weight, bias = init.weight_and_bias(
            (self.out_channels, self.in_channels // groups, *kernel), bias, seed, xp, dtype,
            device)
        self.weight = Parameter(weight)
        self.bias = None if bias is None else Parameter(bias)

    def forward(self, x: Any) -> Tensor:
        return self._op(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}")


class Conv1d(_ConvNd):
    """1-D convolution (cross-correlation) as ``torch.nn.Conv1d``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding, dilation: ints (or 1-tuples, as PyTorch's); ``padding``
            may be ``'same'`` or ``'valid'``.
        groups: channel groups (``in_channels`` and ``out_channels`` divisible by it).
        bias: learn a per-channel bias.
        seed, xp, dtype, device: as for :class:`~npdeq.nn.Linear`.

    Shapes: ``(B, C_in, L) -> (B, C_out, L')`` with
    ``L' = (L + 2 padding - dilation (kernel_size - 1) - 1) // stride + 1``; ``weight`` is
    ``(C_out, C_in / groups, kernel_size)``.

    Raises:
        ValueError: bad sizes (named), or a ``groups`` that does not divide the channels.
        TypeError: ``bias`` is not a bool.

    Example:
        >>> import numpy as np
        >>> Conv1d(2, 4, 3, padding=1, seed=0)(np.ones((5, 2, 8))).shape
        (5, 4, 8)
    """

    _dims, _op = 1, staticmethod(ops.conv1d)


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) as ``torch.nn.Conv2d``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding, dilation: ints or pairs (NumPy integers accepted);
            ``padding`` may be ``'same'`` or ``'valid'``.
        groups: channel groups (``in_channels`` and ``out_channels`` divisible by it).
        bias: learn a per-channel bias.
        seed, xp, dtype, device: as for :class:`~npdeq.nn.Linear`.

    Shapes: ``(B, C_in, H, W) -> (B, C_out, H', W')``; ``weight`` is
    ``(C_out, C_in / groups, kh, kw)``.

    Raises:
        ValueError: bad sizes or a ``groups`` that does not divide the channels.
        TypeError: ``bias`` is not a bool.

    Example:
        >>> import numpy as np
        >>> Conv2d(1, 4, 3, padding=1, seed=0)(np.ones((2, 1, 8, 8))).shape
        (2, 4, 8, 8)
    """

    _dims, _op = 2, staticmethod(ops.conv2d)
