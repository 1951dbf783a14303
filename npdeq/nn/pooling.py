"""Pooling layers: ``AvgPool1d``, ``AvgPool2d``, ``MaxPool1d``, ``MaxPool2d`` (PyTorch's
``torch.nn`` names, arguments and defaults: ``stride`` defaults to ``kernel_size``), thin
Modules over the pooling ops of :mod:`npdeq.autodiff.ops.pooling`. Settings are checked at
construction, with the ops' own rules.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq.autodiff import ops
from npdeq.autodiff.ops.pooling import check_half_kernel, check_pool_flags
from npdeq.autodiff.tensor import Tensor
from npdeq.nn.conv import as_tuple, check_size
from npdeq.nn.module import Module

__all__ = ["AvgPool1d", "AvgPool2d", "MaxPool1d", "MaxPool2d"]


class _PoolNd(Module):
    """The checks, forward and repr shared by the pooling layers."""

    _dims: int
    _op: Callable[..., Tensor]
    _settings: tuple[str, ...] = ("kernel_size", "stride", "padding")

    def __init__(self, kernel_size: Any, stride: Any, padding: Any, dilation: Any = None,
                 return_indices: Any = False, ceil_mode: Any = False) -> None:
        super().__init__()
        owner, dims = type(self).__name__, self._dims
        self.kernel_size = check_size("kernel_size", kernel_size, 1, dims, owner)
        self.stride = (self.kernel_size if stride is None
                       else check_size("stride", stride, 1, dims, owner))
        self.padding = check_size("padding", padding, 0, dims, owner)
        if dilation is not None:
            self.dilation = check_size("dilation", dilation, 1, dims, owner)
        kernel, pads = as_tuple(self.kernel_size, dims), as_tuple(self.padding, dims)
        check_half_kernel(kernel, pads, owner, (pads[0], kernel[0]) if dims == 1 else None)
        check_pool_flags(ceil_mode, return_indices, owner)

    def forward(self, x: Any) -> Tensor:
        return self._op(x, *(getattr(self, name) for name in self._settings))

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self._settings)


class _MaxPoolNd(_PoolNd):
    """The signature shared by ``MaxPool1d`` and ``MaxPool2d``."""

    _settings = (*_PoolNd._settings, "dilation")

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)


class AvgPool1d(_PoolNd):
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

    _dims, _op = 1, staticmethod(ops.avg_pool1d)

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0) -> None:
        super().__init__(kernel_size, stride, padding)


class MaxPool1d(_MaxPoolNd):
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

    _dims, _op = 1, staticmethod(ops.max_pool1d)

class MaxPool2d(_MaxPoolNd):
    """2-D max pooling (padded with ``-inf``), ``(B, C, H, W) -> (B, C, H', W')``, as
    ``torch.nn.MaxPool2d``; the gradient goes to each window's first largest entry.

    Args:
        kernel_size: an int or a pair (here and below, NumPy integers are accepted).
        stride: an int or a pair; ``None`` for the kernel size.
        padding: an int or a pair, at most half the kernel size.
        dilation: an int or a pair, the spacing of a window's entries.
        return_indices, ceil_mode: only ``False`` (PyTorch's defaults) is supported.

    Raises:
        ValueError: a bad size, a padding out of range, or a flag other than False.

    Example:
        >>> import numpy as np
        >>> MaxPool2d(2)(np.ones((1, 3, 8, 8))).shape
        (1, 3, 4, 4)
    """

    _dims, _op = 2, staticmethod(ops.max_pool2d)

class AvgPool2d(_PoolNd):
    """2-D average pooling (padded zeros count), ``(B, C, H, W) -> (B, C, H', W')``, as
    ``torch.nn.AvgPool2d`` with its defaults.

    Args:
        kernel_size: an int or a pair (here and below, NumPy integers are accepted).
        stride: an int or a pair; ``None`` for the kernel size.
        padding: an int or a pair, at most half the kernel size.

    Raises:
        ValueError: a non-positive kernel size or stride, or a padding out of range.

    Example:
        >>> import numpy as np
        >>> AvgPool2d(2)
        AvgPool2d(kernel_size=2, stride=2, padding=0)
        >>> AvgPool2d(2)(np.ones((1, 3, 8, 8))).shape
        (1, 3, 4, 4)
    """

    _dims, _op = 2, staticmethod(ops.avg_pool2d)

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0) -> None:
        super().__init__(kernel_size, stride, padding)
