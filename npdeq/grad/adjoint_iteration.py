"""Fixed-point iteration on the adjoint equation that stops once it cannot finish in time.

``u = J^T u + g`` is linear, and its fixed-point iterates converge at the rate of ``J``'s
spectral radius at z*. Where that is close to 1 the iteration cannot reach ``tol`` in
``max_iter`` steps, and the samples it leaves are solved again by GMRES (the adjoint's
fallback). From the same start and within a restart cycle, GMRES's residual is never above
the iteration's after as many products (its residual polynomial is the best of a family that
holds the iteration's), so the steps spent before the fallback are waste. :func:`adjoint_fixed_point` is
:func:`~npdeq.solver.fixed_point_iter` that measures the contraction of the samples still
pending at a third and at half of ``max_iter``, and stops there when one of them, at its
measured rate, would still be above ``tol`` after ``max_iter`` steps. A solve that finishes in
time is the same solve as ``fixed_point_iter``'s.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from npdeq import backend
from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.stats import SolverStat, relative_residual, start_solve

__all__ = ["adjoint_fixed_point", "CHECKS"]

# Where the contraction is measured, as fractions of max_iter; each check is one host read.
CHECKS = (1 / 3, 1 / 2)
# Fewer steps than this tell too little about the rate.
MIN_STEPS = 6


@solver_entry
def adjoint_fixed_point(func: Callable[[Any], Any], x0: Any, max_iter: int = 40,
                        tol: float = 1e-6, stop_mode: str = "abs"
                        ) -> tuple[Any, list, SolverStat]:
    """``fixed_point_iter`` on ``(B, D)`` states, stopped early where it cannot finish.

    Args:
        func: ``v -> J^T v + g`` on ``(B, D)`` arrays.
        x0: ``(B, D)`` start.
        max_iter: maximum number of iterations.
        tol: per-sample tolerance (positive).
        stop_mode: ``'abs'`` or ``'rel'``.

    Returns:
        ``(u, trajectory, info)`` as :func:`~npdeq.solver.fixed_point_iter`; a solve stopped
        early has its pending samples unconverged.

    Example:
        >>> import numpy as np
        >>> u, _, info = adjoint_fixed_point(lambda v: 0.99 * v + 1.0, np.zeros((1, 2)),
        ...                                  max_iter=60, tol=1e-6)
        >>> int(info['nfe']), bool(info['converged'][0])   # stopped at a third of max_iter
        (20, False)
    """
    max_iter, tol, stop_mode, steps, _ = check_solver_args(max_iter, tol, stop_mode, None, 1.0)
    f, x, restore, tracker = start_solve(func, x0, tol, stop_mode, steps)
    # tol = 0 runs to max_iter, which is no failure: nothing to stop early for.
    checks = {k for k in (int(max_iter * c) for c in CHECKS) if k >= MIN_STEPS} if tol else ()
    for k in range(1, max_iter + 1):
        fx = f(x)
        tracker.nfe += 1
        if not tracker.observe(x, fx):
            break
        if k in checks and _cannot_finish(tracker, k, max_iter, tol):
            break
        x = tracker.next_iterate(fx)
    return tracker.finish(restore, "fixed_point_iter")


def _cannot_finish(tracker: Any, k: int, max_iter: int, tol: float) -> bool:
    """Whether a pending sample, contracting as over its last ``k // 2`` steps, would still
    be above ``tol`` after ``max_iter`` steps (a sample that does not contract never ends)."""
    xp = tracker.xp
    window = k // 2

    def residual(i):
        abs_res = tracker.abs_trace[i]
        return abs_res if tracker.use_abs else relative_residual(xp, abs_res,
                                                                 tracker.image_sq_trace[i])

    now, before = residual(k - 1), residual(k - 1 - window)
    # rate**(max_iter - k) * now > tol, in logarithms; NaN (a non-finite residual, frozen
    # already) compares False.
    log_rate = (xp.log(now) - xp.log(before)) / window
    stays_above = (max_iter - k) * log_rate > math.log(tol) - xp.log(now)
    return backend.to_scalar(backend.any_true(tracker.active & stays_above))
