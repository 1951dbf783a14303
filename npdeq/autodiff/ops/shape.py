"""Shape ops: reshape, flatten, broadcast_to, expand_dims, squeeze, transpose/permute, concat,
stack, split, pad, and NumPy's rearrangements flip, roll, tile, repeat, triu, tril, diagonal.
Each forward beside its VJP rule (tile, repeat and diagonal are composites)."""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff.ops._util import normalize_axis, ns, raw
from npdeq.autodiff.ops.indexing import getitem
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["reshape", "flatten", "broadcast_to", "expand_dims", "squeeze", "transpose",
           "permute", "swapaxes", "concat", "stack", "split", "pad", "flip", "roll", "tile",
           "repeat", "triu", "tril", "diagonal"]


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
    n = 1
    for s in shape[start:end + 1]:
        n *= s
    return reshape(a, shape[:start] + (n,) + shape[end + 1:])


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


def split(a: Tensor, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split along ``axis`` into equal sections (an int) or at the given indices (a list).

    Raises:
        ValueError: an int that does not divide the axis length.
    """
    length = a.shape[axis]
    if isinstance(indices_or_sections, int):
        if indices_or_sections <= 0 or length % indices_or_sections:
            raise ValueError(
                f"split: cannot split an axis of length {length} into {indices_or_sections} "
                "equal sections")
        step = length // indices_or_sections
        bounds = list(range(0, length + 1, step))
    else:
        bounds = [0, *indices_or_sections, length]
    axis_ = axis % a.ndim
    head = (slice(None),) * axis_
    # getitem, not a[...]: a raw array in gives Tensors out, and the key is made portable.
    return [getitem(a, head + (slice(lo, hi),)) for lo, hi in zip(bounds[:-1], bounds[1:])]


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


def _count_arg(value: Any, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (
            hasattr(value, "__index__") and not hasattr(value, "shape")):
        raise TypeError(f"{name}: {what} must be an int, got {value!r}")
    value = int(value)
    if not value >= 0:
        raise ValueError(f"{name}: {what} must be >= 0, got {value}")
    return value


def tile(a: Any, reps: Any) -> Tensor:
    """Repeat the whole array ``reps[i]`` times along each axis, as ``numpy.tile`` (a shorter
    ``reps`` is padded with ones in front, a shorter ``a`` gets leading axes of size 1).

    Raises:
        TypeError: a repetition count that is not an int.
        ValueError: a negative repetition count.
    """
    reps = (reps,) if not isinstance(reps, (tuple, list)) else tuple(reps)
    reps = tuple(_count_arg(r, "tile", "reps") for r in reps)
    shape = tuple(raw(a).shape)
    n = max(len(shape), len(reps))
    shape = (1,) * (n - len(shape)) + shape
    reps = (1,) * (n - len(reps)) + reps
    # (s0, s1) -> (1, s0, 1, s1) -> (r0, s0, r1, s1) -> (r0*s0, r1*s1)
    spread = reshape(a, tuple(x for s in shape for x in (1, s)))
    wide = broadcast_to(spread, tuple(x for r, s in zip(reps, shape) for x in (r, s)))
    return reshape(wide, tuple(r * s for r, s in zip(reps, shape)))


def repeat(a: Any, repeats: Any, axis: int | None = None) -> Tensor:
    """Repeat each element ``repeats`` times (an int, or one count per element along
    ``axis``), as ``numpy.repeat``; ``axis=None`` repeats the flattened array.

    Raises:
        TypeError: a count that is not an int.
        ValueError: a negative count, an axis out of range, or a count sequence whose length
            is not the axis length.
    """
    from npdeq.autodiff.ops.indexing import take

    a_raw = raw(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    ndim = len(raw(a).shape)
    if not isinstance(axis, int) or not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"repeat: axis={axis!r} is out of range for an array of "
                         f"{len(a_raw.shape)} dimensions")
    if ndim == 0:
        a, ndim = reshape(a, (1,)), 1
    axis %= ndim
    shape = tuple(raw(a).shape)
    if hasattr(repeats, "shape") or isinstance(repeats, (list, tuple)):
        counts = (backend.to_numpy(raw(repeats)).tolist() if hasattr(repeats, "shape")
                  else list(repeats))
        counts = [counts] if not isinstance(counts, list) else counts
        counts = [_count_arg(c, "repeat", "each count in repeats") for c in counts]
        if len(counts) == 1:
            repeats = counts[0]
        else:
            if len(counts) != shape[axis]:
                raise ValueError(f"repeat: {len(counts)} counts in repeats for an axis of "
                                 f"length {shape[axis]}")
            xp = ns(raw(a))
            index = [i for i, c in enumerate(counts) for _ in range(c)]
            return take(a, xp.asarray(index, dtype=xp.int64, device=backend.device(raw(a))),
                        axis=axis)
    repeats = _count_arg(repeats, "repeat", "repeats")
    spread = expand_dims(a, axis + 1)
    wide = broadcast_to(spread, shape[:axis + 1] + (repeats,) + shape[axis + 1:])
    return reshape(wide, shape[:axis] + (shape[axis] * repeats,) + shape[axis + 1:])


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


def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """The diagonal of the 2-d slices over ``axis1`` and ``axis2``, as ``numpy.diagonal``:
    those two axes are removed and the diagonal appended as the last axis (``offset`` > 0
    above the main diagonal).

    Raises:
        ValueError: fewer than 2 dimensions, an axis out of range, or ``axis1 == axis2``.
    """
    shape = tuple(raw(a).shape)
    nd = len(shape)
    if nd < 2:
        raise ValueError(f"diagonal: needs an array of at least 2 dimensions, got shape {shape}")
    for name, ax in (("axis1", axis1), ("axis2", axis2)):
        if not -nd <= ax < nd:
            raise ValueError(f"diagonal: {name}={ax} is out of range for an array of {nd} "
                             "dimensions")
    ax1, ax2 = axis1 % nd, axis2 % nd
    if ax1 == ax2:
        raise ValueError(f"diagonal: axis1={axis1} and axis2={axis2} are the same axis")
    offset = int(offset)
    rest = [i for i in range(nd) if i not in (ax1, ax2)]
    moved = permute(a, tuple(rest) + (ax1, ax2))
    n, m = shape[ax1], shape[ax2]
    # In the flattened (n*m) matrix the diagonal is every (m+1)-th element from its start.
    start = offset if offset >= 0 else -offset * m
    length = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    flat = reshape(moved, tuple(shape[i] for i in rest) + (n * m,))
    head = (slice(None),) * len(rest)
    if length == 0:
        return getitem(flat, head + (slice(0, 0),))
    return getitem(flat, head + (slice(start, start + (length - 1) * (m + 1) + 1, m + 1),))
