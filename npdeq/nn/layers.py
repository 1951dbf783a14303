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
from npdeq.backend.checks import check_bool, check_int, check_int_or_pair, check_real
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter

__all__ = ["Linear", "Conv2d", "GroupNorm", "LayerNorm", "ReLU", "Tanh", "GELU", "Sigmoid",
           "Identity", "Flatten", "AvgPool2d"]


def _positive(name: str, value: Any, owner: str | None = None) -> int:
    return check_int(name, value, 1, owner=owner)


def _eps(value: Any, owner: str) -> float:
    # eps = 0 divides by zero on a constant group (NaN), so it must be positive.
    return check_real("eps", value, 0.0, low_open=True, owner=owner)


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
        ValueError: a size that is not a positive int (NumPy integers are accepted).
        TypeError: ``bias`` is not a bool.

    Example:
        >>> import numpy as np
        >>> Linear(4, 3, seed=0)(np.ones((2, 4))).shape
        (2, 3)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 seed: Any = None, xp: Any = None, dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        in_features = self.in_features = _positive("in_features", in_features, "Linear")
        out_features = self.out_features = _positive("out_features", out_features, "Linear")
        bias = check_bool("bias", bias, owner="Linear")
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
        in_channels = _positive("in_channels", in_channels, owner)
        out_channels = _positive("out_channels", out_channels, owner)
        groups = _positive("groups", groups, owner)
        bias = check_bool("bias", bias, owner=owner)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
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
        eps: added to the variance, a finite number > 0 (0 would divide by zero on a
            constant group).
        affine: learn a per-channel scale (ones) and shift (zeros).
        xp, dtype, device: as for :class:`Linear`.

    Shapes: ``(B, C, ...) -> (B, C, ...)``.

    Raises:
        ValueError: a size that is not a positive int, ``num_groups`` does not divide
            ``num_channels``, or a bad ``eps``.
        TypeError: ``affine`` is not a bool.

    Example:
        >>> import numpy as np
        >>> GroupNorm(2, 4)(np.arange(32.0).reshape(2, 4, 4)).shape
        (2, 4, 4)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, *, xp: Any = None, dtype: Any = None,
                 device: Any = None) -> None:
        super().__init__()
        num_groups = _positive("num_groups", num_groups, "GroupNorm")
        num_channels = _positive("num_channels", num_channels, "GroupNorm")
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_groups={num_groups} must divide "
                             f"num_channels={num_channels}")
        eps = _eps(eps, "GroupNorm")
        affine = check_bool("affine", affine, owner="GroupNorm")
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
        eps: added to the variance, a finite number > 0.
        elementwise_affine: learn a scale (ones) and shift (zeros) of that shape.
        xp, dtype, device: as for :class:`Linear`.

    Shapes: ``(B, ..., *normalized_shape)`` kept.

    Raises:
        ValueError: an empty or non-positive ``normalized_shape``, or a bad ``eps``.
        TypeError: ``elementwise_affine`` is not a bool.

    Example:
        >>> import numpy as np
        >>> LayerNorm(3)(np.arange(6.0).reshape(2, 3)).shape
        (2, 3)
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, *, xp: Any = None, dtype: Any = None,
                 device: Any = None) -> None:
        super().__init__()
        try:
            shape = (check_int("normalized_shape", normalized_shape, owner="LayerNorm"),)
        except ValueError:
            try:
                shape = tuple(normalized_shape)
            except TypeError:
                raise ValueError(f"LayerNorm: normalized_shape must be an int or a sequence of "
                                 f"ints, got {normalized_shape!r}") from None
        if not shape:
            raise ValueError("LayerNorm: normalized_shape must name at least one axis, got ()")
        shape = tuple(_positive("normalized_shape", size, "LayerNorm") for size in shape)
        eps = _eps(eps, "LayerNorm")
        elementwise_affine = check_bool("elementwise_affine", elementwise_affine,
                                        owner="LayerNorm")
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
    """Flatten axes ``start_dim..end_dim`` (default: all but the batch axis).

    Args:
        start_dim, end_dim: ints (negative counts from the end; NumPy integers accepted),
            checked against the input's dimensions at each call.

    Raises:
        ValueError: a dim that is not an int.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = check_int("start_dim", start_dim, owner="Flatten")
        self.end_dim = check_int("end_dim", end_dim, owner="Flatten")

    def forward(self, x: Any) -> Tensor:
        return ops.flatten(x, self.start_dim, self.end_dim)


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
        pads = _pair(padding, "padding", 0)
        if any(2 * p > k for p, k in zip(pads, kernel)):
            raise ValueError(f"AvgPool2d: padding {pads} must be at most half the kernel size "
                             f"{kernel}")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Any) -> Tensor:
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
