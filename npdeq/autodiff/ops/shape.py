"""Shape ops: reshape, flatten, broadcast_to, expand_dims, squeeze, transpose/permute, concat,
stack, pad, and NumPy's rearrangements flip, roll, triu, tril. Each forward beside its VJP
rule; the rearrangements built on indexing are in :mod:`npdeq.autodiff.ops.numpy_shape`."""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff.ops.util import normalize_axis, ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["reshape", "flatten", "broadcast_to", "expand_dims", "squeeze", "transpose",
           "permute", "swapaxes", "concat", "stack", "pad", "flip", "roll", "triu", "tril"]


def _shape_arg(shape: Any) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


reshape = primitive(lambda a, shape: ns(a).reshape(a, _shape_arg(shape)), name="reshape")
defvjp(reshape, lambda g, ans, a, shape: reshape(g, a.shape))


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions ``start_dim..end_dim`` (inclusive) into one, as ``torch.flatten``.

    Raises:
        ValueError: a dimension out of range, or ``start_dim`` after ``end_dim``.
    """
    shape = tuple(a.shape)
    if not shape:
        return reshape(a, (1,))
    for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
        if not -len(shape) <= dim < len(shape):
            raise ValueError(f"flatten: {name}={dim} is out of range for a tensor of "
                             f"{len(shape)} dimensions")
    start, end = start_dim % len(shape), end_dim % len(shape)
    if start > end:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim}")
    return reshape(a, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


broadcast_to = primitive(lambda a, shape: ns(a).broadcast_to(a, _shape_arg(shape)),
                         name="broadcast_to")
# The engine sums the cotangent back down to the input's shape.
defvjp(broadcast_to, lambda g, ans, a, shape: g)


expand_dims = primitive(lambda a, axis: ns(a).expand_dims(a, axis=axis), name="expand_dims")
defvjp(expand_dims, lambda g, ans, a, axis: reshape(g, a.shape))


@primitive
def squeeze(a, axis=None):
    xp = ns(a)
    if axis is None:
        axis = tuple(i for i, s in enumerate(a.shape) if s == 1)
    return xp.squeeze(a, axis=axis)


defvjp(squeeze, lambda g, ans, a, axis=None: reshape(g, a.shape))


def _inverse(axes: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


@primitive
def permute(a, axes=None):
    if axes is None:
        axes = tuple(reversed(range(a.ndim)))
    return ns(a).permute_dims(a, tuple(ax % a.ndim for ax in axes))


defvjp(permute, lambda g, ans, a, axes=None: permute(
    g, None if axes is None else _inverse([ax % len(a.shape) for ax in axes])))


def transpose(a: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Permute axes like ``numpy.transpose`` (reverse them when ``axes`` is None)."""
    return permute(a, axes)


def swapaxes(a: Tensor, axis1: int, axis2: int) -> Tensor:
    """Exchange two axes."""
    axes = list(range(a.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return permute(a, tuple(axes))


def _concat_vjp(i):
    def rule(g, ans, *parts, axis=0):
        axis_ = axis % len(ans.shape)
        start = 0
        for part in parts[:i]:
            start += part.shape[axis_]
        key = (slice(None),) * axis_ + (slice(start, start + parts[i].shape[axis_]),)
        return g[key]
    return rule


_concat = primitive(lambda *parts, axis=0: ns(*parts).concat(parts, axis=axis), name="concat")


def concat(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    _ensure_rules(_concat, len(tensors), _concat_vjp)
    return _concat(*tensors, axis=axis)


def _stack_vjp(i):
    def rule(g, ans, *parts, axis=0):
        axis_ = axis % len(ans.shape)
        return squeeze(g[(slice(None),) * axis_ + (slice(i, i + 1),)], axis=axis_)
    return rule


_stack = primitive(lambda *parts, axis=0: ns(*parts).stack(parts, axis=axis), name="stack")


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    _ensure_rules(_stack, len(tensors), _stack_vjp)
    return _stack(*tensors, axis=axis)


def _ensure_rules(prim, n, make_rule):
    # Variadic ops get one rule per position, registered on first use of that arity.
    for i in range(n):
        if i not in prim.vjps:
            defvjp(prim, *([None] * i), make_rule(i))


def _pad_widths(pad_width, ndim):
    if isinstance(pad_width, int):
        return [(pad_width, pad_width)] * ndim
    pad_width = list(pad_width)
    if pad_width and isinstance(pad_width[0], int):
        if len(pad_width) == 2 and ndim != 2:
            return [tuple(pad_width)] * ndim
        raise ValueError(f"pad_width {pad_width} is ambiguous; give one (before, after) per axis")
    if len(pad_width) != ndim:
        raise ValueError(f"pad_width has {len(pad_width)} entries for {ndim} dimensions")
    return [tuple(p) for p in pad_width]


@primitive
def pad(a, pad_width, value=0.0):
    xp = ns(a)
    widths = _pad_widths(pad_width, a.ndim)
    shape = tuple(s + lo + hi for s, (lo, hi) in zip(a.shape, widths))
    out = xp.full(shape, value, dtype=a.dtype, device=backend.device(a))
    out[tuple(slice(lo, lo + s) for s, (lo, _) in zip(a.shape, widths))] = a
    return out


defvjp(pad, lambda g, ans, a, pad_width, value=0.0: g[tuple(
    slice(lo, lo + s) for s, (lo, _) in zip(a.shape, _pad_widths(pad_width, len(a.shape))))])


# --- NumPy's array rearrangements --------------------------------------------------------


def _axes_arg(axis: Any, ndim: int, name: str) -> tuple[int, ...] | None:
    if axis is None:
        return None
    try:
        return normalize_axis(axis, ndim)
    except ValueError:
        raise ValueError(f"{name}: axis={axis!r} is out of range for an array of {ndim} "
                         "dimensions") from None


@primitive
def flip(a, axis=None):
    """Reverse the order of elements along ``axis`` (all axes when None), as ``numpy.flip``."""
    return ns(a).flip(a, axis=_axes_arg(axis, a.ndim, "flip"))


defvjp(flip, lambda g, ans, a, axis=None: flip(g, axis))


@primitive
def roll(a, shift, axis=None):
    """Shift elements by ``shift`` along ``axis`` (the flattened array when None), those past the
    end coming back at the start, as ``numpy.roll``."""
    if axis is not None and not isinstance(axis, int):
        axis = tuple(axis)
    if not isinstance(shift, int):
        shift = tuple(shift)
    return ns(a).roll(a, shift, axis=axis)


defvjp(roll, lambda g, ans, a, shift, axis=None: roll(
    g, -shift if isinstance(shift, int) else tuple(-s for s in shift), axis))


def _check_matrix(a, name):
    if a.ndim < 2:
        raise ValueError(f"{name}: needs an array of at least 2 dimensions, got shape "
                         f"{tuple(a.shape)}")


def _triangle(which):
    def forward(a, k=0):
        _check_matrix(a, which)
        return getattr(ns(a), which)(a, k=k)
    return forward


triu = primitive(_triangle("triu"), name="triu")
"""The upper triangle of the last two axes (``k`` > 0 starts above the diagonal)."""
defvjp(triu, lambda g, ans, a, k=0: triu(g, k))

tril = primitive(_triangle("tril"), name="tril")
"""The lower triangle of the last two axes (``k`` < 0 ends below the diagonal)."""
defvjp(tril, lambda g, ans, a, k=0: tril(g, k))
