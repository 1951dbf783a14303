"""Fixed-point iteration: ``z <- tau * f(z) + (1 - tau) * z``, with and without statistics."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.state import packed_map
from npdeq.solver.stats import SolveTracker, SolverStat, start_solve

__all__ = ["fixed_point_iter", "simple_fixed_point_iter"]


@solver_entry
def fixed_point_iter(func: Callable[..., Any], x0: Any, max_iter: int = 50, tol: float = 1e-3,
                     stop_mode: str = "abs", indexing: Sequence[int] | None = None,
                     tau: float = 1.0, return_final: bool = False,
                     per_sample: bool = True) -> tuple[Any, list, SolverStat]:
    """Solve ``z = func(z)`` by damped fixed-point iteration, per sample.

    Each iteration evaluates ``f`` once at the current iterate ``x_k`` and moves to
    ``tau * f(x_k) + (1 - tau) * x_k``. A sample whose residual reaches ``tol`` is frozen; the
    loop ends when every sample has converged (or gone non-finite) or after ``max_iter``
    evaluations.

    As every solver of this package: counts and numbers may be NumPy scalars; NumPy's
    floating-point warnings are silenced during the solve, ``func``'s included (non-finite
    values are reported through ``info['nonfinite']`` and one ConvergenceWarning, whose
    message carries no numbers, so the default filter shows it once per calling line); a
    float16 state is solved in float32 (``func`` still sees and returns float16, ``z`` comes
    back float16, the statistics are float32).

    Args:
        func: ``func(z) -> z'`` on ``(B, ...)`` arrays, or ``func(*zs) -> tuple`` when ``x0``
            is a tuple of arrays sharing the batch dimension (TorchDEQ's convention).
        %(x0)s
        max_iter: maximum number of iterations (= function evaluations).
        %(tol)s
        stop_mode: ``'abs'`` (``||f(z) - z||``) or ``'rel'`` (divided by ``||f(z)||``).
        %(indexing)s
        tau: damping in ``(0, 1]``.
        %(return_final)s
        %(per_sample)s

    Returns:
        ``(z, trajectory, info)``: ``z`` has ``x0``'s structure and is, per sample, the
        evaluated iterate with the lowest ``stop_mode`` residual (so ``info['abs_lowest']`` is
        exactly ``||f(z) - z||``; TorchDEQ returns ``f`` of it instead); ``trajectory`` holds
        one state per ``indexing`` entry (padded with ``z`` when the solve stopped early);
        ``info`` a :class:`~npdeq.solver.stats.SolverStat`.

    Raises:
        ValueError: a bad ``max_iter``, ``tol``, ``stop_mode``, ``tau`` or ``indexing``; or
            ``func`` returns another shape or device.
        TypeError: ``return_final`` is not a bool; ``func`` returns another namespace, dtype
            or structure.

    Example:
        >>> import numpy as np
        >>> z, _, info = fixed_point_iter(lambda z: 0.5 * z + 1.0, np.zeros((2, 3)), tol=1e-8)
        >>> bool(np.allclose(z, 2.0)), bool(info['converged'].all())
        (True, True)
    """
    max_iter, tol, stop_mode, steps, tau = check_solver_args(max_iter, tol, stop_mode, indexing,
                                                             tau)
    f, x, restore, tracker = start_solve(func, x0, tol, stop_mode, steps, return_final, per_sample)
    for _ in range(max_iter):
        fx = f(x)
        tracker.nfe += 1
        if not tracker.observe(x, fx):
            break
        x = tracker.next_iterate(fx if tau == 1.0 else tau * fx + (1.0 - tau) * x)
    return tracker.finish(restore, "fixed_point_iter")


@solver_entry
def simple_fixed_point_iter(func: Callable[..., Any], x0: Any, max_iter: int = 50,
                            tau: float = 1.0, indexing: Sequence[int] | None = None,
                            tol: float | None = None, stop_mode: str = "abs"
                            ) -> tuple[Any, list, SolverStat]:
    """Run exactly ``max_iter`` damped fixed-point steps: the cheapest loop, no stopping test.

    No residual is computed inside the loop and nothing is synchronised with the host. The
    statistics describe the last step from evaluations already made: ``abs_lowest`` is
    ``||f(x) - x||`` of the iterate the last step started from, ``nstep`` is ``max_iter``,
    the traces hold that one column, and ``converged`` is all False (no tolerance).

    Args:
        func: any function ``func(z) -> z'`` (or ``func(*zs) -> tuple`` for a tuple state).
        %(x0)s
        max_iter: number of steps.
        tau: damping in ``(0, 1]``.
        indexing: steps (1-based) after which to record the state.
        tol: accepted (and checked) for the solver contract; nothing stops early.
        stop_mode: accepted (and checked) for the solver contract.

    Returns:
        ``(z, trajectory, info)`` with ``z`` the state after ``max_iter`` steps.

    Raises:
        ValueError: a bad ``max_iter``, ``tol``, ``stop_mode``, ``tau`` or ``indexing``.

    Example:
        >>> import numpy as np
        >>> z, _, _ = simple_fixed_point_iter(lambda z: 0.5 * z, np.ones((1, 2)), max_iter=3)
        >>> z.tolist()
        [[0.125, 0.125]]
    """
    max_iter, tol, stop_mode, steps, tau = check_solver_args(max_iter, tol, stop_mode, indexing,
                                                             tau)
    f, x, restore = packed_map(func, x0)
    recorded = {}
    fx = x
    prev = x
    for k in range(1, max_iter + 1):
        prev = x
        fx = f(x)
        x = fx if tau == 1.0 else tau * fx + (1.0 - tau) * x
        if k in steps:
            recorded[k] = x
    # One observation of the last step's start describes the step (no extra evaluation).
    tracker = SolveTracker(prev, None, "abs", ())
    if max_iter > 0:
        tracker.observe(prev, fx, sync=False)
    tracker.best = x
    tracker.nfe = max_iter
    z, _, info = tracker.finish(restore, "simple_fixed_point_iter", warn=False)
    info["nstep"] = tracker.xp.full_like(info["nstep"], max_iter)
    return z, [restore(recorded.get(k, x)) for k in steps], info
