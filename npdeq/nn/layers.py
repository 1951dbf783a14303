"""The basic layers: ``Linear``, activations, ``Identity``, ``Flatten``; each a thin Module
over one of the tape's ops. The other layers live by concept (:mod:`npdeq.nn.conv`,
:mod:`npdeq.nn.pooling`, :mod:`npdeq.nn.normalization`, :mod:`npdeq.nn.embedding`) and are
re-exported here, so ``from npdeq.nn.layers import Conv2d`` keeps working.

Weights are initialised as PyTorch's defaults (Kaiming-uniform with ``a = sqrt(5)``, biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norms' scale 1 and shift 0), drawn from ``seed`` or
npdeq's default generator (:func:`npdeq.nn.init.manual_seed`). ``xp``, ``dtype`` and
``device`` say where parameters are created (NumPy, in :func:`npdeq.get_default_dtype`, by
default; ``Module.to`` moves them later).
"""

from __future__ import annotations

from typing import Any

from npdeq.autodiff import ops
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_int
from npdeq.nn import init
from npdeq.nn.conv import Conv1d, Conv2d
from npdeq.nn.embedding import Embedding
from npdeq.nn.module import Module
from npdeq.nn.normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from npdeq.nn.parameter import Parameter
from npdeq.nn.pooling import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d

__all__ = ["Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "GroupNorm",
           "LayerNorm", "ReLU", "Tanh", "GELU", "Sigmoid", "Identity", "Flatten", "AvgPool1d",
           "AvgPool2d", "MaxPool1d", "MaxPool2d", "Embedding"]


class Linear(Module):
    """``y = x @ weight.T + bias``.

    Args:
        in_features: size of each input sample's last axis.
        out_features: size of each output sample's last axis.
        bias: learn an additive bias.
        seed: an int or ``numpy.random.Generator`` for the initial values (default: npdeq's
            default generator).
        xp, dtype, device: where the parameters are created (NumPy and
            :func:`npdeq.get_default_dtype`, float64 unless set, by default).

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
        in_features = self.in_features = check_int("in_features", in_features, 1,
                                                   owner="Linear")
        out_features = self.out_features = check_int("out_features", out_features, 1,
                                                     owner="Linear")
        bias = check_bool("bias", bias, owner="Linear")
        weight, bias = init.weight_and_bias((out_features, in_features), bias, seed, xp, dtype,
                                            device)
        self.weight = Parameter(weight)
        self.bias = None if bias is None else Parameter(bias)

    def forward(self, x: Any) -> Tensor:
        y = ops.matmul(x, self.weight.T)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


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


