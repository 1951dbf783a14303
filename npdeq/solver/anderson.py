"""Anderson acceleration with per-sample mixing weights, a ring-buffer history and an
incrementally updated Gram matrix.

With the last ``n <= m`` iterates ``x_i``, their images ``f_i = f(x_i)`` and residuals
``g_i = f_i - x_i``, the weights solve the regularised constrained least squares

    min_a  a^T (H + lam_s I) a   subject to  sum(a) = 1,   H_ij = <g_i, g_j>,

per sample. Its bordered (KKT) system ``[[0, 1^T], [1, H + lam_s I]]`` is solved by eliminating
the border: ``y = (H + lam_s I)^-1 1`` and ``a = y / sum(y)``. ``H + lam_s I`` is symmetric
positive definite for ``lam_s > 0``, so the system is never singular; ``lam_s`` is ``lam``
(plus the dtype's machine epsilon, so that ``lam = 0`` stays solvable when ``H`` is exactly
singular) times the mean of ``diag(H)`` (plus a tiny floor), which keeps the regularisation's
relative strength fixed as the residuals shrink. TorchDEQ adds an absolute ``lam = 1e-4``,
which dominates ``H`` once residuals are near 1e-2 and stalls convergence there. The next iterate
is ``sum_i a_i (tau * f_i + (1 - tau) * x_i)``. Each iteration adds one row to ``H`` (``m``
dot products), not a recomputation from the whole history.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend.checks import check_int, check_real
from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.stats import SolverStat, start_solve
from npdeq.solver.workspace import borrowed

__all__ = ["anderson_solver"]


@solver_entry
def anderson_solver(func: Callable[..., Any], x0: Any, max_iter: int = 50, tol: float = 1e-3,
                    stop_mode: str = "abs", indexing: Sequence[int] | None = None, m: int = 6,
                    lam: float = 1e-4, tau: float = 1.0, return_final: bool = False,
                    per_sample: bool = True
                    ) -> tuple[Any, list, SolverStat]:
    """Solve ``z = func(z)`` with Anderson acceleration, per sample.

    Args:
        %(func)s
        %(x0)s
        max_iter: maximum number of iterations (= function evaluations).
        %(tol)s
        %(stop_mode)s
        %(indexing)s
        m: history size (number of past iterates mixed).
        lam: regularisation, relative to the mean squared residual norm in the history.
        tau: mixing (damping) parameter ``beta`` in ``(0, 1]``.
        %(return_final)s
        %(per_sample)s

    Returns:
        ``(z, trajectory, info)`` as :func:`~npdeq.solver.fixed_point_iter`: ``z`` is the
        lowest-residual evaluated iterate per sample.

    Raises:
        ValueError: ``m < 1``, ``lam`` negative, NaN or infinite, or a bad shared argument
            (see :func:`~npdeq.solver.fixed_point_iter`).
        TypeError: ``return_final`` is not a bool; ``func`` returns another namespace, dtype
            or structure.

    Example:
        >>> import numpy as np
        >>> A = np.array([[0.9, 0.05], [0.0, 0.95]])
        >>> z, _, info = anderson_solver(lambda z: z @ A.T + 1.0, np.zeros((1, 2)), tol=1e-10)
        >>> bool(np.allclose(z, np.linalg.solve(np.eye(2) - A, np.ones(2))))
        True
    """
    max_iter, tol, stop_mode, steps, tau = check_solver_args(max_iter, tol, stop_mode, indexing,
                                                             tau)
    if not (type(m) is int and m >= 1):  # plain values pass without the general checks
        m = check_int("m (the Anderson history size)", m, 1)
    if not (type(lam) is float and 0.0 <= lam < math.inf):
        lam = check_real("lam", lam, 0.0)
    f, x, restore, tracker = start_solve(func, x0, tol, stop_mode, steps, return_final, per_sample)
    xp = tracker.xp
    batch, dim = x.shape
    dev = backend.device(x)
    # The (B, m, D) histories are borrowed: fresh ones would cost a page fault per 4 KiB page
    # at every solve. Their contents are undefined until written (see _iterate).
    with borrowed(xp, (batch, m, dim), x.dtype, dev, count=2) as (images, residuals):
        _iterate(f, x, tracker, images, residuals, max_iter, m, lam, tau)
    return tracker.finish(restore, "anderson_solver")


def _iterate(f, x, tracker, images, residuals, max_iter, m, lam, tau):
    """The Anderson loop: ``images``/``residuals`` are the ``(B, m, D)`` histories (a ring
    buffer, slot ``k % m`` for iteration ``k``)."""
    xp = tracker.xp
    batch = x.shape[0]
    dev = backend.device(x)
    dtype = x.dtype
    gram = xp.zeros((batch, m, m), dtype=dtype, device=dev)
    squares = xp.zeros((batch, m), dtype=dtype, device=dev)  # diag(gram), kept apart
    eye = xp.eye(m, dtype=dtype, device=dev)
    ones = xp.ones((batch, m), dtype=dtype, device=dev)
    floor, eps = _dtype_constants(xp, dtype)
    # Below rounding level relative to diag(H), lam_s would leave an exactly singular H
    # (lam = 0 with linearly dependent residuals) singular.
    lam_relative = lam + eps
    # NumPy and CuPy write f(x) - x straight into its history slot (no copy).
    in_place = backend.is_numpy(xp) or backend.is_cupy(xp)
    # Large states leave the new slot out of the Gram row's products (its entry is the
    # squared residual norm the tracker computes anyway, the same dot product): one fewer
    # pass over a (B, D) slot for one or two calls where small states make one.
    split_row = tracker.large and in_place
    subtract = xp.subtract
    observe = tracker.observe
    for k in range(max_iter):
        fx = f(x)
        tracker.nfe += 1
        slot = k % m
        if in_place:
            g = subtract(fx, x, out=residuals[:, slot, :])
        else:
            g = fx - x
        if not observe(x, fx, residual=g) or k == max_iter - 1:
            break
        n = min(k + 1, m)
        images[:, slot, :] = fx
        if not in_place:
            residuals[:, slot, :] = g
        # A sample that went non-finite has NaN/inf in its own rows only (every op here is
        # per sample); the tracker has frozen it, so its weights are never used. Only the n
        # filled residual slots enter the Gram matrix.
        if split_row:
            square = tracker.residual_sq
            gram[:, slot, slot] = square
            squares[:, slot] = square
            for lo, hi in ((0, slot), (slot + 1, n)):  # the filled slots either side
                if hi > lo:
                    row = xp.vecdot(residuals[:, lo:hi, :], g[:, None, :])
                    gram[:, slot, lo:hi] = row
                    gram[:, lo:hi, slot] = row
        else:
            row = xp.vecdot(residuals if n == m else residuals[:, :n, :], g[:, None, :])
            gram[:, slot, :n] = row
            gram[:, :n, slot] = row
            squares[:, slot] = row[:, slot]
        if n < m:
            # The history is still filling up: only its first n slots are mixed.
            history, history_res = images[:, :n, :], residuals[:, :n, :]
            weights = _mixing_weights(xp, gram[:, :n, :n], squares[:, :n], eye[:n, :n],
                                      ones[:, :n], lam_relative, floor, slot)
        else:
            history, history_res = images, residuals
            weights = _mixing_weights(xp, gram, squares, eye, ones, lam_relative, floor, slot)
        weights = weights[:, None, :]
        proposal = (weights @ history)[:, 0, :]
        if tau != 1.0:
            proposal = proposal - (1.0 - tau) * (weights @ history_res)[:, 0, :]
        x = tracker.next_iterate(proposal)


# (namespace, dtype) -> (sqrt of the smallest normal number, machine epsilon), as floats.
_CONSTANTS: dict = {}


def _dtype_constants(xp: Any, dtype: Any) -> tuple[float, float]:
    key = (xp, dtype)
    found = _CONSTANTS.get(key)
    if found is None:
        info = xp.finfo(dtype)
        found = _CONSTANTS[key] = (float(info.smallest_normal) ** 0.5, float(info.eps))
    return found


def _mixing_weights(xp: Any, gram: Any, squares: Any, eye: Any, ones: Any, lam: float,
                    floor: float, newest: int) -> Any:
    """Per-sample weights ``a`` (``(B, n)``, summing to 1) from the regularised Gram matrix
    (``squares`` is its diagonal)."""
    n = gram.shape[-1]
    if n == 1:
        return ones
    regularisation = (lam / n) * xp.vecdot(squares, ones) + floor
    try:
        y = backend.solve_vectors(gram + regularisation[:, None, None] * eye, ones)
    except Exception:  # noqa: BLE001 - LinAlgError types differ per library
        # Unreachable for finite input (the system is positive definite); a plain
        # fixed-point step is the safe fallback.
        newest_only = xp.arange(n, device=backend.device(gram)) == newest
        return xp.where(newest_only[None, :], ones, 0.0)
    return y / xp.vecdot(y, ones)[:, None]
