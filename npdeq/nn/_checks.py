"""Checks of the numeric arguments of public constructors and functions, in one place.

Every number a user passes to an optimizer, a layer, a norm, dropout, a loss or a model goes
through one of these: it must be a real number (a Python ``int``/``float`` or a NumPy scalar;
``bool`` is refused where a number is meant), finite, and in its range. Comparisons are written
``not x >= low`` so that NaN fails them. Errors are ``ValueError`` (``TypeError`` for a bool
that is not ``True``/``False``) naming the argument, the value and what was expected. Imports
nothing of npdeq (and no NumPy: NumPy scalars are recognised through ``operator.index`` and
``numbers``).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

__all__ = ["check_int", "check_real", "check_bool", "check_int_or_pair"]


def _is_bool(value: Any) -> bool:
    # NumPy's bool scalar is neither a Python bool nor a numbers.Number.
    return isinstance(value, bool) or (type(value).__module__ == "numpy"
                                       and type(value).__name__ in ("bool_", "bool"))


def _where(owner: str | None) -> str:
    return f"{owner}: " if owner else ""


def check_int(name: str, value: Any, minimum: int | None = None, *,
              owner: str | None = None) -> int:
    """``value`` as a Python int (NumPy integers accepted), at least ``minimum``.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        minimum: the smallest value allowed (``None``: no bound).
        owner: the class or function, for the message.

    Returns:
        The value as an ``int``.

    Raises:
        ValueError: a bool, a non-integer (a float included) or a value below ``minimum``.

    Example:
        >>> check_int('n_iters', 3, 1)
        3
    """
    if _is_bool(value):
        raise ValueError(f"{_where(owner)}{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{_where(owner)}{name} must be an int"
                         f"{'' if minimum is None else f' >= {minimum}'}, got {value!r}") from None
    if minimum is not None and not number >= minimum:
        raise ValueError(f"{_where(owner)}{name} must be an int >= {minimum}, got {value!r}")
    return number


def check_real(name: str, value: Any, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False,
               owner: str | None = None) -> float:
    """``value`` as a finite Python float (ints and NumPy scalars accepted), in a range.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        low, high: the bounds (``None``: unbounded on that side).
        low_open, high_open: exclude the bound itself.
        owner: the class or function, for the message.

    Returns:
        The value as a ``float``.

    Raises:
        ValueError: a bool, a non-number, NaN, an infinity or a value out of range.

    Example:
        >>> check_real('lr', 0.1, 0.0)
        0.1
        >>> check_real('p', float('nan'), 0.0, 1.0)
        Traceback (most recent call last):
        ...
        ValueError: p must be a finite number in [0.0, 1.0], got nan
    """
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    if low is not None and high is not None:
        wanted = f"a finite number in {left}{low}, {high}{right}"
    elif low is not None:
        wanted = f"a finite number {'>' if low_open else '>='} {low}"
    elif high is not None:
        wanted = f"a finite number {'<' if high_open else '<='} {high}"
    else:
        wanted = "a finite number"
    message = f"{_where(owner)}{name} must be {wanted}, got {value!r}"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ValueError(message)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(message)
    if low is not None and not (number > low if low_open else number >= low):
        raise ValueError(message)
    if high is not None and not (number < high if high_open else number <= high):
        raise ValueError(message)
    return number


def check_bool(name: str, value: Any, *, owner: str | None = None) -> bool:
    """``value`` as a Python bool (NumPy's bool accepted; ``0``/``1`` are not).

    Raises:
        TypeError: anything else.

    Example:
        >>> check_bool('bias', True)
        True
    """
    if not _is_bool(value):
        raise TypeError(f"{_where(owner)}{name} must be True or False, got {value!r}")
    return bool(value)


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
    if not isinstance(value, (str, bytes)):
        try:
            return check_int(name, value, minimum, owner=owner)
        except ValueError:
            if _is_bool(value) or isinstance(value, numbers.Number):
                raise
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if isinstance(value, (str, bytes)) or len(pair) != 2:
        raise ValueError(f"{_where(owner)}{name} must be an int or a pair of ints >= {minimum}, "
                         f"got {value!r}")
    try:
        return tuple(check_int(name, v, minimum, owner=owner) for v in pair)  # type: ignore
    except ValueError:
        raise ValueError(f"{_where(owner)}{name} must be an int or a pair of ints >= {minimum}, "
                         f"got {value!r}") from None
