"""Warnings and errors shared by every layer of npdeq. Imports nothing from npdeq."""

from __future__ import annotations

__all__ = ["ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """A solver stopped without reaching its tolerance, or met a non-finite value.

    The statistics of the solve say which samples are affected (``info['converged']``,
    ``info['nonfinite']``). Filter it like any warning::

        import warnings, npdeq
        warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
    """
