"""Group and layer normalisation with PyTorch's conventions (biased variance, ``eps`` inside
the square root).

``layer_norm`` is a composite of the tape's primitives: its gradients of every order come
from ``sum``, ``sqrt``, ``reshape`` and the elementwise rules. ``group_norm`` (three per step
of a convolutional DEQ) is one primitive, ``_group_norm``, with a fused forward (the group
statistics, then one scale and one shift per channel: five passes over the input where the
composite takes about nine) and one rule for all three arguments that computes the input,
weight and bias cotangents from two per-channel sums (``sum g`` and ``sum g*(x - mean)``) in
about nine passes where the composite's rules take over twenty, six when an adjoint solve
replays it (the statistics of the input are kept across replays). When a backward pass is
recorded (``create_graph=True``), the rule records the composite instead and differentiates
it, so gradients of every order stay those of the composite.

May import: the other op modules, the tape's engine and its VJP programs (no NumPy).
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff.engine import partial_grad
from npdeq.autodiff.mode import is_grad_enabled
from npdeq.autodiff.ops.elementwise import sqrt
from npdeq.autodiff.ops.reductions import mean, var
from npdeq.autodiff.ops.shape import reshape
from npdeq.autodiff.ops.util import ns, raw
from npdeq.autodiff.primitive import defvjp_argnums, primitive
from npdeq.autodiff.program import replay_memo
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
    return _group_norm(x, weight, bias, num_groups=count, eps=eps)


def _composite_group_norm(x: Any, weight: Any, bias: Any, num_groups: int,
                          eps: float) -> Tensor:
    """``group_norm`` from the tape's primitives (what ``_group_norm``'s recorded rule
    differentiates)."""
    shape = tuple(x.shape)
    grouped = reshape(x, (shape[0], num_groups, -1))
    y = reshape(_standardize(grouped, (2,), eps), shape)
    return _affine(y, weight, bias, (1, shape[1]) + (1,) * (len(shape) - 2))


def _times(xp: Any, a: Any, factor: Any) -> Any:
    """``a * factor``, in place when ``a`` (a fresh work array) keeps its dtype."""
    if xp.result_type(a, factor) == a.dtype:
        a *= factor
        return a
    return a * factor


def _plus(xp: Any, a: Any, term: Any) -> Any:
    """``a + term``, in place when ``a`` (a fresh work array) keeps its dtype."""
    if xp.result_type(a, term) == a.dtype:
        a += term
        return a
    return a + term


def _row_sums(xp: Any, a: Any) -> Any:
    """Sums over the last axis of a contiguous array, as one matrix-vector product (on
    NumPy a BLAS call, several times faster than ``sum`` over a short last axis)."""
    ones = xp.ones((a.shape[-1],), dtype=a.dtype, device=backend.device(a))
    return xp.reshape(xp.matmul(xp.reshape(a, (-1, a.shape[-1])), ones), a.shape[:-1])


def _group_statistics(x: Any, num_groups: int, eps: float) -> tuple[Any, Any]:
    """``x - mean`` as a fresh ``(B, G, C/G, S)`` array and ``1/sqrt(var + eps)`` as
    ``(B, G, 1, 1)``, per sample and group (biased variance)."""
    xp = ns(x)
    b, c = x.shape[0], x.shape[1]
    flat = xp.reshape(x, (b, num_groups, -1))
    n = flat.shape[2]
    centred = flat - _row_sums(xp, flat)[..., None] * (1.0 / n)
    # One pass for the sum of squares: a dot product per group row.
    variance = xp.vecdot(centred, centred, axis=-1) * (1.0 / n)
    rstd = 1.0 / xp.sqrt(variance + eps)
    return (xp.reshape(centred, (b, num_groups, c // num_groups, -1)),
            xp.reshape(rstd, (b, num_groups, 1, 1)))


def _per_channel(xp: Any, param: Any, num_groups: int) -> Any:
    """A ``(C,)`` parameter as ``(1, G, C/G, 1)``."""
    return xp.reshape(param, (1, num_groups, param.shape[0] // num_groups, 1))


@primitive(name="group_norm")
def _group_norm(x, weight, bias, *, num_groups, eps):
    """Group normalisation of ``(B, C, *)`` with an optional ``(C,)`` scale and shift."""
    xp = ns(x)
    centred, rstd = _group_statistics(x, num_groups, eps)
    scale = rstd if weight is None else rstd * _per_channel(xp, weight, num_groups)
    y = _times(xp, centred, scale)
    if bias is not None:
        y = _plus(xp, y, _per_channel(xp, bias, num_groups))
    return xp.reshape(y, tuple(x.shape))


def _group_norm_vjp(argnums, g, ans, x, weight, bias, *, num_groups, eps):
    """The cotangents of ``x``, ``weight`` and ``bias`` (those in ``argnums``) together."""
    args = (x, weight, bias)
    if is_grad_enabled():  # a recorded backward pass: differentiate the composite
        y = _composite_group_norm(x, weight, bias, num_groups, eps)
        return tuple(partial_grad(y, [args[i] for i in argnums], g, create_graph=True))
    x, weight, g = raw(x), raw(weight), raw(g)
    xp = ns(x)
    # The statistics of x do not depend on g: an adjoint solve replaying this rule computes
    # them once (replay_memo). They are shared, so they are never written to below.
    centred, rstd = replay_memo(ans, "statistics",
                                lambda: _group_statistics(x, num_groups, eps))
    g4 = xp.reshape(g, centred.shape)
    # Per (sample, channel): sum g and sum g*(x - mean), everything else follows from them.
    total = _row_sums(xp, g4)
    moment = xp.vecdot(g4, centred, axis=-1)
    rstd3 = rstd[..., 0]  # (B, G, 1)
    out = {}
    if 2 in argnums:
        out[2] = xp.reshape(xp.sum(total, axis=0), (-1,))
    if 1 in argnums:
        out[1] = xp.reshape(xp.sum(moment * rstd3, axis=0), (-1,))
    if 0 in argnums:
        # dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)) over each group, written as
        # g * (w*rstd) + (x - mean) * k1 + k0 with k1, k0 per sample and group.
        n = centred.shape[2] * centred.shape[3]
        w3 = None if weight is None else xp.reshape(weight, (1, num_groups, -1))
        s1 = xp.sum(total if w3 is None else total * w3, axis=2, keepdims=True)
        s2 = xp.sum(moment if w3 is None else moment * w3, axis=2, keepdims=True)
        k1 = (-(1.0 / n) * rstd3 * rstd3 * rstd3 * s2)[..., None]
        k0 = (-(1.0 / n) * rstd3 * s1)[..., None]
        scale = rstd if weight is None else rstd * _per_channel(xp, weight, num_groups)
        dx = _plus(xp, _plus(xp, g4 * scale, centred * k1), k0)
        out[0] = xp.reshape(dx, tuple(x.shape))
    return tuple(out[i] for i in argnums)


defvjp_argnums(_group_norm, _group_norm_vjp)


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
