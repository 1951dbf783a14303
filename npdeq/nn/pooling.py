"""Pooling layers: ``AvgPool1d``, ``AvgPool2d``, ``MaxPool1d``, ``MaxPool2d`` (PyTorch's
``torch.nn`` names, arguments and defaults: ``stride`` defaults to ``kernel_size``), thin
Modules over the pooling ops of :mod:`npdeq.autodiff.ops.pooling`. Settings are checked at
construction, with the ops' own rules. Imports the tape's ops and this package's ``module``.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq.autodiff import ops
from npdeq.autodiff.ops.conv import _pair, _single
from npdeq.autodiff.ops.pooling import check_half_kernel, check_pool_flags
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_int_or_pair
from npdeq.nn.module import Module

__all__ = ["AvgPool1d", "AvgPool2d", "MaxPool1d", "MaxPool2d"]


class AvgPool1d(Module):
    """1-D average pooling (padded zeros count), ``(B, C, L) -> (B, C, L')``, as
    ``torch.nn.AvgPool1d`` with its defaults.

    Args:
        kernel_size: an int (or 1-tuple).
        stride: an int (or 1-tuple); ``None`` for the kernel size.
        padding: an int (or 1-tuple), at most half the kernel size.

    Raises:
        ValueError: a non-positive kernel size or stride, or a padding out of range.

    Example:
        >>> import numpy as np
        >>> AvgPool1d(2)(np.ones((1, 3, 8))).shape
        (1, 3, 4)
    """

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0) -> None:
        super().__init__()
        owner = "AvgPool1d"
        kernel = _single(kernel_size, f"{owner}: kernel_size", 1)
        stride = None if stride is None else _single(stride, f"{owner}: stride", 1)
        padding = _single(padding, f"{owner}: padding", 0)
        check_half_kernel((kernel,), (padding,), owner, (padding, kernel))
        self.kernel_size, self.stride, self.padding = (kernel,), (
            (kernel,) if stride is None else (stride,)), (padding,)

    def forward(self, x: Any) -> Tensor:
        return ops.avg_pool1d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool1d(Module):
    """1-D max pooling (padded with ``-inf``), ``(B, C, L) -> (B, C, L')``, as
    ``torch.nn.MaxPool1d``; the gradient goes to each window's first largest entry.

    Args:
        kernel_size: an int (or 1-tuple).
        stride: an int (or 1-tuple); ``None`` for the kernel size.
        padding: an int (or 1-tuple), at most half the kernel size.
        dilation: an int (or 1-tuple), the spacing of a window's entries.
        return_indices, ceil_mode: only ``False`` (PyTorch's defaults) is supported.

    Raises:
        ValueError: a bad size, a padding out of range, or a flag other than False.

    Example:
        >>> import numpy as np
        >>> MaxPool1d(3, stride=1, padding=1)(np.ones((1, 3, 8))).shape
        (1, 3, 8)
    """

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        owner = "MaxPool1d"
        kernel = _single(kernel_size, f"{owner}: kernel_size", 1)
        stride = None if stride is None else _single(stride, f"{owner}: stride", 1)
        padding = _single(padding, f"{owner}: padding", 0)
        dilation = _single(dilation, f"{owner}: dilation", 1)
        check_half_kernel((kernel,), (padding,), owner, (padding, kernel))
        check_pool_flags(ceil_mode, return_indices, owner)
        self.kernel_size, self.stride, self.padding, self.dilation = (kernel,), (
            (kernel,) if stride is None else (stride,)), (padding,), (dilation,)

    def forward(self, x: Any) -> Tensor:
        return ops.max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}")


class MaxPool2d(Module):
    """2-D max pooling (padded with ``-inf``), ``(B, C, H, W) -> (B, C, H', W')``, as
    ``torch.nn.MaxPool2d``; the gradient goes to each window's first largest entry.

    Args:
        kernel_size: an int or a pair.
        stride: an int or a pair; ``None`` for the kernel size.
        padding: an int or a pair, at most half the kernel size.
        dilation: an int or a pair, the spacing of a window's entries.
        return_indices, ceil_mode: only ``False`` (PyTorch's defaults) is supported.

    Sizes are ints or pairs of ints (NumPy integers accepted).

    Raises:
        ValueError: a bad size, a padding out of range, or a flag other than False.

    Example:
        >>> import numpy as np
        >>> MaxPool2d(2)(np.ones((1, 3, 8, 8))).shape
        (1, 3, 4, 4)
    """

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        owner = "MaxPool2d"
        kernel_size = check_int_or_pair("kernel_size", kernel_size, 1, owner=owner)
        if stride is not None:
            stride = check_int_or_pair("stride", stride, 1, owner=owner)
        padding = check_int_or_pair("padding", padding, 0, owner=owner)
        dilation = check_int_or_pair("dilation", dilation, 1, owner=owner)
        check_half_kernel(_pair(kernel_size, "kernel_size", 1), _pair(padding, "padding", 0),
                          owner)
        check_pool_flags(ceil_mode, return_indices, owner)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation

    def forward(self, x: Any) -> Tensor:
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}")


class AvgPool2d(Module):
    """2-D average pooling (padded zeros count), ``(B, C, H, W) -> (B, C, H', W')``.

    Args:
        kernel_size: an int or a pair.
        stride: an int or a pair; ``None`` for the kernel size.
        padding: an int or a pair, at most half the kernel size.

    Sizes are ints or pairs of ints (NumPy integers accepted).

    Raises:
        ValueError: a non-positive kernel size or stride, or a padding out of range.
    """

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0) -> None:
        super().__init__()
        # The op's rules, checked at construction rather than at the first forward call.
        owner = "AvgPool2d"
        kernel_size = check_int_or_pair("kernel_size", kernel_size, 1, owner=owner)
        kernel = _pair(kernel_size, "kernel_size", 1)
        if stride is not None:
            stride = check_int_or_pair("stride", stride, 1, owner=owner)
        padding = check_int_or_pair("padding", padding, 0, owner=owner)
        check_half_kernel(kernel, _pair(padding, "padding", 0), owner)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Any) -> Tensor:
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
