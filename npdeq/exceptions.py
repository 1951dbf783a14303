"""Warnings and errors shared by every layer of npdeq."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "ConfigWarning"]


class ConvergenceWarning(UserWarning):
    """A solver stopped without reaching its tolerance, or met a non-finite value.

    The statistics of the solve say which samples are affected (``info['converged']``,
    ``info['nonfinite']``). Filter it like any warning::

        import warnings, npdeq
        warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
    """


class ConfigWarning(UserWarning):
    """A DEQ setting was given explicitly but has no effect in this configuration.

    For example ``tau`` (PhantomGrad's damping) with ``ift=True`` and a single sampled state,
    which IFT differentiates, or ``b_tol`` with ``ift=False``. TorchDEQ silently ignores these;
    npdeq keeps accepting them (configs ported from TorchDEQ often carry them) but says so
    once, when the core is built. Filter it like any warning::

        import warnings, npdeq
        warnings.simplefilter("ignore", npdeq.ConfigWarning)
    """
