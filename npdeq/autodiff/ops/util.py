"""Helpers shared by the op modules and the functional layers built on them: the array inside
a Tensor, operands for composites, constant masks, axis normalisation (used within the
package, not exported)."""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.backend import Array
from npdeq.autodiff.tensor import Tensor

ns = backend.array_namespace


def raw(x: Any) -> Any:
    """The array inside a Tensor (or ``x`` itself)."""
    return x.data if isinstance(x, Tensor) else x


def as_operand(x: Any) -> Tensor:
    """``x`` as a Tensor (a raw array becomes a leaf without a graph).

    Composites apply Python operators to their input (``a - mean(a)``); a raw array on the
    left of a Tensor only works where the library defers to Tensor's reflected operators
    (NumPy does, array_api_strict raises TypeError), so composites wrap their input first.
    """
    return x if isinstance(x, Tensor) else Tensor(x)


def int_arg(name: str, what: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as a Python int, at least ``minimum``: an op's count or offset.

    Accepts what :func:`~npdeq.backend.as_count` accepts (NumPy integers too, bools not).
    Raises ``TypeError`` for a non-int, as NumPy does (:func:`~npdeq.backend.check_int`, for
    settings, raises ``ValueError``), and ``ValueError`` below ``minimum``; ``name`` is the op,
    ``what`` the argument.
    """
    number = value if type(value) is int else backend.as_count(value)  # fast path: an int
    if number is None:
        raise TypeError(f"{name}: {what} must be an int, got {value!r}")
    if minimum is not None and not number >= minimum:
        raise ValueError(f"{name}: {what} must be >= {minimum}, got {number}")
    return number


def axis_arg(name: str, what: str, value: Any, ndim: int) -> int:
    """One axis of an op (negatives count from the end) as an int in ``[0, ndim)``:
    ``TypeError`` for a non-int (:func:`int_arg`), ``ValueError`` out of range."""
    value = int_arg(name, what, value)
    if not -ndim <= value < ndim:
        raise ValueError(f"{name}: {what}={value} is out of range for an array of {ndim} "
                         "dimensions")
    return value % ndim


def mask_like(condition: Tensor | Array, like: Tensor | Array) -> Array:
    """A raw 0/1 array of ``like``'s dtype from a boolean array (a constant for the tape)."""
    like = raw(like)
    return ns(like).astype(raw(condition), like.dtype)


def normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, int or tuple, negatives allowed) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for an array of {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def check_square(a: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``a`` holds square matrices in its last two axes."""
    shape = tuple(a.shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"{name}: needs square matrices in the last two axes, got shape {shape}")
