"""Limited-memory Broyden's method on ``g(z) = f(z) - z``, per sample.

The inverse Jacobian of ``g`` is approximated as ``-I + U^T V`` (per sample, ``U`` and ``V``
of shape ``(r, D)``), starting from ``-I`` (the inverse Jacobian of ``g`` when ``f`` is flat),
so the first step is a plain fixed-point step. After each step the "good Broyden"
(Sherman-Morrison) rank-one update adds a pair ``(u, v)`` in a ring buffer of ``LBFGS_thres``
slots, overwriting the oldest. An update whose denominator ``dx^T B dg`` is tiny or
non-finite is skipped for that sample. With ``ls=True`` a per-sample backtracking line search
halves the step of the samples whose residual grew (each halving costs one evaluation of
``f`` and one host synchronisation).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend.checks import check_bool, check_int
from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.line_search import backtrack
from npdeq.solver.stats import SolverStat, start_solve

__all__ = ["broyden_solver"]

# Halvings tried by the line search before the smallest step is taken anyway.
LINE_SEARCH_HALVINGS = 4


@solver_entry
def broyden_solver(func: Callable[..., Any], x0: Any, max_iter: int = 50, tol: float = 1e-3,
                   stop_mode: str = "abs", indexing: Sequence[int] | None = None,
                   LBFGS_thres: int | None = None, ls: bool = False,
                   return_final: bool = False,
                   per_sample: bool = True) -> tuple[Any, list, SolverStat]:
    """Solve ``z = func(z)`` with limited-memory Broyden's method, per sample.

    Args:
        %(func)s
        %(x0)s
        max_iter: maximum number of iterations.
        %(tol)s
        %(stop_mode)s
        %(indexing)s
        LBFGS_thres: number of rank-one updates kept (default ``max_iter``, as TorchDEQ).
        ls: per-sample backtracking line search on ``||f(z) - z||``.
        %(return_final)s
        %(per_sample)s

    Returns:
        ``(z, trajectory, info)`` as :func:`~npdeq.solver.fixed_point_iter`; ``info['nfe']``
        counts line-search evaluations too.

    Raises:
        ValueError: ``LBFGS_thres < 1`` or a bad shared argument.
        TypeError: ``ls`` or ``return_final`` is not a bool; ``func`` returns another
            namespace, dtype or structure.

    Example:
        The fixed point of ``z = cos(z) / 2`` (about 0.450184), in six evaluations:

        >>> import numpy as np
        >>> z, _, info = broyden_solver(lambda z: 0.5 * np.cos(z), np.zeros((2, 3)), tol=1e-10)
        >>> round(float(z[0, 0]), 6), info['nfe']
        (0.450184, 6)
    """
    max_iter, tol, stop_mode, steps, _ = check_solver_args(max_iter, tol, stop_mode, indexing)
    memory = check_int("LBFGS_thres", LBFGS_thres, 1, none_ok=True)
    memory = max(max_iter, 1) if memory is None else memory
    check_bool("ls", ls)
    f, x, restore, tracker = start_solve(func, x0, tol, stop_mode, steps, return_final, per_sample)
    if max_iter == 0:
        return tracker.finish(restore, "broyden_solver")
    xp = tracker.xp
    inverse = _LowRankInverse(x, memory)
    tiny = float(xp.finfo(x.dtype).eps) ** 2

    fx = f(x)
    tracker.nfe += 1
    if not tracker.observe(x, fx):
        return tracker.finish(restore, "broyden_solver")
    g = tracker.residual
    for k in range(1, max_iter):
        step = -inverse.apply(g)
        # With ls: halve the step of the samples whose residual grew.
        norm0 = xp.vecdot(g, g) if ls else None
        x_new, fx_new = backtrack(f, tracker, x, step,
                                  lambda r, _: xp.vecdot(r, r) < norm0,
                                  LINE_SEARCH_HALVINGS if ls else 0)
        if not tracker.observe(x_new, fx_new) or k == max_iter - 1:
            break
        g_new = tracker.residual
        dx, dg = x_new - x, g_new - g
        b_dg = inverse.apply(dg)
        v = inverse.apply_transposed(dx)  # dx^T B, as a row
        denom = xp.vecdot(v, dg)
        ok = xp.isfinite(denom) & (xp.abs(denom) > tiny * xp.vecdot(dx, dx))
        inverse.add(backend.select_rows(ok, (dx - b_dg) / xp.where(ok, denom, 1.0)[:, None], 0.0),
                    backend.select_rows(ok, v, 0.0))
        x, g = x_new, g_new
    return tracker.finish(restore, "broyden_solver")


class _LowRankInverse:
    """``B = -I + U^T V`` per sample, ``U`` and ``V`` the rows of a ring buffer of at most
    ``memory`` updates. The buffer starts small and doubles as updates arrive, so a large
    ``LBFGS_thres`` (TorchDEQ's default is ``max_iter``) costs nothing until it is used.
    Products use the whole buffer: its empty rows are zeros and add nothing, and a sliced
    (strided) operand would make matmul several times slower than these few extra rows."""

    def __init__(self, like: Any, memory: int) -> None:
        self.xp = backend.array_namespace(like)
        self.memory = memory
        self.count = 0
        batch, dim = like.shape
        self.us = self.xp.zeros((batch, min(memory, 8), dim), dtype=like.dtype,
                                device=backend.device(like))
        self.vs = self.xp.zeros_like(self.us)

    def apply(self, vec: Any) -> Any:
        """``B vec`` for ``(B, D)`` ``vec``."""
        if self.count == 0:
            return -vec
        return _low_rank(self.us, self.vs, vec) - vec

    def apply_transposed(self, vec: Any) -> Any:
        """``vec^T B`` (as ``(B, D)`` rows)."""
        if self.count == 0:
            return -vec
        return _low_rank(self.vs, self.us, vec) - vec

    def add(self, u: Any, v: Any) -> None:
        """Add the rank-one term ``u v^T`` (overwriting the oldest once ``memory`` is full)."""
        slot = self.count % self.memory
        capacity = self.us.shape[1]
        if slot >= capacity:
            grown = min(2 * capacity, self.memory)
            pad = self.xp.zeros((self.us.shape[0], grown - capacity, self.us.shape[2]),
                                dtype=self.us.dtype, device=backend.device(self.us))
            self.us = self.xp.concat([self.us, pad], axis=1)
            self.vs = self.xp.concat([self.vs, self.xp.zeros_like(pad)], axis=1)
        self.us[:, slot, :] = u
        self.vs[:, slot, :] = v
        self.count += 1


def _low_rank(left: Any, right: Any, vec: Any) -> Any:
    """``left^T (right vec)`` per sample: ``(B, r, D)``, ``(B, r, D)``, ``(B, D)`` -> ``(B, D)``."""
    coefficients = right @ vec[:, :, None]             # (B, r, 1)
    return (coefficients[:, None, :, 0] @ left)[:, 0, :]
