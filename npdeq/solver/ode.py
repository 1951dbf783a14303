"""The continuous-time solver: integrate ``dz/dt = f(z) - z`` to its steady state, per sample.

A steady state of the flow is a fixed point of ``f``, and near a stable one the flow contracts
whenever ``f``'s Jacobian has its eigenvalues left of 1: more often than plain iteration
does, which is what continuous DEQs (Pal et al., 2022) buy with their extra evaluations. The
integrator is an adaptive explicit Runge-Kutta 5(4) pair, Dormand-Prince (``'dopri5'``) or
Tsitouras (``'tsit5'``), first-same-as-last: a step costs six evaluations, and its last stage
is ``f`` at the new state, which is also the residual the stopping test needs. Each sample
has its own step size, chosen by the usual error control (``rtol``/``atol`` on the
embedded error estimate) together with one more bound for steady states: a step's error
estimate must also be a small fraction of the step, or the step size grows to the edge of
stability and the state wanders at the tolerance level instead of settling. A sample stops
when its fixed-point residual reaches ``tol``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend.checks import check_real
from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.gmres import flag_nonfinite
from npdeq.solver.stats import SolveTracker, SolverStat, start_solve

__all__ = ["ode_solver", "TABLEAUS"]

# Step-size control: h <- h * clip(SAFETY * err^(-1/5), MIN_FACTOR, MAX_FACTOR).
SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
# A step's error estimate may be at most this fraction of the step (see _error_norm).
STEP_FRACTION = 0.1

# Butcher tableaus, autonomous form (the flow has no explicit time): ``a`` holds the rows of
# stages 2..7 (the last one is the 5th-order solution, so its row is ``b``: FSAL), ``error``
# the weights of the embedded error estimate (5th-order minus 4th-order solution).
TABLEAUS = {
    "dopri5": {
        "a": (
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        "error": (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525,
                  -1 / 40),
    },
    "tsit5": {
        "a": (
            (0.161,),
            (-0.008480655492356989, 0.335480655492357),
            (2.897153057105493, -6.359448489975075, 4.3622954328695815),
            (5.325864828439257, -11.748883564062828, 7.4955393428898365,
             -0.09249506636175525),
            (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
             -0.028269050394068383),
            (0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
             -3.290069515436081, 2.324710524099774),
        ),
        "error": (-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
                  -0.1447110071732629, 0.5823571654525552, -0.45808210592918697,
                  1 / 66),
    },
}


@solver_entry
def ode_solver(func: Callable[..., Any], x0: Any, max_iter: int = 50, tol: float = 1e-3,
               stop_mode: str = "abs", indexing: Sequence[int] | None = None,
               method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-6,
               h0: float | None = None, return_final: bool = False,
               per_sample: bool = True
               ) -> tuple[Any, list, SolverStat]:
    """Solve ``z = func(z)`` as the steady state of ``dz/dt = func(z) - z``, per sample.

    The iterations the statistics see are ``z0`` and then one per attempted step: the new
    state where the step was accepted, the same state again where it was rejected (its step
    size shrinks). ``max_iter`` therefore bounds the steps (``max_iter - 1`` of them), not the
    evaluations: the solve costs ``1 + 6 * steps`` evaluations of ``func``, plus one for the
    initial step size when ``h0`` is not given.

    Args:
        %(func)s
        %(x0)s
        max_iter: the most iterations: ``z0`` and ``max_iter - 1`` Runge-Kutta steps.
        tol: tolerance on the ``stop_mode`` fixed-point residual ``||f(z) - z||`` (``0``: no
            early stop).
        %(stop_mode)s
        indexing: iterations (1-based, ``z0`` is the first) at which to record the state.
        method: ``'dopri5'`` (Dormand-Prince) or ``'tsit5'`` (Tsitouras).
        rtol: relative tolerance of the local error control (``>= 0``).
        atol: absolute tolerance of the local error control (``> 0``).
        h0: initial step size for every sample (default: estimated per sample from two
            evaluations, Hairer and Wanner's rule).
        return_final: return the last accepted state instead of the lowest-residual one.
        %(per_sample)s

    Returns:
        ``(z, trajectory, info)`` as :func:`~npdeq.solver.fixed_point_iter`; ``info['nfe']``
        counts every evaluation. A sample for which a stage returned NaN/inf (or whose step
        overflowed) is flagged in ``info['nonfinite']`` and keeps its best finite state.

    Raises:
        ValueError: an unknown ``method``, a bad ``rtol``, ``atol``, ``h0`` or shared
            argument.
        TypeError: ``return_final`` is not a bool; ``func`` returns another namespace, dtype
            or structure.

    Example:
        >>> import numpy as np
        >>> A = np.array([[0.5, -0.4], [0.4, 0.5]])                     # (D, D)
        >>> f = lambda z: np.tanh(z @ A.T + 1.0)                        # (B, D) -> (B, D)
        >>> z, _, info = ode_solver(f, np.zeros((2, 2)), max_iter=200, tol=1e-8)
        >>> bool(np.allclose(z, f(z), atol=1e-7)), bool(info['converged'].all())
        (True, True)
    """
    max_iter, tol, stop_mode, steps, _ = check_solver_args(max_iter, tol, stop_mode, indexing)
    if not isinstance(method, str) or method not in TABLEAUS:
        raise ValueError(f"method must be one of {tuple(TABLEAUS)}, got {method!r}")
    rtol = check_real("rtol", rtol, 0.0)
    atol = check_real("atol", atol, 0.0, low_open=True)
    h0 = check_real("h0", h0, 0.0, low_open=True, none_ok=True)
    f, x, restore, tracker = start_solve(func, x0, tol, stop_mode, steps, return_final, per_sample)
    if max_iter == 0:
        return tracker.finish(restore, "ode_solver")
    xp = tracker.xp
    fx = f(x)
    tracker.nfe = 1
    if not tracker.observe(x, fx) or max_iter == 1:
        return tracker.finish(restore, "ode_solver")
    tableau = TABLEAUS[method]
    if h0 is None:
        h = _initial_step(f, tracker, x, rtol, atol)
    else:
        h = xp.full_like(x[:, 0], float(h0))
    for _ in range(1, max_iter):
        x_new, fx_new, error = _step(f, tracker, x, h, tableau)
        err = _error_norm(xp, error, x, x_new, rtol, atol)
        active = tracker.active
        bad = active & ~xp.isfinite(err)
        accept = active & (err <= 1.0)
        h = xp.where(active & ~bad, h * _step_factor(xp, err, accept), h)
        flag_nonfinite(tracker, bad)
        x = backend.select_rows(accept, x_new, x)
        fx = backend.select_rows(accept, fx_new, fx)
        if not tracker.observe(x, fx):
            break
    return tracker.finish(restore, "ode_solver")


def _step(f: Callable[[Any], Any], tracker: SolveTracker, x: Any, h: Any, tableau: dict
          ) -> tuple[Any, Any, Any]:
    """One Runge-Kutta step of size ``h`` (per sample) from ``x`` for the active samples
    (the others stay where they are): the new state, ``f`` there, and the error estimate."""
    xp = tracker.xp
    h_active = xp.where(tracker.active, h, 0.0)[:, None]
    stages = [tracker.residual]  # f(x) - x, known from the last observation (FSAL)
    y = fy = x
    for row in tableau["a"]:
        increment = None
        for weight, k in zip(row, stages):
            if weight != 0.0:
                increment = weight * k if increment is None else increment + weight * k
        # Where() rather than h = 0 for frozen samples: a non-finite stage of theirs must
        # not reach the state.
        y = backend.select_rows(tracker.active, x + h_active * increment, x)
        fy = f(y)
        tracker.nfe += 1
        stages.append(fy - y)
    error = None
    for weight, k in zip(tableau["error"], stages):
        if weight != 0.0:
            error = weight * k if error is None else error + weight * k
    return y, fy, h_active * error


def _error_norm(xp: Any, error: Any, x: Any, x_new: Any, rtol: float, atol: float) -> Any:
    """Per sample, the larger of the usual RMS error ratio ``|e_i| / (atol + rtol *
    max(|x_i|, |x_new_i|))`` and ``||e|| / (STEP_FRACTION * ||x_new - x||)``. The second
    keeps the step's error a small fraction of the step itself: with the usual ratio alone
    the step size grows to the edge of stability near the steady state and the state wanders
    at the tolerance level (measured: the residual stalls near ``rtol * |z|``)."""
    scale = atol + rtol * xp.maximum(xp.abs(x), xp.abs(x_new))
    ratio = error / scale
    usual = xp.sqrt(xp.vecdot(ratio, ratio) / max(x.shape[1], 1))
    error_size = xp.sqrt(xp.vecdot(error, error))
    move = x_new - x
    move_size = xp.sqrt(xp.vecdot(move, move))
    # 0 / 0 where the sample did not move (a frozen one, or F(x) = 0 exactly): no error.
    relative = xp.where(error_size > 0,
                        error_size / (STEP_FRACTION * xp.where(move_size > 0, move_size, 1.0)),
                        0.0)
    return xp.maximum(usual, relative)


def _step_factor(xp: Any, err: Any, accept: Any) -> Any:
    """The step-size multiplier from the error norm: grows at most ``MAX_FACTOR`` after an
    accepted step, never grows after a rejected one."""
    safe = xp.where(err > 0, err, 1.0)
    factor = xp.where(err > 0, SAFETY * safe ** -0.2, MAX_FACTOR)
    factor = xp.clip(factor, MIN_FACTOR, MAX_FACTOR)
    return xp.where(accept, factor, xp.minimum(factor, xp.ones_like(factor)))


def _initial_step(f: Callable[[Any], Any], tracker: SolveTracker, x: Any, rtol: float,
                  atol: float) -> Any:
    """Per-sample starting step (Hairer, Norsett and Wanner, Solving ODEs I, II.4): a step
    whose local error, judged from one explicit Euler step, is about the tolerance. Costs one
    evaluation."""
    xp = tracker.xp
    dim = max(x.shape[1], 1)
    k1 = tracker.residual
    scale = atol + rtol * xp.abs(x)

    def rms(a):
        a = a / scale
        return xp.sqrt(xp.vecdot(a, a) / dim)

    d0, d1 = rms(x), rms(k1)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h_euler = xp.where(small, 1e-6, 0.01 * d0 / xp.where(small, 1.0, d1))
    y = backend.select_rows(tracker.active, x + h_euler[:, None] * k1, x)
    fy = f(y)
    tracker.nfe += 1
    d2 = rms(fy - y - k1) / h_euler
    flag_nonfinite(tracker, ~xp.isfinite(d2))
    largest = xp.maximum(d1, d2)
    flat = ~(largest > 1e-15)
    h_error = xp.where(flat, xp.maximum(h_euler * 1e-3, xp.full_like(h_euler, 1e-6)),
                       (0.01 / xp.where(flat, 1.0, largest)) ** 0.2)
    h = xp.minimum(100.0 * h_euler, h_error)
    return xp.where(xp.isfinite(h), h, 1e-6)
