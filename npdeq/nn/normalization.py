"""Normalisation layers: ``BatchNorm1d``, ``BatchNorm2d``, ``GroupNorm``, ``LayerNorm``
(PyTorch's ``torch.nn`` names, arguments and defaults).

Scales start at 1 and shifts at 0. Batch norms keep ``running_mean`` (zeros),
``running_var`` (ones) and ``num_batches_tracked`` (an int64 0-d array) as buffers, so they
are saved by ``state_dict`` and moved by ``Module.to`` (which keeps the counter an integer).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff import no_grad, ops
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_int, check_real
from npdeq.nn import init
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm", "LayerNorm"]


def _eps(value: Any, owner: str) -> float:
    # eps = 0 divides by zero on a constant group (NaN), so it must be positive.
    return check_real("eps", value, 0.0, low_open=True, owner=owner)


class _BatchNorm(Module):
    """What ``BatchNorm1d`` and ``BatchNorm2d`` share; subclasses set ``_ranks``."""

    _ranks: tuple[int, ...] = ()
    _shapes: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, xp: Any = None,
                 dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_features = check_int("num_features", num_features, 1, owner=owner)
        self.eps = _eps(eps, owner)
        self.momentum = check_real("momentum", momentum, 0.0, 1.0, owner=owner, none_ok=True)
        self.affine = check_bool("affine", affine, owner=owner)
        self.track_running_stats = check_bool("track_running_stats", track_running_stats,
                                              owner=owner)
        where = dict(xp=xp, dtype=dtype, device=device)
        shape = (self.num_features,)
        self.weight = Parameter(init.ones(shape, **where)) if self.affine else None
        self.bias = Parameter(init.zeros(shape, **where)) if self.affine else None
        if self.track_running_stats:
            zeros = init.zeros(shape, **where)
            xp_, dev = backend.array_namespace(zeros), backend.device(zeros)
            self.register_buffer("running_mean", zeros)
            self.register_buffer("running_var", init.ones(shape, **where))
            self.register_buffer("num_batches_tracked",
                                 xp_.asarray(0, dtype=xp_.int64, device=dev))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, batch count 0 (in place of the buffers)."""
        if self.track_running_stats:
            xp = backend.array_namespace(self.running_mean)
            self.running_mean = xp.zeros_like(self.running_mean)
            self.running_var = xp.ones_like(self.running_var)
            self.num_batches_tracked = xp.zeros_like(self.num_batches_tracked)

    def forward(self, x: Any) -> Tensor:
        owner = type(self).__name__
        shape = tuple(x.shape)
        if len(shape) not in self._ranks:
            raise ValueError(f"{owner}: input must have shape {self._shapes}, got shape {shape}")
        if shape[1] != self.num_features:
            raise ValueError(f"{owner}: input of shape {shape} has {shape[1]} channels, "
                             f"expected num_features={self.num_features}")
        x = x if isinstance(x, Tensor) else Tensor(x)
        axes = (0,) + tuple(range(2, len(shape)))
        kept = (1, shape[1]) + (1,) * (len(shape) - 2)
        count = math.prod(shape[axis] for axis in axes)
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            if count < 2:
                raise ValueError(f"{owner}: expected more than 1 value per channel when "
                                 f"training, got input of shape {shape}")
            mean = ops.mean(x, axis=axes, keepdims=True)
            var = ops.var(x, axis=axes, keepdims=True)
            if self.training and self.track_running_stats:
                self._update(mean.data, var.data, count)
        else:
            mean = Tensor(ops.reshape(self.running_mean, kept).data)
            var = Tensor(ops.reshape(self.running_var, kept).data)
        y = (x - mean) / ops.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * ops.reshape(self.weight, kept) + ops.reshape(self.bias, kept)
        return y

    def _update(self, mean: Any, var: Any, count: int) -> None:
        """PyTorch's running update: the unbiased batch variance, factor ``momentum`` (or
        ``1 / num_batches_tracked`` when ``momentum`` is None: a cumulative average)."""
        with no_grad():
            xp = backend.array_namespace(self.running_mean)
            self.num_batches_tracked = self.num_batches_tracked + 1
            if self.momentum is None:
                factor = 1.0 / backend.to_scalar(self.num_batches_tracked)
            else:
                factor = self.momentum
            dtype = self.running_mean.dtype
            mean = xp.astype(xp.reshape(mean, (-1,)), dtype)
            unbiased = xp.astype(xp.reshape(var, (-1,)), dtype) * (count / (count - 1))
            self.running_mean = (1 - factor) * self.running_mean + factor * mean
            self.running_var = (1 - factor) * self.running_var + factor * unbiased

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over the batch (and length) axis, as ``torch.nn.BatchNorm1d``.

    In training mode (and always when ``track_running_stats=False``) each channel is
    standardised with the mean and biased variance of the batch, and, when tracking, the
    running statistics move towards the batch's: ``running = (1 - momentum) * running +
    momentum * batch`` with the unbiased variance (``n / (n - 1)`` times the biased one), as
    PyTorch. In evaluation mode (``eval()``) the running statistics are used.

    Args:
        num_features: channels C.
        eps: added to the variance, a finite number > 0.
        momentum: the running update's factor in ``[0, 1]``, or ``None`` for a cumulative
            average over the batches seen.
        affine: learn a per-channel scale (``weight``, ones) and shift (``bias``, zeros).
        track_running_stats: keep the running statistics as buffers (``None`` otherwise).
        xp, dtype, device: as for :class:`~npdeq.nn.Linear`.

    Shapes: ``(B, C)`` or ``(B, C, L)``, kept.

    Raises:
        ValueError: a bad size, ``eps`` or ``momentum``; at call, an input of another rank or
            channel count, or a single value per channel in training mode.
        TypeError: a flag that is not a bool.

    Example:
        >>> import numpy as np
        >>> bn = BatchNorm1d(3)
        >>> bn(np.arange(12.0).reshape(4, 3)).shape, bn.running_mean.tolist()
        ((4, 3), [0.45, 0.55, 0.65])
    """

    _ranks = (2, 3)
    _shapes = "(B, C) or (B, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images over the batch, height and width axes, as
    ``torch.nn.BatchNorm2d`` (see :class:`BatchNorm1d` for the rules and arguments).

    Shapes: ``(B, C, H, W)``, kept.

    Example:
        >>> import numpy as np
        >>> bn = BatchNorm2d(2).eval()
        >>> bool((bn(np.ones((1, 2, 3, 3))).numpy() > 0.99).all())
        True
    """

    _ranks = (4,)
    _shapes = "(B, C, H, W)"


class GroupNorm(Module):
    """Group normalisation over ``(C/G, H, W)`` per group, with a per-channel affine.

    Args:
        num_groups: groups G (must divide ``num_channels``).
        num_channels: channels C.
        eps: added to the variance, a finite number > 0 (0 would divide by zero on a
            constant group).
        affine: learn a per-channel scale (ones) and shift (zeros).
        xp, dtype, device: as for :class:`~npdeq.nn.Linear`.

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
        num_groups = check_int("num_groups", num_groups, 1, owner="GroupNorm")
        num_channels = check_int("num_channels", num_channels, 1, owner="GroupNorm")
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
        xp, dtype, device: as for :class:`~npdeq.nn.Linear`.

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
        shape = tuple(check_int("normalized_shape", size, 1, owner="LayerNorm") for size in shape)
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
