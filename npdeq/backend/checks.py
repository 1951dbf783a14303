"""Checks of scalar arguments, for every layer: counts, numbers and flags as Python values.

Every number a user passes (a solver's ``max_iter`` or ``tol``, an optimizer's ``lr``, a
layer's size, a norm's ``eps``, a config value) goes through one of these. Counts accept
anything :func:`operator.index` accepts (``int``, NumPy integers, 0-d integer arrays) but not
bools; numbers anything ``float`` accepts (NumPy scalars, 0-d arrays) but not strings, bools
or complex values, and never NaN or infinities. Comparisons are written ``not x >= low`` so
that NaN fails them. Each check returns the Python value, so a NumPy float64 setting cannot
promote a float32 computation. Errors are ``ValueError`` (``TypeError`` for a flag that is
not ``True``/``False``, a value that is not callable) naming the argument, the value and
what was expected.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

__all__ = ["as_count", "check_int", "check_real", "check_bool", "check_int_or_pair",
           "check_callable", "describe_range"]


def describe_range(noun: str, low: Any = None, high: Any = None, low_open: bool = False,
                   high_open: bool = False, fmt: str = "g") -> str:
    """What a value in a range is, for messages: ``noun`` with its bounds.

    Example:
        >>> describe_range("a finite number", 0, 1, low_open=True)
        'a finite number in (0, 1]'
        >>> describe_range("an integer", low=1, fmt="d")
        'an integer >= 1'
    """
    if low is not None and high is not None:
        return (f"{noun} in {'(' if low_open else '['}{low:{fmt}}, "
                f"{high:{fmt}}{')' if high_open else ']'}")
    if low is not None:
        return f"{noun} {'>' if low_open else '>='} {low:{fmt}}"
    if high is not None:
        return f"{noun} {'<' if high_open else '<='} {high:{fmt}}"
    return noun


def _is_bool(value: Any) -> bool:
    """A Python or NumPy bool scalar (NumPy's is neither a Python bool nor a number)."""
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def _has_bool_dtype(value: Any) -> bool:
    """A bool scalar, or an array of bools (a 0-d one included), which is not a number."""
    return _is_bool(value) or "bool" in str(getattr(value, "dtype", ""))


def _where(owner: str | None) -> str:
    return f"{owner}: " if owner else ""


def _as_count(value: Any) -> int:
    if _has_bool_dtype(value):
        raise TypeError("a bool is not a count")
    return operator.index(value)


def as_count(value: Any) -> int | None:
    """``value`` as a Python int, or ``None`` when it is not an integer (bools are not).

    Example:
        >>> import numpy as np
        >>> as_count(np.int64(3)), as_count(True), as_count(2.0)
        (3, None, None)
    """
    try:
        return _as_count(value)
    except TypeError:
        return None


def check_int(name: str, value: Any, minimum: int | None = None, *,
              owner: str | None = None, none_ok: bool = False) -> int | None:
    """``value`` as a Python int (NumPy integers accepted), at least ``minimum``.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        minimum: the smallest value allowed (``None``: no bound).
        owner: the class or function, for the message.
        none_ok: let ``None`` through.

    Returns:
        The value as an ``int`` (or ``None``).

    Raises:
        ValueError: a bool, a non-integer (a float included) or a value below ``minimum``.

    Example:
        >>> check_int('n_iters', 3, 1)
        3
        >>> check_int('max_iter', 2.0, 0)
        Traceback (most recent call last):
        ...
        ValueError: max_iter must be an int >= 0, got 2.0
    """
    if value is None and none_ok:
        return None
    expected = (f"an int{'' if minimum is None else f' >= {minimum}'}"
                f"{' or None' if none_ok else ''}")
    try:
        number = _as_count(value)
    except TypeError:
        raise ValueError(f"{_where(owner)}{name} must be {expected}, got {value!r}") from None
    if minimum is not None and not number >= minimum:
        raise ValueError(f"{_where(owner)}{name} must be {expected}, got {value!r}")
    return number


def check_real(name: str, value: Any, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False, owner: str | None = None,
               none_ok: bool = False) -> float | None:
    """``value`` as a finite Python float (ints and NumPy scalars accepted), in a range.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        low, high: the bounds (``None``: unbounded on that side).
        low_open, high_open: exclude the bound itself.
        owner: the class or function, for the message.
        none_ok: let ``None`` through.

    Returns:
        The value as a ``float`` (or ``None``).

    Raises:
        ValueError: a bool, a non-number, NaN, an infinity or a value out of range.

    Example:
        >>> check_real('lr', 0.1, 0.0)
        0.1
        >>> check_real('p', float('nan'), 0.0, 1.0)
        Traceback (most recent call last):
        ...
        ValueError: p must be a finite number in [0, 1], got nan
    """
    if value is None and none_ok:
        return None
    wanted = describe_range("a finite number", low, high, low_open, high_open)
    message = (f"{_where(owner)}{name} must be {wanted}{' or None' if none_ok else ''}, "
               f"got {value!r}")
    number = None
    if not (_has_bool_dtype(value) or isinstance(value, (str, bytes, complex))
            or "complex" in str(getattr(value, "dtype", ""))
            or getattr(value, "shape", ()) != ()):  # a 0-d array is a number, (1,) is not
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if number is None or not math.isfinite(number):
        raise ValueError(message)
    if low is not None and not (number > low if low_open else number >= low):
        raise ValueError(message)
    if high is not None and not (number < high if high_open else number <= high):
        raise ValueError(message)
    return number


def check_bool(name: str, value: Any, *, owner: str | None = None) -> bool:
    """``value`` as a Python bool (NumPy's bool accepted; ``0``/``1`` and strings such as
    ``'False'``, which is truthy, are not).

    Raises:
        TypeError: anything else.

    Example:
        >>> check_bool('bias', True)
        True
    """
    if not _is_bool(value):
        raise TypeError(f"{_where(owner)}{name} must be True or False, got {value!r}")
    return bool(value)


def check_callable(name: str, value: Any, *, owner: str | None = None) -> Callable[..., Any]:
    """``value`` itself, if it is callable.

    Raises:
        TypeError: anything else, named with its type.

    Example:
        >>> check_callable('func', len) is len
        True
        >>> check_callable('func', 3)
        Traceback (most recent call last):
        ...
        TypeError: func must be callable, got int
    """
    if not callable(value):
        raise TypeError(f"{_where(owner)}{name} must be callable, got {type(value).__name__}")
    return value


def check_int_or_pair(name: str, value: Any, minimum: int, *,
                      owner: str | None = None) -> int | tuple[int, int]:
    """An int or a pair of ints (NumPy integers accepted), each at least ``minimum``.

    Returns:
        A Python int for a scalar, a tuple of two Python ints for a pair.

    Raises:
        ValueError: anything else.

    Example:
        >>> check_int_or_pair('stride', (1, 2), 1)
        (1, 2)
    """
    message = (f"{_where(owner)}{name} must be an int or a pair of ints >= {minimum}, "
               f"got {value!r}")
    if as_count(value) is not None or _has_bool_dtype(value):
        return check_int(name, value, minimum, owner=owner)
    try:
        pair = tuple(value) if not isinstance(value, (str, bytes)) else ()
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise ValueError(message)
    try:
        return tuple(check_int(name, v, minimum, owner=owner) for v in pair)  # type: ignore
    except ValueError:
        raise ValueError(message) from None
