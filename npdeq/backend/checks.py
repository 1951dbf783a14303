"""Checks of scalar arguments shared by every layer: counts and numbers as Python values.

Counts accept anything :func:`operator.index` accepts (``int``, NumPy integers, 0-d integer
arrays) but not bools; numbers anything ``float`` accepts (NumPy scalars, 0-d arrays) but
not strings, bools or complex values, and never NaN or infinities. Each check returns the
Python value, so a NumPy float64 setting cannot promote a float32 computation. Imports
nothing from npdeq.
"""

from __future__ import annotations

import operator
from typing import Any

__all__ = ["as_count", "check_count", "check_number", "check_flag"]


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


def _as_count(value: Any) -> int:
    if isinstance(value, bool) or _dtype_kind(value) == "bool":
        raise TypeError("a bool is not a count")
    return operator.index(value)


def _dtype_kind(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return ""
    name = str(dtype)
    return "bool" if "bool" in name else "complex" if "complex" in name else name


def check_count(name: str, value: Any, minimum: int = 0, none_ok: bool = False) -> int | None:
    """``value`` as a Python int ``>= minimum`` (``None`` passes when ``none_ok``).

    Raises:
        ValueError: not an integer (bools and floats are not), or below ``minimum``; the
            message names ``name``.
    """
    if value is None and none_ok:
        return None
    expected = f"an int >= {minimum}{' or None' if none_ok else ''}"
    try:
        count = _as_count(value)
    except TypeError:
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None
    if count < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return count


def check_number(name: str, value: Any, low: float, high: float = float("inf"),
                 low_open: bool = False, high_open: bool = False,
                 none_ok: bool = False) -> float | None:
    """``value`` as a finite Python float in the interval from ``low`` to ``high``
    (``low_open``/``high_open``: excluding that end; ``None`` passes when ``none_ok``).

    Raises:
        ValueError: not a real number (strings, bools and complex values are not), NaN,
            infinite, or outside the interval; the message names ``name``.
    """
    if value is None and none_ok:
        return None
    interval = (f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                if high < float("inf") else f"{'> ' if low_open else '>= '}{low:g}")
    expected = (f"a finite number {'in ' if high < float('inf') else ''}{interval}"
                f"{' or None' if none_ok else ''}")
    number = None
    if not (isinstance(value, (bool, str, bytes, complex))
            or _dtype_kind(value) in ("bool", "complex")):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if number is None or not (low < number if low_open else low <= number) \
            or not (number < high if high_open else number <= high) \
            or number == float("inf"):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return number


def check_flag(name: str, value: Any) -> bool:
    """Raise TypeError unless ``value`` is a bool (a truthy string such as ``'False'``
    would silently switch the option on)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value
