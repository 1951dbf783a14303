"""The one way npdeq warns that a solve failed.

A failed solve (a sample that did not reach its tolerance, or met NaN/inf) is reported with
:class:`~npdeq.exceptions.ConvergenceWarning`, pointing at the first frame outside npdeq: the
user's line that started the solve. Messages carry no numbers (those are in the statistics),
so Python's default filter shows a failing solve once per calling line, not once per call.

API, for every site that reports a failed solve:

- :func:`warn_if_failed` ``(info, nonfinite, not_converged=None, *, who=None, skip=())`` reads a
  statistics record (``info['converged']``, ``info['nonfinite']``, per-sample bools) and
  warns with the message ``nonfinite`` when some sample is non-finite, else with
  ``not_converged`` (when given) when some sample did not converge. With ``not_converged``
  the all-converged case costs one host read (a converged sample is finite in every npdeq
  record); without it (a solve run to ``max_iter`` on purpose, or one known to have
  converged) only ``nonfinite`` is read. ``who`` is put before the message. Returns whether
  it warned.
- :func:`warn_failure` ``(message, *, skip=())`` issues the warning for a failure the caller
  has detected itself.
- :func:`warn_location` ``(skip=())`` is the ``stacklevel`` both use.

``skip`` names further top-level packages whose frames are walked over as npdeq's are (for
example ``("autograd",)`` where HIPS autograd's tracer calls npdeq).
"""

from __future__ import annotations

import functools
import sys
import warnings
from typing import Any, Mapping, Sequence

from npdeq import backend
from npdeq.exceptions import ConvergenceWarning

__all__ = ["warn_if_failed", "warn_failure", "warn_location"]


def warn_if_failed(info: Mapping[str, Any], nonfinite: str, not_converged: str | None = None,
                   *, who: str | None = None, skip: Sequence[str] = ()) -> bool:
    """Warn once if the solve recorded in ``info`` failed for some sample.

    Args:
        info: statistics with ``(B,)`` bool arrays ``'nonfinite'`` and (when
            ``not_converged`` is given) ``'converged'``.
        nonfinite: the message when some sample met non-finite values.
        not_converged: the message when some sample did not converge; ``None`` checks only
            for non-finite values.
        who: a name put before the message (``'who: message'``), so that constant
            messages serve several callers without being formatted on every call.
        skip: further packages whose frames the warning's location walks over.

    Returns:
        Whether a warning was issued.

    Example:
        >>> import numpy as np, warnings
        >>> info = {'converged': np.array([True, False]), 'nonfinite': np.array([False, False])}
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter('always')
        ...     warn_if_failed(info, 'solve: non-finite', 'solve: did not converge')
        True
        >>> str(caught[0].message)
        'solve: did not converge'
    """
    # The usual case, every sample converged, costs one host read.
    if not_converged is not None and not backend.to_scalar(
            backend.any_true(~info["converged"])):
        return False
    if backend.to_scalar(backend.any_true(info["nonfinite"])):
        message = nonfinite
    elif not_converged is not None:  # not all converged (read above)
        message = not_converged
    else:
        return False
    if who is not None:
        message = f"{who}: {message}"
    warnings.warn(message, ConvergenceWarning, stacklevel=warn_location(skip))
    return True


def warn_failure(message: str, *, skip: Sequence[str] = ()) -> None:
    """Issue ``message`` as a :class:`~npdeq.exceptions.ConvergenceWarning` at the user's
    line that started the solve (see :func:`warn_location`).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter('always')
        ...     warn_failure('segment: f returned non-finite values')
        >>> caught[0].category.__name__
        'ConvergenceWarning'
    """
    warnings.warn(message, ConvergenceWarning, stacklevel=warn_location(skip))


def warn_location(skip: Sequence[str] = ()) -> int:
    """The ``stacklevel`` that makes a warning issued by this function's caller point at the
    first frame outside npdeq (and outside the packages named in ``skip``): the user's line
    that started the solve (so the default filter shows it once per such line)."""
    names, prefixes = _walked(tuple(skip))
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name not in names and not name.startswith(prefixes):
            return level
        frame = frame.f_back
        level += 1
    return 1


@functools.lru_cache(maxsize=None)
def _walked(skip: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # The package names a warning walks over and their submodule prefixes, built once per
    # ``skip`` (a failed solve in a deep tape stack walks many frames).
    names = ("npdeq", *skip)
    return names, tuple(name + "." for name in names)
