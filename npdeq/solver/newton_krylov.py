"""Matrix-free Newton-Krylov on ``g(z) = f(z) - z``, per sample.

Each Newton step solves ``J_g d = -g(z)`` with the batched GMRES of
:mod:`npdeq.solver.gmres`, whose products are forward differences of ``f``:

    J_g v ~ (f(z + h v) - f(z)) / h - v,   h = eps_fd * (1 + ||z||) / ||v||   (per sample),

so a product costs one evaluation of ``f`` and no derivative of it. The linear solve stops at
the Eisenstat-Walker forcing term (``||J_g d + g|| <= eta ||g||``, ``eta`` shrinking as the
residual falls, at most ``inner_tol``), and never tighter than half the outer tolerance: the
linear model need not be more accurate than the answer asked for. A per-sample backtracking
(Armijo) line search on ``||g||`` halves the step of the samples whose residual did not fall
enough. Converged samples get a zero right-hand side, so they cost their Krylov solves nothing
and stay frozen.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend.checks import check_bool, check_int, check_real
from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.gmres import check_restart, flag_nonfinite, solve_batched
from npdeq.solver.line_search import backtrack
from npdeq.solver.stats import REL_EPS, SolverStat, start_solve

__all__ = ["newton_krylov"]

# Halvings the line search tries before the smallest step (1/256) is taken anyway.
LINE_SEARCH_HALVINGS = 8
# Sufficient decrease: ||g(z + lam d)|| <= (1 - ARMIJO * lam) ||g(z)||.
ARMIJO = 1e-4
# Eisenstat-Walker "choice 2": eta_k = GAMMA * (||g_k|| / ||g_k-1||) ** 2, safeguarded.
EW_GAMMA = 0.9
EW_SAFEGUARD = 0.1


@solver_entry
def newton_krylov(func: Callable[..., Any], x0: Any, max_iter: int = 50, tol: float = 1e-3,
                  stop_mode: str = "abs", indexing: Sequence[int] | None = None,
                  restart: int = 40, inner_tol: float = 0.1, inner_max_iter: int | None = None,
                  fd_eps: float | None = None, line_search: bool = True,
                  return_final: bool = False,
                  per_sample: bool = True) -> tuple[Any, list, SolverStat]:
    """Solve ``z = func(z)`` by inexact Newton steps on ``f(z) - z`` with GMRES inner solves,
    per sample.

    Args:
        %(func)s
        %(x0)s
        max_iter: the most Newton iterations (iterates evaluated, ``x0`` included); each
            costs one evaluation plus its GMRES products and line-search evaluations.
        %(tol)s
        %(stop_mode)s
        indexing: iterations (1-based, ``x0`` is the first) at which to record the best state.
        restart: Krylov dimension of a GMRES cycle (capped at the state size ``D``). Larger
            is better on slowly contracting maps (restarted GMRES can stagnate), at the cost of
            a ``(B, restart + 1, D)`` basis.
        inner_tol: the largest forcing term ``eta`` in ``(0, 1)``: a Newton step's GMRES stops
            once ``||J_g d + g|| <= eta ||g||``.
        inner_max_iter: the most products (evaluations of ``func``) per Newton step (default
            one cycle, ``min(restart, D)``: a new linearisation beats a restart).
        fd_eps: relative difference step (default the square root of the dtype's epsilon).
        line_search: backtrack per sample until the residual falls enough.
        %(return_final)s
        %(per_sample)s

    Returns:
        ``(z, trajectory, info)`` as :func:`~npdeq.solver.fixed_point_iter`; ``info['nfe']``
        counts every evaluation of ``func``, those inside the difference products and the line
        search included. A sample for which any evaluation returned NaN/inf is flagged in
        ``info['nonfinite']`` and keeps its best finite iterate.

    Raises:
        ValueError: a bad ``restart``, ``inner_tol``, ``inner_max_iter``, ``fd_eps`` or
            shared argument.
        TypeError: ``line_search`` or ``return_final`` is not a bool; ``func`` returns another
            namespace, dtype or structure.

    Example:
        >>> import numpy as np
        >>> A = np.array([[0.99, 0.0], [0.05, -0.9]])                      # (D, D)
        >>> f = lambda z: np.tanh(z @ A.T) + 0.1                           # (B, D) -> (B, D)
        >>> z, _, info = newton_krylov(f, np.zeros((3, 2)), tol=1e-10)
        >>> bool(np.allclose(z, f(z), atol=1e-9)), bool(info['converged'].all())
        (True, True)
    """
    max_iter, tol, stop_mode, steps, _ = check_solver_args(max_iter, tol, stop_mode, indexing)
    restart = check_restart(restart)
    inner_tol = check_real("inner_tol", inner_tol, 0.0, 1.0, low_open=True, high_open=True)
    inner_max_iter = check_int("inner_max_iter", inner_max_iter, 1, none_ok=True)
    fd_eps = check_real("fd_eps", fd_eps, 0.0, low_open=True, none_ok=True)
    check_bool("line_search", line_search)
    f, x, restore, tracker = start_solve(func, x0, tol, stop_mode, steps, return_final, per_sample)
    if max_iter == 0:
        return tracker.finish(restore, "newton_krylov")
    xp = tracker.xp
    relative_step = fd_eps if fd_eps is not None else float(xp.finfo(x.dtype).eps) ** 0.5
    m = min(restart, max(x.shape[1], 1))
    budget = inner_max_iter if inner_max_iter is not None else m

    fx = f(x)
    tracker.nfe = 1
    if not tracker.observe(x, fx):
        return tracker.finish(restore, "newton_krylov")
    eta = xp.full_like(x[:, 0], float(inner_tol))
    for _ in range(1, max_iter):
        g = tracker.residual
        g_norm = _norm(xp, g)
        outer = tol if stop_mode == "abs" else tol * (_norm(xp, fx) + REL_EPS)
        # Every active sample is above its outer tolerance, hence above this threshold.
        threshold = xp.maximum(eta * g_norm, 0.5 * outer * xp.ones_like(g_norm))
        jvp = _difference_product(f, x, fx, relative_step * (1.0 + _norm(xp, x)))
        rhs = backend.select_rows(tracker.active, -g, 0.0)
        step, inner = solve_batched(jvp, rhs, None, threshold, budget, m,
                                    final_residual=False, assume_active=True)
        tracker.nfe += inner["nmatvec"]
        flag_nonfinite(tracker, inner["nonfinite"])
        step = xp.where(inner["nonfinite"][:, None], 0.0, step)
        # Per sample, the first of 1, 1/2, 1/4, ... of the step with sufficient decrease
        # (halving beat quadratic interpolation, which cut steps shorter, on slowly
        # contracting tanh maps); NaN residuals are not accepted.
        x_new, fx_new = backtrack(
            f, tracker, x, step,
            lambda r, scale: _norm(xp, r) <= (1.0 - ARMIJO * scale) * g_norm,
            LINE_SEARCH_HALVINGS if line_search else 0)
        eta = _forcing_term(xp, eta, _norm(xp, fx_new - x_new), g_norm, inner_tol)
        if not tracker.observe(x_new, fx_new):
            break
        x, fx = x_new, fx_new
    return tracker.finish(restore, "newton_krylov")


def _norm(xp: Any, a: Any) -> Any:
    return xp.sqrt(xp.vecdot(a, a))


def _difference_product(f: Callable[[Any], Any], x: Any, fx: Any, scale: Any
                        ) -> Callable[[Any], Any]:
    """``v -> (f(x + h v) - f(x)) / h - v`` with ``h = scale / ||v||`` per sample, so that the
    perturbation has the same size whatever ``v``'s norm (zero rows give zero)."""
    xp = backend.array_namespace(x)

    def product(v: Any) -> Any:
        v_norm = _norm(xp, v)
        h = (scale / xp.where(v_norm > 0, v_norm, 1.0))[:, None]
        return (f(x + h * v) - fx) / h - v

    return product


def _forcing_term(xp: Any, eta: Any, new_norm: Any, old_norm: Any, largest: float) -> Any:
    """Eisenstat-Walker choice 2 with its safeguard, at most ``largest``, per sample."""
    ratio = new_norm / xp.where(old_norm > 0, old_norm, 1.0)
    proposal = EW_GAMMA * ratio * ratio
    # Do not let eta drop sharply while the previous one was still large: the residual may
    # have fallen by luck, not because the linear model is that accurate.
    floor = EW_GAMMA * eta * eta
    proposal = xp.where(floor > EW_SAFEGUARD, xp.maximum(proposal, floor), proposal)
    proposal = xp.where(xp.isfinite(proposal), proposal, largest)
    return xp.minimum(proposal, xp.full_like(proposal, largest))
