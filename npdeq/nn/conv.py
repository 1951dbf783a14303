"""Convolution layers: ``Conv1d`` and ``Conv2d`` (PyTorch's ``torch.nn`` names, arguments,
defaults and initialisation), thin Modules over :func:`npdeq.conv1d` and :func:`npdeq.conv2d`.

Weights are initialised as PyTorch's (Kaiming-uniform with ``a = sqrt(5)``, i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = in_channels / groups * prod(kernel)``,
the bias from the same interval), drawn from ``seed`` or npdeq's default generator.
Imports the tape's ops and this package's ``module``, ``parameter``, ``init``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq.autodiff import ops
from npdeq.autodiff.ops.conv import _padding, _pair, _single
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_int, check_int_or_pair
from npdeq.nn import init
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter

__all__ = ["Conv1d", "Conv2d"]


def _positive(name: str, value: Any, owner: str) -> int:
    return check_int(name, value, 1, owner=owner)


def _channels(in_channels: Any, out_channels: Any, groups: Any, bias: Any,
              owner: str) -> tuple[int, int, int, bool]:
    in_channels = _positive("in_channels", in_channels, owner)
    out_channels = _positive("out_channels", out_channels, owner)
    groups = _positive("groups", groups, owner)
    bias = check_bool("bias", bias, owner=owner)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{owner}: groups={groups} must divide in_channels={in_channels} "
                         f"and out_channels={out_channels}")
    return in_channels, out_channels, groups, bias


def _init(module: Module, shape: tuple[int, ...], bias: bool, seed: Any, where: dict) -> None:
    """PyTorch's default weight and bias for a weight of ``shape`` ``(out, in/groups, *k)``."""
    rng = init.generator(seed)
    module.weight = Parameter(init.kaiming_uniform(shape, seed=rng, **where))
    module.bias = (Parameter(init.uniform((shape[0],), 1 / math.sqrt(init.fan_in(shape)),
                                          seed=rng, **where)) if bias else None)


class Conv1d(Module):
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

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True, *,
                 seed: Any = None, xp: Any = None, dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        owner = "Conv1d"
        in_channels, out_channels, groups, bias = _channels(in_channels, out_channels, groups,
                                                            bias, owner)
        kernel = _single(kernel_size, f"{owner}: kernel_size", 1)
        stride_ = _single(stride, f"{owner}: stride", 1)
        dilation_ = _single(dilation, f"{owner}: dilation", 1)
        if isinstance(padding, str):
            # The op's rules, checked here so a bad setting fails where it is written.
            _padding(padding, (1, kernel), (1, stride_), (1, dilation_))
        else:
            padding = _single(padding, f"{owner}: padding", 0)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, \
            (kernel,)
        self.stride, self.padding, self.dilation, self.groups = (stride_,), (
            padding if isinstance(padding, str) else (padding,)), (dilation_,), groups
        _init(self, (out_channels, in_channels // groups, kernel), bias, seed,
              dict(xp=xp, dtype=dtype, device=device))

    def forward(self, x: Any) -> Tensor:
        return ops.conv1d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                          dilation=self.dilation, groups=self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}")


class Conv2d(Module):
    """2-D convolution (cross-correlation) as ``torch.nn.Conv2d``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding, dilation: ints or pairs; ``padding`` may be
            ``'same'`` or ``'valid'``.
        groups: channel groups (``in_channels`` and ``out_channels`` divisible by it).
        bias: learn a per-channel bias.
        seed, xp, dtype, device: as for :class:`~npdeq.nn.Linear`.

    Shapes: ``(B, C_in, H, W) -> (B, C_out, H', W')``; ``weight`` is
    ``(C_out, C_in / groups, kh, kw)``.

    Sizes are ints or pairs of ints (NumPy integers accepted).

    Raises:
        ValueError: bad sizes or a ``groups`` that does not divide the channels.
        TypeError: ``bias`` is not a bool.

    Example:
        >>> import numpy as np
        >>> Conv2d(1, 4, 3, padding=1, seed=0)(np.ones((2, 1, 8, 8))).shape
        (2, 4, 8, 8)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True, *,
                 seed: Any = None, xp: Any = None, dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        owner = "Conv2d"
        in_channels, out_channels, groups, bias = _channels(in_channels, out_channels, groups,
                                                            bias, owner)
        kernel_size = check_int_or_pair("kernel_size", kernel_size, 1, owner=owner)
        kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        stride = check_int_or_pair("stride", stride, 1, owner=owner)
        dilation = check_int_or_pair("dilation", dilation, 1, owner=owner)
        if not isinstance(padding, str):
            padding = check_int_or_pair("padding", padding, 0, owner=owner)
        # Checked here, with the op's own rules, so a bad setting fails where it is written
        # rather than at the first forward call.
        _padding(padding, kernel, _pair(stride, "stride", 1), _pair(dilation, "dilation", 1))
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        _init(self, (out_channels, in_channels // groups, *kernel), bias, seed,
              dict(xp=xp, dtype=dtype, device=device))

    def forward(self, x: Any) -> Tensor:
        return ops.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                          dilation=self.dilation, groups=self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}")
