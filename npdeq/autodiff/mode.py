"""Grad mode: whether operations are recorded on the tape, per thread."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


class GradMode(threading.local):
    """The per-thread recording flag (read by every primitive call: one attribute lookup)."""

    enabled = True


grad_mode = GradMode()


class CallTracing(threading.local):
    """The per-thread call trace (:mod:`npdeq.autodiff.replay`), told of every primitive call
    while one is installed."""

    trace = None


call_tracing = CallTracing()


def is_grad_enabled() -> bool:
    """Whether new operations are recorded on the tape in this thread."""
    return grad_mode.enabled


@contextmanager
def set_grad_enabled(enabled: bool) -> Iterator[None]:
    """Context manager that turns recording on or off in this thread, restoring it on exit.

    Args:
        enabled: whether operations inside the block are recorded.

    Example:
        >>> with set_grad_enabled(False):
        ...     assert not is_grad_enabled()
    """
    previous = grad_mode.enabled
    grad_mode.enabled = bool(enabled)
    try:
        yield
    finally:
        grad_mode.enabled = previous


def no_grad():
    """Context manager under which nothing is recorded (results carry no graph).

    Example:
        >>> import npdeq
        >>> x = npdeq.tensor([1.0, 2.0], requires_grad=True)
        >>> with npdeq.no_grad():
        ...     y = x * 2
        >>> y.requires_grad
        False
    """
    return set_grad_enabled(False)


def enable_grad():
    """Context manager that records operations even inside a ``no_grad`` block."""
    return set_grad_enabled(True)
