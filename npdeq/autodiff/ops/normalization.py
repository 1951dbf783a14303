"""Group and layer normalisation with PyTorch's conventions (biased variance, ``eps`` inside
the square root), as composites of the tape's primitives: their gradients of every order come
from ``sum``, ``sqrt``, ``reshape`` and the elementwise rules.

May import: the other op modules (no NumPy).
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff.ops.elementwise import sqrt
from npdeq.autodiff.ops.reductions import mean, var
from npdeq.autodiff.ops.shape import reshape
from npdeq.autodiff.tensor import Tensor

__all__ = ["group_norm", "layer_norm"]


def _standardize(x: Any, axis: tuple[int, ...], eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over ``axis`` (biased variance)."""
    if not isinstance(x, Tensor):
        # A raw array on the left of a Tensor operator is not deferred by every namespace.
        x = Tensor(x)
    centred = x - mean(x, axis=axis, keepdims=True)
    return centred / sqrt(var(x, axis=axis, keepdims=True) + eps)


def _check_affine(param: Any, shape: tuple[int, ...], name: str, what: str) -> None:
    if param is not None and tuple(param.shape) != shape:
        raise ValueError(f"{what}: {name} must have shape {shape}, got shape "
                         f"{tuple(param.shape)}")


def _affine(y: Tensor, weight: Any, bias: Any, shape: tuple[int, ...]) -> Tensor:
    if weight is not None:
        y = y * reshape(weight, shape)
    if bias is not None:
        y = y + reshape(bias, shape)
    return y


def group_norm(x: Any, num_groups: int, weight: Any = None, bias: Any = None,
               eps: float = 1e-5) -> Tensor:
    """Group normalisation, as ``torch.nn.functional.group_norm``.

    The channels are split into ``num_groups`` consecutive groups; each sample's group is
    standardised over its channels and all trailing axes, then scaled and shifted per channel.

    Args:
        x: ``(B, C, *)`` Tensor or array with at least two dimensions.
        num_groups: number of groups; must divide ``C``.
        weight: ``(C,)`` scale or None.
        bias: ``(C,)`` shift or None.
        eps: added to the variance.

    Returns:
        Tensor of ``x``'s shape, namespace and device.

    Raises:
        ValueError: ``x`` with fewer than two dimensions, ``num_groups`` not a positive
            divisor of ``C``, or ``weight``/``bias`` not of shape ``(C,)``.

    Example:
        >>> import numpy as np, npdeq
        >>> y = npdeq.group_norm(np.arange(16.0).reshape(2, 4, 2), 2)
        >>> y.shape
        (2, 4, 2)
    """
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise ValueError(f"group_norm: input must have shape (B, C, *), got shape {shape}")
    c = shape[1]
    count = backend.as_count(num_groups)
    if count is None or count < 1 or c % count:
        raise ValueError(f"group_norm: num_groups={num_groups!r} must be a positive divisor of "
                         f"the {c} channels of input shape {shape}")
    _check_affine(weight, (c,), "weight", "group_norm")
    _check_affine(bias, (c,), "bias", "group_norm")
    num_groups = count
    grouped = reshape(x, (shape[0], num_groups, -1))
    y = reshape(_standardize(grouped, (2,), eps), shape)
    return _affine(y, weight, bias, (1, c) + (1,) * (len(shape) - 2))


def layer_norm(x: Any, normalized_shape: int | Sequence[int], weight: Any = None,
               bias: Any = None, eps: float = 1e-5) -> Tensor:
    """Layer normalisation, as ``torch.nn.functional.layer_norm``.

    Standardises over the last ``len(normalized_shape)`` axes, then scales and shifts
    elementwise.

    Args:
        x: ``(*, *normalized_shape)`` Tensor or array.
        normalized_shape: an int or the trailing shape to normalise over.
        weight: scale of shape ``normalized_shape`` or None.
        bias: shift of shape ``normalized_shape`` or None.
        eps: added to the variance.

    Returns:
        Tensor of ``x``'s shape, namespace and device.

    Raises:
        ValueError: ``x``'s trailing shape is not ``normalized_shape``, or ``weight``/``bias``
            have another shape.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.layer_norm(np.arange(6.0).reshape(2, 3), 3).shape
        (2, 3)
    """
    norm_shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                  else tuple(normalized_shape))
    shape = tuple(x.shape)
    k = len(norm_shape)
    if k == 0 or k > len(shape) or shape[len(shape) - k:] != norm_shape:
        raise ValueError(f"layer_norm: normalized_shape {norm_shape} must be the trailing "
                         f"(non-empty) part of the input shape {shape}")
    _check_affine(weight, norm_shape, "weight", "layer_norm")
    _check_affine(bias, norm_shape, "bias", "layer_norm")
    y = _standardize(x, tuple(range(len(shape) - k, len(shape))), eps)
    return _affine(y, weight, bias, norm_shape)
