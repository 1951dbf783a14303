"""The layers: ``Linear``, ``Conv2d``, ``GroupNorm``, ``LayerNorm``, activations,
``Identity``, ``Flatten``, ``AvgPool2d``; each a thin Module over one of the tape's ops.

Weights are initialised as PyTorch's defaults (Kaiming-uniform with ``a = sqrt(5)``, biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norms' scale 1 and shift 0), drawn from ``seed`` or
npdeq's default generator (:func:`npdeq.nn.init.manual_seed`). ``xp``, ``dtype`` and
``device`` say where parameters are created (NumPy float64 by default; ``Module.to`` moves
them later). Imports the tape's ops and this package's ``module``, ``parameter``, ``init``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq.autodiff import ops
from npdeq.autodiff.ops.conv import _padding, _pair
from npdeq.autodiff.tensor import Tensor
from npdeq.nn import init
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter

__all__ = ["Linear", "Conv2d", "GroupNorm", "LayerNorm", "ReLU", "Tanh", "GELU", "Sigmoid",
           "Identity", "Flatten", "AvgPool2d"]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class Linear(Module):
    """``y = x @ weight.T + bias``.

    Args:
        in_features: size of each input sample's last axis.
        out_features: size of each output sample's last axis.
        bias: learn an additive bias.
        seed: an int or ``numpy.random.Generator`` for the initial values (default: npdeq's
            default generator).
        xp, dtype, device: where the parameters are created (NumPy float64 by default).

    Shapes: ``(B, ..., in_features) -> (B, ..., out_features)``; ``weight`` is
    ``(out_features, in_features)``.

    Raises:
        ValueError: a non-positive size.

    Example:
        >>> import numpy as np
        >>> Linear(4, 3, seed=0)(np.ones((2, 4))).shape
        (2, 3)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 seed: Any = None, xp: Any = None, dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        self.in_features = _positive("in_features", in_features)
        self.out_features = _positive("out_features", out_features)
        where = dict(xp=xp, dtype=dtype, device=device)
        rng = init.generator(seed)
        shape = (out_features, in_features)
        self.weight = Parameter(init.kaiming_uniform(shape, seed=rng, **where))
        self.bias = (Parameter(init.uniform((out_features,), 1 / math.sqrt(in_features),
                                            seed=rng, **where)) if bias else None)

    def forward(self, x: Any) -> Tensor:
        y = ops.matmul(x, self.weight.T)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Conv2d(Module):
    """2-D convolution (cross-correlation) as ``torch.nn.Conv2d``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding, dilation: ints or pairs; ``padding`` may be
            ``'same'`` or ``'valid'``.
        groups: channel groups (``in_channels`` and ``out_channels`` divisible by it).
        bias: learn a per-channel bias.
        seed, xp, dtype, device: as for :class:`Linear`.

    Shapes: ``(B, C_in, H, W) -> (B, C_out, H', W')``; ``weight`` is
    ``(C_out, C_in / groups, kh, kw)``.

    Raises:
        ValueError: bad sizes or a ``groups`` that does not divide the channels.

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
        _positive("in_channels", in_channels)
        _positive("out_channels", out_channels)
        _positive("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(kernel) != 2:
            raise ValueError(f"kernel_size must be an int or a pair, got {kernel_size!r}")
        for k in kernel:
            _positive("kernel_size", k)
        # Checked here, with the op's own rules, so a bad setting fails where it is written
        # rather than at the first forward call.
        _padding(padding, kernel, _pair(stride, "stride", 1), _pair(dilation, "dilation", 1))
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        where = dict(xp=xp, dtype=dtype, device=device)
        rng = init.generator(seed)
        shape = (out_channels, in_channels // groups, *kernel)
        self.weight = Parameter(init.kaiming_uniform(shape, seed=rng, **where))
        self.bias = (Parameter(init.uniform((out_channels,), 1 / math.sqrt(init.fan_in(shape)),
                                            seed=rng, **where)) if bias else None)

    def forward(self, x: Any) -> Tensor:
        return ops.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                          dilation=self.dilation, groups=self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}")


class GroupNorm(Module):
    """Group normalisation over ``(C/G, H, W)`` per group, with a per-channel affine.

    Args:
        num_groups: groups G (must divide ``num_channels``).
        num_channels: channels C.
        eps: added to the variance.
        affine: learn a per-channel scale (ones) and shift (zeros).
        xp, dtype, device: as for :class:`Linear`.

    Shapes: ``(B, C, ...) -> (B, C, ...)``.

    Raises:
        ValueError: ``num_groups`` does not divide ``num_channels``.

    Example:
        >>> import numpy as np
        >>> GroupNorm(2, 4)(np.arange(32.0).reshape(2, 4, 4)).shape
        (2, 4, 4)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, *, xp: Any = None, dtype: Any = None,
                 device: Any = None) -> None:
        super().__init__()
        _positive("num_groups", num_groups)
        _positive("num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide num_channels={num_channels}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        where = dict(xp=xp, dtype=dtype, device=device)
        self.weight = Parameter(init.ones((num_channels,), **where)) if affine else None
        self.bias = Parameter(init.zeros((num_channels,), **where)) if affine else None

    def forward(self, x: Any) -> Tensor:
        return ops.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` axes, with an affine.

    Args:
        normalized_shape: an int or the trailing shape to normalise over.
        eps: added to the variance.
        elementwise_affine: learn a scale (ones) and shift (zeros) of that shape.
        xp, dtype, device: as for :class:`Linear`.

    Shapes: ``(B, ..., *normalized_shape)`` kept.

    Raises:
        ValueError: an empty or non-positive ``normalized_shape``.

    Example:
        >>> import numpy as np
        >>> LayerNorm(3)(np.arange(6.0).reshape(2, 3)).shape
        (2, 3)
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, *, xp: Any = None, dtype: Any = None,
                 device: Any = None) -> None:
        super().__init__()
        shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                 else tuple(normalized_shape))
        if not shape:
            raise ValueError("normalized_shape must name at least one axis, got ()")
        for size in shape:
            _positive("normalized_shape", size)
        self.normalized_shape, self.eps = shape, eps
        where = dict(xp=xp, dtype=dtype, device=device)
        self.weight = Parameter(init.ones(shape, **where)) if elementwise_affine else None
        self.bias = Parameter(init.zeros(shape, **where)) if elementwise_affine else None

    def forward(self, x: Any) -> Tensor:
        return ops.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def forward(self, x: Any) -> Tensor:
        return ops.relu(x)


class Tanh(Module):
    """``tanh(x)`` elementwise."""

    def forward(self, x: Any) -> Tensor:
        return ops.tanh(x)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise."""

    def forward(self, x: Any) -> Tensor:
        return ops.sigmoid(x)


class GELU(Module):
    """Gaussian error linear unit; ``approximate='tanh'`` for the tanh form."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Any) -> Tensor:
        return ops.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Identity(Module):
    """Returns its input (as a Tensor)."""

    def forward(self, x: Any) -> Tensor:
        return x if isinstance(x, Tensor) else Tensor(x)


class Flatten(Module):
    """Flatten axes ``start_dim..end_dim`` (default: all but the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Any) -> Tensor:
        return ops.flatten(x, self.start_dim, self.end_dim)


class AvgPool2d(Module):
    """2-D average pooling (padded zeros count), ``(B, C, H, W) -> (B, C, H', W')``.

    Args:
        kernel_size: an int or a pair.
        stride: an int or a pair; ``None`` for the kernel size.
        padding: an int or a pair, at most half the kernel size.

    Raises:
        ValueError: a non-positive kernel size or stride, or a padding out of range.
    """

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0) -> None:
        super().__init__()
        # The op's rules, checked at construction rather than at the first forward call.
        kernel = _pair(kernel_size, "kernel_size", 1)
        if stride is not None:
            _pair(stride, "stride", 1)
        pads = _pair(padding, "padding", 0)
        if any(2 * p > k for p, k in zip(pads, kernel)):
            raise ValueError(f"padding {pads} must be at most half the kernel size {kernel}")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Any) -> Tensor:
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
