"""Per-sample backtracking along a step: the line search Broyden (``ls=True``) and
Newton-Krylov share."""

from __future__ import annotations

from typing import Any, Callable

from npdeq import backend
from npdeq.backend import Array
from npdeq.solver.stats import SolveTracker

__all__ = ["backtrack"]


def backtrack(f: Callable[[Array], Array], tracker: SolveTracker, x: Array, step: Array,
              accept: Callable[[Array, Any], Array], halvings: int) -> tuple[Array, Array]:
    """The next iterate and its image: the first of ``x + step``, ``x + step/2``, ... that
    ``accept``\\ s, per sample; after ``halvings`` halvings the last one tried is taken.

    Each round evaluates ``f`` once for the batch (samples already accepted keep their
    point) and reads one flag to the host.

    Args:
        f: the map on packed ``(B, D)`` arrays.
        tracker: the solve's tracker (frozen samples never move; ``nfe`` is counted).
        x: ``(B, D)`` current iterate.
        step: ``(B, D)`` full step.
        accept: ``accept(residual, scale) -> (B,) bool`` with ``residual = f(x') - x'`` at the
            candidate and ``scale`` the step fraction it was taken with (NaN must give False).
        halvings: the most halvings (0: take the full step).

    Returns:
        ``(x_new, f(x_new))``, both ``(B, D)``.
    """
    xp = tracker.xp
    x_new = tracker.next_iterate(x + step)
    fx_new = f(x_new)
    tracker.nfe += 1
    scale = xp.ones((x.shape[0],), dtype=x.dtype, device=backend.device(x))
    for _ in range(halvings):
        retry = tracker.active & ~accept(fx_new - x_new, scale)
        if not backend.to_scalar(xp.any(retry)):
            break
        scale = xp.where(retry, 0.5 * scale, scale)
        candidate = tracker.next_iterate(x + scale[:, None] * step)
        fx_candidate = f(candidate)
        tracker.nfe += 1
        x_new = backend.select_rows(retry, candidate, x_new)
        fx_new = backend.select_rows(retry, fx_candidate, fx_new)
    return x_new, fx_new
