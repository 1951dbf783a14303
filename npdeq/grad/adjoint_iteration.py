"""Fixed-point iteration on the adjoint equation that stops once it cannot finish in time.

``u = J^T u + g`` is linear, and its fixed-point iterates converge at the rate of ``J``'s
spectral radius at z*. Where that is close to 1 the iteration cannot reach ``tol`` in
``max_iter`` steps, and the samples it leaves are solved again by GMRES (the adjoint's
fallback). From the same start and within a restart cycle, GMRES's residual is never above
the iteration's after as many products (its residual polynomial is the best of a family
that holds the iteration's), so the steps spent before the fallback are mostly waste.

:func:`adjoint_fixed_point` is :func:`~npdeq.solver.fixed_point_iter` that measures, at a
third and at half of ``max_iter``, how fast the pending samples contract, and stops there
when one of them contracts steadily but, even at its faster recent rate, would still be
more than ``MARGIN`` times above ``tol`` after ``max_iter`` steps. Rates are extrapolated,
so this can stop an iteration that would have finished (one whose rate keeps improving, as
with a non-normal ``J``): its samples then end in GMRES's answer, to the same tolerance, or,
where restarted GMRES stagnates, in the iteration's own, taken up again from where it stopped
(:func:`resume_iteration`). A solve that is not stopped is ``fixed_point_iter``'s, bit for
bit.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

from npdeq import backend
from npdeq.exceptions import ConvergenceWarning
from npdeq.solver import fixed_point_iter
from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.stats import SolverStat, relative_residual, start_solve

__all__ = ["adjoint_fixed_point", "resume_iteration", "CHECKS"]

# Where the contraction is measured, as fractions of max_iter; each check is one host read.
CHECKS = (1 / 3, 1 / 2)
# Fewer steps than this tell too little about the rate (two windows of k // 4 steps).
MIN_STEPS = 8
# How far above tol a sample must be bound to end for the iteration to stop.
MARGIN = 4.0


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
        early has its pending samples unconverged, and ``info['next_iterate']``, the iterate
        it would have gone on from (see :func:`resume_iteration`).

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
    stopped_at = None
    for k in range(1, max_iter + 1):
        fx = f(x)
        tracker.nfe += 1
        if not tracker.observe(x, fx):
            break
        if k in checks and _cannot_finish(tracker, k, max_iter, tol):
            stopped_at = fx
            break
        x = tracker.next_iterate(fx)
    z, trajectory, info = tracker.finish(restore, "fixed_point_iter")
    if stopped_at is not None:
        info["next_iterate"] = restore(stopped_at)
    return z, trajectory, info


def _cannot_finish(tracker: Any, k: int, max_iter: int, tol: float) -> bool:
    """Whether a pending sample that contracts steadily (its residual fell over each of its
    last two windows of ``k // 4`` steps) would, at the faster of the two rates, still be
    above ``MARGIN * tol`` after ``max_iter`` steps.

    A residual that grows in a window (a diverging sample, or one in the transient growth
    of a non-normal ``J``, which may yet converge in time) decides nothing: the iteration
    goes on, and its fallback takes what is left at ``max_iter``.
    """
    xp = tracker.xp
    window = k // 4

    def log_residual(i):
        abs_res = tracker.abs_trace[i]
        res = abs_res if tracker.use_abs else relative_residual(xp, abs_res,
                                                                tracker.image_sq_trace[i])
        return xp.log(res)

    now, middle, before = (log_residual(k - 1), log_residual(k - 1 - window),
                           log_residual(k - 1 - 2 * window))
    recent, earlier = (now - middle) / window, (middle - before) / window
    # NaN (a non-finite residual, frozen already) compares False throughout.
    steady = (recent < 0) & (earlier < 0)
    fastest = xp.minimum(recent, earlier)
    stays_above = now + (max_iter - k) * fastest > math.log(MARGIN * tol)
    return backend.to_scalar(backend.any_true(tracker.active & steady & stays_above))


def resume_iteration(func: Callable[[Any], Any], next_iterate: Any, stopped: SolverStat,
                     u: Any, info: SolverStat, kwargs: dict) -> tuple[Any, SolverStat]:
    """After :func:`adjoint_fixed_point` stopped early and the fallback left samples
    unconverged: go on iterating from where it stopped, with the steps it had left, and keep
    for those samples whichever of the two ends lower.

    Args:
        func: ``v -> J^T v + g``.
        next_iterate: the stopped iteration's ``info['next_iterate']``.
        stopped: its statistics.
        u, info: the answer and statistics after the fallback.
        kwargs: the adjoint's ``tol``, ``max_iter`` and ``stop_mode``.

    Returns:
        ``(u, info)`` merged; ``info['nfe']`` counts every VJP.
    """
    xp = backend.array_namespace(u)
    pending = xp.logical_not(info["converged"])
    if not backend.to_scalar(backend.any_true(pending)):
        return u, info
    done = int(stopped["nfe"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        u_more, _, more = fixed_point_iter(func, xp.astype(next_iterate, u.dtype),
                                           max_iter=kwargs["max_iter"] - done,
                                           tol=kwargs["tol"], stop_mode=kwargs["stop_mode"])
    key = "rel_lowest" if kwargs["stop_mode"] == "rel" else "abs_lowest"
    better = pending & (more["converged"] | (more[key] < info[key]))
    merged = SolverStat(info)
    for name in ("abs_lowest", "rel_lowest", "converged", "nonfinite"):
        merged[name] = xp.where(better, more[name], info[name])
    merged["nstep"] = xp.where(better, done + more["nstep"], info["nstep"])
    merged["nfe"] = info["nfe"] + more["nfe"]
    return backend.select_rows(better, u_more, u), merged
