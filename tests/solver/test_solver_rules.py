"""Each solver's update rule, stopping rule and argument handling against a hand computation.

The other solver tests check that the solvers converge; a wrong rule that still converges
(a flipped damping term, another quasi-Newton update, ``abs`` read as ``rel``) passes them.
Here the iterates a solver evaluates ``f`` at are recorded and compared, step by step, with
the documented rule recomputed on the host in float64: fixed-point iteration and Anderson
for several ``tau``, ``m`` and ``lam``; Broyden's inverse update with its memory; GMRES with
its tolerances, restarts and budget; Newton-Krylov's inexact step, forcing terms and
difference products; the Runge-Kutta step, error control and initial step of the ODE solver.
Stopping rules are checked on states of norm 1e4, where ``abs`` and ``rel`` disagree.

Also: no NumPy RuntimeWarning escapes a solve that meets inf/NaN (one ConvergenceWarning
does, with a message that carries no numbers and points at the caller); NumPy scalars are
accepted wherever a count or a number is; ``tol=0`` runs to ``max_iter``; a ``matvec``
returning the wrong thing is named; float16 states are solved (in float32).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from npdeq import ConvergenceWarning, backend
from npdeq.solver import (anderson_solver, broyden_solver, fixed_point_iter, get_solver, gmres,
                          gmres_solver, newton_krylov, ode_solver, simple_fixed_point_iter)
from npdeq.solver.line_search import backtrack
from npdeq.solver.newton_krylov import ARMIJO, EW_GAMMA, EW_SAFEGUARD
from npdeq.solver.ode import MAX_FACTOR, MIN_FACTOR, SAFETY, STEP_FRACTION, TABLEAUS
from npdeq.solver.stats import SolveTracker

from solver_problems import host

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")

EPS64 = float(np.finfo(np.float64).eps)
FIXED_POINT_SOLVERS = ("fixed_point_iter", "anderson", "broyden", "newton_krylov", "ode",
                       "gmres")


def recording(func):
    """Wrap ``func`` (on ``(B, D)`` arrays); ``.inputs`` holds host copies of every input."""

    def wrapped(z):
        wrapped.inputs.append(host(z).astype(np.float64).copy())
        return func(z)

    wrapped.inputs = []
    return wrapped


def tanh_problem(to_xp, seed=0, batch=2, dim=5, norm=0.8, scale=1.0):
    """``f(z) = scale * tanh((z / scale) @ W.T + inj)``: the namespace map, its host twin and
    a nonzero ``z0`` (so that terms multiplying ``x`` are visible from the first step)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((dim, dim))
    w *= norm / np.linalg.norm(w, 2)
    inj = rng.standard_normal((batch, dim))
    z0 = scale * 0.3 * rng.standard_normal((batch, dim))
    W, INJ = to_xp(w), to_xp(inj)
    xp = backend.array_namespace(W)

    def func(z):
        return scale * xp.tanh((z / scale) @ W.T + INJ)

    def host_func(z):
        return scale * np.tanh((z / scale) @ w.T + inj)

    return func, host_func, to_xp(z0)


def affine_problem(to_xp, seed=0, batch=2, dim=6, norm=0.9, scale=1.0):
    """``f(z) = z @ W.T + c`` with ``||c|| ~ scale``: namespace map, host twin, ``z0``, ``W``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((dim, dim))
    w *= norm / np.linalg.norm(w, 2)
    c = scale * rng.standard_normal((batch, dim))
    z0 = scale * 0.1 * rng.standard_normal((batch, dim))
    W, C = to_xp(w), to_xp(c)
    return (lambda z: z @ W.T + C), (lambda z: z @ w.T + c), to_xp(z0), w


# --- hand computations (host, float64, one sample at a time where the rule is per sample) --


def hand_anderson_step(xs, fs, m, lam, tau):
    """The next Anderson iterate from the evaluated iterates ``xs`` and their images ``fs``
    (lists of ``(B, D)``), as the module docstring states it."""
    xs, fs = xs[-m:], fs[-m:]
    n = len(xs)
    out = np.empty_like(xs[0])
    for i in range(xs[0].shape[0]):
        X = np.stack([x[i] for x in xs])
        F = np.stack([f[i] for f in fs])
        if n == 1:
            a = np.ones(1)
        else:
            G = F - X
            H = G @ G.T
            lam_s = (lam + EPS64) * np.trace(H) / n + np.finfo(np.float64).smallest_normal ** 0.5
            y = np.linalg.solve(H + lam_s * np.eye(n), np.ones(n))
            a = y / y.sum()
        out[i] = a @ (tau * F + (1 - tau) * X)
    return out


def hand_broyden(host_func, x0, steps, memory):
    """Good Broyden on g(z) = f(z) - z from B = -I, keeping the last ``memory`` rank-one
    terms: the iterates x_0 .. x_steps, per sample."""
    batch, dim = x0.shape
    out = np.empty((steps + 1, batch, dim))
    for i in range(batch):
        def f(z, i=i):  # row i of the batched map (its injection is per row)
            return host_func(np.broadcast_to(z, (batch, dim)))[i]

        x = x0[i].astype(np.float64)
        g = f(x) - x
        pairs = []
        out[0, i] = x
        for k in range(steps):
            B = -np.eye(dim) + sum((np.outer(u, v) for u, v in pairs), np.zeros((dim, dim)))
            x_new = x - B @ g
            g_new = f(x_new) - x_new
            dx, dg = x_new - x, g_new - g
            v = dx @ B
            u = (dx - B @ dg) / (v @ dg)
            pairs = (pairs + [(u, v)])[-memory:]
            x, g = x_new, g_new
            out[k + 1, i] = x
    return out


def krylov_minimiser(A, r, j):
    """The ``d`` in the Krylov space K_j(A, r) minimising ``||r - A d||``, and that norm."""
    basis = [r / np.linalg.norm(r)]
    for _ in range(j - 1):
        w = A @ basis[-1]
        for _ in range(2):
            for v in basis:
                w = w - (w @ v) * v
        basis.append(w / np.linalg.norm(w))
    K = np.stack(basis, axis=1)
    y = np.linalg.lstsq(A @ K, r, rcond=None)[0]
    d = K @ y
    return d, np.linalg.norm(r - A @ d)


def hand_gmres(A, b, x0, threshold, max_iter, m, final_residual=True):
    """Restarted GMRES(m) on one system, with the documented stopping rule and product
    budget: ``(x, products, residual)``."""
    x = np.zeros_like(b) if x0 is None else x0.copy()
    products = 0
    r = b.copy()
    if x0 is not None and max_iter > 0:
        r = b - A @ x
        products = 1
    res = np.linalg.norm(r)
    done = res <= threshold or np.linalg.norm(b) == 0
    reserve = 1 if final_residual else 0
    while max_iter - products - reserve >= 1 and not done:
        steps = min(m, max_iter - products - reserve)
        for j in range(1, steps + 1):
            d, estimate = krylov_minimiser(A, r, j)
            if estimate <= threshold:
                break
        products += j
        live = estimate > threshold
        x = x + d
        if not (final_residual or (live and max_iter - products >= 2)):
            return x, products, estimate
        r = b - A @ x
        products += 1
        res = np.linalg.norm(r)
        done = res <= threshold
    return x, products, res


def hand_newton_krylov(W, c, x0, steps, tol, stop_mode, inner_tol, budget, m):
    """Inexact Newton on the affine g(z) = W z + c - z (whose difference products are exact),
    each step GMRES to max(eta ||g||, tol_outer / 2) with Eisenstat-Walker forcing terms; on
    an affine map the full step is always accepted; a sample stops where its stop_mode
    residual is <= tol. The iterates x_0 .. x_steps, per sample."""
    batch, dim = x0.shape
    J = W - np.eye(dim)
    out = np.empty((steps + 1, batch, dim))
    for i in range(batch):
        x, eta = x0[i].astype(np.float64), inner_tol
        out[0, i] = x
        for k in range(steps):
            fx = W @ x + c[i]
            g = fx - x
            outer = tol if stop_mode == "abs" else tol * (np.linalg.norm(fx) + 1e-8)
            if np.linalg.norm(g) <= outer:
                out[k + 1:, i] = x
                break
            threshold = max(eta * np.linalg.norm(g), 0.5 * outer)
            d, _, _ = hand_gmres(J, -g, None, threshold, budget, m, final_residual=False)
            x_new = x + d
            g_new = W @ x_new + c[i] - x_new
            ratio = np.linalg.norm(g_new) / np.linalg.norm(g)
            proposal = EW_GAMMA * ratio ** 2
            floor = EW_GAMMA * eta ** 2
            if floor > EW_SAFEGUARD:
                proposal = max(proposal, floor)
            eta = min(proposal, inner_tol)
            x = x_new
            out[k + 1, i] = x
    return out


def hand_rk_stages(host_func, x, h, method):
    """The stage inputs y_2 .. y_7 of one Runge-Kutta step of size ``h`` (per sample, ``(B,)``)
    from ``x``, and the error estimate."""
    a, e = TABLEAUS[method]["a"], TABLEAUS[method]["error"]
    ks = [host_func(x) - x]
    ys = []
    for row in a:
        y = x + h[:, None] * sum(w * k for w, k in zip(row, ks))
        ys.append(y)
        ks.append(host_func(y) - y)
    error = h[:, None] * sum(w * k for w, k in zip(e, ks))
    return ys, error


def hand_error_norm(error, x, x_new, rtol, atol):
    scale = atol + rtol * np.maximum(np.abs(x), np.abs(x_new))
    usual = np.sqrt(np.mean((error / scale) ** 2, axis=1))
    relative = np.linalg.norm(error, axis=1) / (STEP_FRACTION * np.linalg.norm(x_new - x, axis=1))
    return np.maximum(usual, relative)


def hand_step_factor(err, accepted):
    factor = np.clip(SAFETY * err ** -0.2, MIN_FACTOR, MAX_FACTOR)
    return np.where(accepted, factor, np.minimum(factor, 1.0))


# --- fixed-point iteration and Anderson --------------------------------------------------


@pytest.mark.parametrize("tau", [0.3, 0.8, 1.0])
def test_fixed_point_iter_takes_the_damped_step(tau, xp, to_xp):
    """x_{k+1} = tau f(x_k) + (1 - tau) x_k exactly (tau = 0.5 would hide tau <-> 1 - tau)."""
    func, host_func, z0 = tanh_problem(to_xp)
    rec = recording(func)
    fixed_point_iter(rec, z0, max_iter=5, tol=0.0, tau=tau)
    xs = rec.inputs
    assert len(xs) == 5
    np.testing.assert_array_equal(xs[0], host(z0))
    for k in range(4):
        expected = tau * host_func(xs[k]) + (1 - tau) * xs[k]
        np.testing.assert_allclose(xs[k + 1], expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_simple_fixed_point_iter_takes_the_damped_step(tau, xp, to_xp):
    func, host_func, z0 = tanh_problem(to_xp)
    rec = recording(func)
    z, _, _ = simple_fixed_point_iter(rec, z0, max_iter=4, tau=tau)
    xs = rec.inputs + [host(z)]
    for k in range(4):
        np.testing.assert_allclose(xs[k + 1], tau * host_func(xs[k]) + (1 - tau) * xs[k],
                                   rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("m, lam, tau", [
    (2, 1e-4, 1.0), (3, 1e-4, 0.3), (3, 0.0, 0.8), (5, 1e-2, 1.0), (3, 0.5, 0.6), (1, 1e-4, 0.7),
])
def test_anderson_mixes_as_documented(m, lam, tau, xp, to_xp):
    """Every iterate (past the ring buffer's wrap-around) is the regularised mix of the last
    m iterates and images, recomputed from the recorded history."""
    func, host_func, z0 = tanh_problem(to_xp, dim=6, norm=0.95)
    rec = recording(func)
    anderson_solver(rec, z0, max_iter=8, tol=0.0, m=m, lam=lam, tau=tau)
    xs = rec.inputs
    fs = [host_func(x) for x in xs]
    assert len(xs) == 8
    for k in range(7):
        expected = hand_anderson_step(xs[:k + 1], fs[:k + 1], m, lam, tau)
        np.testing.assert_allclose(xs[k + 1], expected, rtol=1e-8, atol=1e-10,
                                   err_msg=f"iterate {k + 1}")


# --- Broyden -------------------------------------------------------------------------------


@pytest.mark.parametrize("memory", [None, 1, 2])
def test_broyden_uses_the_good_broyden_inverse_update(memory, xp, to_xp):
    """x_{k+1} = x_k - B_k g_k with B_0 = -I and B_{k+1} = B_k + (dx - B_k dg) dx^T B_k /
    (dx^T B_k dg), keeping the last LBFGS_thres terms."""
    func, host_func, z0 = tanh_problem(to_xp, dim=5, norm=0.9)
    rec = recording(func)
    broyden_solver(rec, z0, max_iter=7, tol=0.0, LBFGS_thres=memory)
    expected = hand_broyden(host_func, host(z0), 6, memory or 7)
    assert len(rec.inputs) == 7
    for k, x in enumerate(rec.inputs):
        np.testing.assert_allclose(x, expected[k], rtol=1e-8, atol=1e-10,
                                   err_msg=f"iterate {k}")


def test_backtrack_halves_per_sample_until_accepted(xp, to_xp):
    """Each sample takes the first of x + step, x + step/2, ... that its test accepts; after
    ``halvings`` halvings the last one tried; one evaluation per round."""
    x = to_xp(np.zeros((3, 2)))
    step = to_xp(np.ones((3, 2)))
    # Sample i accepts scale <= limit_i: 1, 1/4, never.
    limits = to_xp(np.array([1.0, 0.25, 0.0]))
    tracker = SolveTracker(x, 1e-8, "abs", [])
    tracker.observe(x, x + 1.0)
    calls = []

    def f(z):
        calls.append(1)
        return z + 1.0

    x_new, fx_new = backtrack(f, tracker, x, step, lambda r, scale: scale <= limits, 3)
    np.testing.assert_array_equal(host(x_new)[:, 0], [1.0, 0.25, 0.125])
    np.testing.assert_array_equal(host(fx_new), host(x_new) + 1.0)
    assert len(calls) == tracker.nfe == 4


# --- GMRES -----------------------------------------------------------------------------------


def _system(seed, dim=8, norm=0.9):
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((dim, dim))
    r *= norm / np.linalg.norm(r, 2)
    return np.eye(dim) + r, rng.standard_normal(dim)


@pytest.mark.parametrize("tol, atol, restart, max_iter, b_scale", [
    (1e-6, 0.0, 8, 50, 1e4),     # relative: threshold 1e-2
    (0.0, 1e-6, 8, 50, 1e4),     # absolute: threshold 1e-6, more products
    (1e-6, 1.0, 8, 50, 1e4),     # the larger of the two decides
    (1e-3, 1e-12, 3, 50, 1.0),   # restarts
    (1e-12, 0.0, 3, 7, 1.0),     # budget: a cycle of 3 + residual, then 2 + residual
    (1e-12, 0.0, 2, 6, 1.0),
])
def test_gmres_iterates_and_budget_match_the_hand_computation(tol, atol, restart, max_iter,
                                                              b_scale, xp, to_xp):
    a, b = _system(1)
    b = b * b_scale
    A = to_xp(a[None])
    x, info = gmres(lambda v: (A @ v[:, :, None])[:, :, 0], to_xp(b[None]), tol=tol, atol=atol,
                    restart=restart, max_iter=max_iter)
    threshold = max(tol * np.linalg.norm(b), atol)
    expected, products, residual = hand_gmres(a, b, None, threshold, max_iter, restart)
    np.testing.assert_allclose(host(x)[0], expected, rtol=1e-9, atol=1e-9 * b_scale)
    assert info["nmatvec"] == products
    np.testing.assert_allclose(host(info["residual"])[0], residual, rtol=1e-6,
                               atol=1e-9 * np.linalg.norm(b))
    assert bool(host(info["converged"])[0]) == (residual <= threshold)


def test_gmres_with_x0_starts_from_its_residual(xp, to_xp):
    a, b = _system(2)
    x0 = np.linspace(-1.0, 1.0, 8)
    A = to_xp(a[None])
    x, info = gmres(lambda v: (A @ v[:, :, None])[:, :, 0], to_xp(b[None]),
                    x0=to_xp(x0[None]), tol=1e-4, restart=3, max_iter=40)
    expected, products, _ = hand_gmres(a, b, x0, 1e-4 * np.linalg.norm(b), 40, 3)
    np.testing.assert_allclose(host(x)[0], expected, rtol=1e-9, atol=1e-12)
    assert info["nmatvec"] == products


@pytest.mark.parametrize("stop_mode", ["abs", "rel"])
def test_gmres_solver_cycles_stop_at_the_stop_mode_threshold(stop_mode, xp, to_xp):
    """Each cycle is GMRES on (I - W) d = f(x) - x from 0, stopping at the first product
    whose residual is <= tol in stop_mode's units (tol (||f(x)|| + 1e-8) for 'rel')."""
    func, _, z0, w = affine_problem(to_xp, batch=1, dim=12, norm=0.9, scale=1e4)
    c = host(func(to_xp(np.zeros((1, 12)))))[0]
    tol = 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, trajectory, _ = gmres_solver(func, z0, max_iter=40, tol=tol, stop_mode=stop_mode,
                                        restart=5, indexing=[2, 3], return_final=True)
    x = host(z0)[0]
    for k in range(2):
        fx = w @ x + c
        r = fx - x
        threshold = tol * (1.0 if stop_mode == "abs" else np.linalg.norm(fx) + 1e-8)
        if np.linalg.norm(r) <= threshold:  # converged: frozen
            np.testing.assert_allclose(host(trajectory[k])[0], x, rtol=1e-8, atol=1e-6)
            continue
        for j in range(1, 6):
            d, estimate = krylov_minimiser(np.eye(12) - w, r, j)
            if estimate <= threshold:
                break
        x = x + d
        np.testing.assert_allclose(host(trajectory[k])[0], x, rtol=1e-8, atol=1e-6)


def test_ties_keep_the_first_best_iterate(xp, to_xp):
    """f(z) = z + d: every iterate has the same residual; the first one stays the best."""
    d = to_xp(np.array([[1.0, 2.0]]))
    z0 = to_xp(np.array([[0.5, -0.5]]))
    with pytest.warns(ConvergenceWarning):
        z, _, info = fixed_point_iter(lambda z: z + d, z0, max_iter=5, tol=1e-8)
    np.testing.assert_array_equal(host(z), host(z0))
    assert host(info["nstep"]).tolist() == [1]


# --- Newton-Krylov ---------------------------------------------------------------------------


@pytest.mark.parametrize("stop_mode, tol, inner_tol, inner_max_iter, restart, scale", [
    ("abs", 1e-3, 0.1, None, 40, 1.0),
    ("abs", 1e-3, 0.5, None, 40, 1.0),    # the safeguard 0.9 eta^2 > 0.1 is active
    ("abs", 1e-3, 0.01, 3, 40, 1.0),      # budget of 3 products per step
    ("abs", 1e-3, 0.05, 5, 2, 1.0),       # restarts inside a step
    ("rel", 1e-5, 0.9, None, 40, 1e4),    # the outer tolerance bounds the inner threshold
    ("abs", 1e-1, 0.9, None, 40, 1e4),
    ("abs", 3.0, 0.9, None, 40, 1e4),
])
def test_newton_krylov_takes_the_inexact_newton_step(stop_mode, tol, inner_tol, inner_max_iter,
                                                     restart, scale, xp, to_xp):
    """Each step is GMRES's minimal-residual step in the Krylov space of the first j
    products, j the first to reach max(eta ||g||, tol_outer / 2) or the budget; eta follows
    Eisenstat-Walker; a sample stops at tol in stop_mode."""
    func, _, z0, w = affine_problem(to_xp, scale=scale)
    c = host(func(to_xp(np.zeros((2, 6)))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, trajectory, _ = newton_krylov(func, z0, max_iter=4, tol=tol, stop_mode=stop_mode,
                                         inner_tol=inner_tol, inner_max_iter=inner_max_iter,
                                         restart=restart, indexing=[1, 2, 3, 4],
                                         return_final=True)
    budget = inner_max_iter or min(restart, 6)
    expected = hand_newton_krylov(w, c, host(z0), 3, tol, stop_mode, inner_tol, budget,
                                  min(restart, 6))
    for k in range(4):
        np.testing.assert_allclose(host(trajectory[k]), expected[k], rtol=1e-6,
                                   atol=1e-6 * scale, err_msg=f"iterate {k}")


@pytest.mark.parametrize("fd_eps", [None, 1e-4])
def test_newton_krylov_difference_step(fd_eps, xp, to_xp):
    """The first product evaluates f at x + h v with ||h v|| = fd_eps (1 + ||x||) (default
    fd_eps: sqrt(eps)), v the normalised -g."""
    func, host_func, z0 = tanh_problem(to_xp, batch=1)
    rec = recording(func)
    with pytest.warns(ConvergenceWarning):
        newton_krylov(rec, z0, max_iter=2, tol=1e-12, fd_eps=fd_eps)
    x = host(z0)[0]
    g = host_func(host(z0))[0] - x
    eps = EPS64 ** 0.5 if fd_eps is None else fd_eps
    expected = x - eps * (1 + np.linalg.norm(x)) * g / np.linalg.norm(g)
    np.testing.assert_allclose(rec.inputs[1][0], expected, rtol=1e-12, atol=1e-14)


def _newton_arctan(x):
    """The Newton step for g(z) = -arctan(z)."""
    return -np.arctan(x) * (1 + x * x)


def _start_with_ratio(ratio):
    """The x0 near Newton's 2-cycle of arctan (x1 = -x0) at which the full step changes
    |g| by the factor ``ratio``."""
    lo, hi = 1.3, 1.5
    for _ in range(200):
        mid = (lo + hi) / 2
        if abs(np.arctan(mid + _newton_arctan(mid))) / np.arctan(mid) < ratio:
            lo = mid
        else:
            hi = mid
    return lo


@pytest.mark.parametrize("ratio", [1 - 0.5 * ARMIJO, 1 + 0.5 * ARMIJO])
def test_newton_krylov_line_search_asks_for_sufficient_decrease(ratio, xp, to_xp):
    """g(z) = -arctan(z) from where the full Newton step changes |g| by a factor within
    ARMIJO of 1 (a decrease too small, or a slight increase): the step is halved."""
    x0 = _start_with_ratio(ratio)
    with pytest.warns(ConvergenceWarning):
        _, trajectory, _ = newton_krylov(lambda z: z - backend.array_namespace(z).atan(z),
                                         to_xp(np.array([[x0]])), max_iter=2, tol=1e-14,
                                         indexing=[2], return_final=True)
    np.testing.assert_allclose(host(trajectory[0])[0, 0], x0 + _newton_arctan(x0) / 2,
                               atol=1e-6)


def test_difference_product_perturbs_by_the_same_size_whatever_v(xp, to_xp):
    from npdeq.solver.newton_krylov import _difference_product

    func, _, z0, w = affine_problem(to_xp, batch=2, dim=4)
    rec = recording(func)
    scale = to_xp(np.array([1e-3, 2e-3]))
    product = _difference_product(rec, z0, func(z0), scale)
    v = np.array([[1e3, 0.0, 0.0, 0.0], [0.0, -1e-3, 0.0, 0.0]])
    out = product(to_xp(v))
    np.testing.assert_allclose(np.linalg.norm(rec.inputs[0] - host(z0), axis=1), [1e-3, 2e-3],
                               rtol=1e-8)
    np.testing.assert_allclose(host(out), v @ (w - np.eye(4)).T, rtol=1e-5, atol=1e-9)


# --- ODE -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(TABLEAUS))
@pytest.mark.parametrize("h0, rtol, atol", [
    (0.05, 1e-3, 1e-6),   # accepted, the step grows
    (1.5, 1e-3, 1e-6),    # rejected: the state stays, the step shrinks
    (0.3, 1e-1, 1e-8),    # rtol decides the usual ratio
    (0.3, 0.0, 1e-2),     # atol alone
])
def test_ode_step_and_step_size_control(method, h0, rtol, atol, xp, to_xp):
    func, host_func, z0 = tanh_problem(to_xp, norm=0.9)
    rec = recording(func)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ode_solver(rec, z0, max_iter=3, tol=1e-12, method=method, h0=h0, rtol=rtol, atol=atol)
    x = host(z0)
    h = np.full(2, h0)
    ys, error = hand_rk_stages(host_func, x, h, method)
    # Calls: f(z0), six stages, then the second step's first stage (FSAL: f(x1) is known).
    for s, y in enumerate(ys):
        np.testing.assert_allclose(rec.inputs[1 + s], y, rtol=1e-12, atol=1e-14,
                                   err_msg=f"stage {s + 2}")
    err = hand_error_norm(error, x, ys[-1], rtol, atol)
    accepted = err <= 1.0
    h_next = h * hand_step_factor(err, accepted)
    x1 = np.where(accepted[:, None], ys[-1], x)
    k1 = host_func(x1) - x1
    a21 = TABLEAUS[method]["a"][0][0]
    np.testing.assert_allclose(rec.inputs[7], x1 + (a21 * h_next)[:, None] * k1, rtol=1e-10,
                               atol=1e-13)
    if h0 == 1.5:
        assert not np.any(accepted)
    if h0 == 0.05:
        assert np.all(accepted) and np.all(h_next > h)


@pytest.mark.parametrize("start", ["random", "zero"])
def test_ode_initial_step_follows_hairer_and_wanner(start, xp, to_xp):
    """h = min(100 h_euler, (0.01 / max(d1, d2))^(1/5)), h_euler = 0.01 d0 / d1 (1e-6 where
    d0 or d1 < 1e-5: from z0 = 0, where 100 h_euler decides)."""
    func, host_func, z0 = tanh_problem(to_xp, norm=0.9)
    if start == "zero":
        z0 = to_xp(np.zeros((2, 5)))
    rec = recording(func)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ode_solver(rec, z0, max_iter=2, tol=1e-12, rtol=1e-3, atol=1e-6)
    x = host(z0)
    k1 = host_func(x) - x
    scale = 1e-6 + 1e-3 * np.abs(x)
    rms = lambda a: np.sqrt(np.mean((a / scale) ** 2, axis=1))  # noqa: E731
    d0, d1 = rms(x), rms(k1)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h_euler = np.where(small, 1e-6, 0.01 * d0 / np.where(small, 1.0, d1))
    y = x + h_euler[:, None] * k1
    np.testing.assert_allclose(rec.inputs[1], y, rtol=1e-12)
    d2 = rms(host_func(y) - y - k1) / h_euler
    h = np.minimum(100 * h_euler, (0.01 / np.maximum(d1, d2)) ** 0.2)
    a21 = TABLEAUS["dopri5"]["a"][0][0]
    np.testing.assert_allclose(rec.inputs[2], x + (a21 * h)[:, None] * k1, rtol=1e-10)


# --- stopping rules: states of norm 1e4, where abs and rel disagree ---------------------------

# Per solver, arguments that make convergence gradual (so abs and rel stop at different
# iterations): one product per Newton step, a short GMRES cycle.
GRADUAL = {"newton_krylov": {"inner_max_iter": 1, "inner_tol": 0.9}, "gmres": {"restart": 1}}


@pytest.mark.parametrize("name", FIXED_POINT_SOLVERS)
def test_stop_modes_decide_on_states_of_norm_1e4(name, xp, to_xp):
    """A sample stops at the first iteration whose stop_mode residual is <= tol: under
    'rel' while its abs residual is still far above tol, under 'abs' later."""
    func, _, z0, _ = affine_problem(to_xp, dim=12, norm=0.9, scale=1e4)
    tol = 1e-3
    nstep = {}
    for stop_mode in ("rel", "abs"):
        _, _, info = get_solver(name)(func, z0, max_iter=500, tol=tol, stop_mode=stop_mode,
                                      **GRADUAL.get(name, {}))
        trace = host(info[f"{stop_mode}_trace"])
        nstep[stop_mode] = host(info["nstep"])
        assert np.all(host(info["converged"]))
        for i, k in enumerate(nstep[stop_mode]):
            assert trace[i, k - 1] <= tol and np.all(trace[i, :k - 1] > tol), (stop_mode, i)
        if stop_mode == "rel":
            assert np.all(host(info["abs_lowest"]) > 100 * tol)
    assert np.all(nstep["abs"] > nstep["rel"])


@pytest.mark.parametrize("name", ("fixed_point_iter", "anderson", "broyden"))
def test_a_residual_equal_to_tol_converges(name, xp, to_xp):
    """f(z) = z / 2 + 1 from 0 has residuals 1, 1/2, 1/4 exactly: tol = 1/4 stops at the
    third iterate (tol is inclusive), and so does the first iterate that reaches it."""
    calls = recording(lambda z: 0.5 * z + 1.0)
    solver = get_solver(name)
    if name == "fixed_point_iter":
        _, _, info = solver(calls, to_xp(np.zeros((1, 1))), max_iter=10, tol=0.25)
        assert host(info["nstep"]).tolist() == [3] and info["nfe"] == 3
    # Anderson and Broyden solve a 1-D affine map at the second iterate (residual 0).
    _, _, info = solver(calls, to_xp(np.zeros((1, 1))), max_iter=10, tol=1.0)
    assert host(info["nstep"]).tolist() == [1] and np.all(host(info["converged"]))


def test_gmres_a_residual_equal_to_the_threshold_converges(xp, to_xp):
    """b = (3, 4): ||b|| = 5 exactly; atol = 5 accepts x = 0 without a product."""
    product = recording(lambda v: 2.0 * v)
    x, info = gmres(product, to_xp(np.array([[3.0, 4.0]])), tol=0.0, atol=5.0)
    assert info["nmatvec"] == 0 and np.all(host(info["converged"]))
    assert np.all(host(x) == 0.0)


# --- floating-point warnings: one ConvergenceWarning, no RuntimeWarning ---------------------


def _poisoned(func, xp, value, call=4):
    """``func`` with row 2's output replaced by ``value`` from call ``call`` on."""

    def wrapped(z):
        wrapped.calls += 1
        out = func(z)
        if wrapped.calls >= call:
            rows = xp.arange(out.shape[0], device=backend.device(out)) == 2
            out = xp.where(rows[:, None], xp.asarray(value, dtype=out.dtype,
                                                     device=backend.device(out)), out)
        return out

    wrapped.calls = 0
    return wrapped


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300])
@pytest.mark.parametrize("name", FIXED_POINT_SOLVERS + ("simple_fixed_point_iter",))
def test_nonfinite_values_raise_no_runtime_warning(name, value, xp, to_xp):
    func, _, z0, _ = affine_problem(to_xp, batch=4, dim=5, norm=0.5)
    before = np.geterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, info = get_solver(name)(_poisoned(func, xp, value), z0, max_iter=200, tol=1e-9)
    assert np.geterr() == before
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, [str(w.message) for w in runtime]
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert not [w for w in caught if not issubclass(w.category, ConvergenceWarning)]
    if name == "simple_fixed_point_iter":
        # No tolerance, no warning; it observes only its last step, where the huge finite
        # value is a fixed point (residual 0).
        assert not convergence
        return
    assert host(info["nonfinite"]).tolist() == [False, False, True, False]
    assert len(convergence) == 1 and "non-finite" in str(convergence[0].message)
    assert host(info["converged"]).tolist() == [True, True, False, True]


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300])
def test_gmres_nonfinite_products_raise_no_runtime_warning(value, xp, to_xp):
    a, b = _system(3, dim=5)
    A = to_xp(np.broadcast_to(a, (4, 5, 5)).copy())
    matvec = _poisoned(lambda v: (A @ v[:, :, None])[:, :, 0], xp, value, call=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, info = gmres(matvec, to_xp(np.broadcast_to(b, (4, 5)).copy()), tol=1e-10)
    assert not caught, [str(w.message) for w in caught]
    assert host(info["nonfinite"]).tolist() == [False, False, True, False]
    assert host(info["converged"]).tolist() == [True, True, False, True]


# --- one warning per calling line -------------------------------------------------------------


@pytest.mark.parametrize("name", FIXED_POINT_SOLVERS)
def test_unconverged_solves_warn_once_per_calling_line(name, xp, to_xp):
    """Two solves from one line, with different residuals, under the default filter: one
    ConvergenceWarning, pointing at this file, its message free of numbers."""
    func, _, z0, _ = affine_problem(to_xp, norm=0.95)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for max_iter in (3, 4):
            get_solver(name)(func, z0, max_iter=max_iter, tol=1e-12)
    assert len(caught) == 1, [str(w.message) for w in caught]
    warning = caught[0]
    assert issubclass(warning.category, ConvergenceWarning)
    assert "did not reach tol" in str(warning.message)
    assert not any(ch.isdigit() for ch in str(warning.message))
    assert warning.filename == __file__


# --- NumPy scalars and bad numbers -------------------------------------------------------------


SCALAR_ARGUMENTS = {
    "fixed_point_iter": {"tau": np.float64(0.6)},
    "anderson": {"m": np.int32(3), "lam": np.float64(1e-3), "tau": np.float32(0.5)},
    "broyden": {"LBFGS_thres": np.int64(4)},
    "newton_krylov": {"restart": np.int64(4), "inner_tol": np.float64(0.2),
                      "inner_max_iter": np.int16(3), "fd_eps": np.float32(1e-6)},
    "ode": {"rtol": np.float64(1e-3), "atol": np.float32(1e-6), "h0": np.float64(0.1)},
    "gmres": {"restart": np.int64(3)},
}


@pytest.mark.parametrize("name", sorted(SCALAR_ARGUMENTS))
def test_numpy_scalars_are_accepted_and_change_nothing(name, xp, to_xp):
    """NumPy scalars give what Python numbers give, float32 stays float32 (a NumPy float64
    tau must not promote the state)."""
    func, _, z0, _ = affine_problem(to_xp, dim=5)
    kw = SCALAR_ARGUMENTS[name]
    plain = {k: (int(v) if np.issubdtype(type(v), np.integer) else float(v))
             for k, v in kw.items()}
    solver = get_solver(name)
    z, trajectory, info = solver(func, z0, max_iter=np.int64(300), tol=np.float32(1e-6),
                                 indexing=[np.int64(2)], **kw)
    z_plain, trajectory_plain, _ = solver(func, z0, max_iter=300, tol=float(np.float32(1e-6)),
                                          indexing=[2], **plain)
    np.testing.assert_array_equal(host(z), host(z_plain))
    np.testing.assert_array_equal(host(trajectory[0]), host(trajectory_plain[0]))
    func32, _, z32, _ = affine_problem(lambda a: to_xp(a, "float32"), dim=5)
    z, _, info = solver(func32, z32, max_iter=np.int64(300), tol=np.float64(1e-3), **kw)
    assert z.dtype == xp.float32 and info["abs_lowest"].dtype == xp.float32


def test_gmres_accepts_numpy_scalars(xp, to_xp):
    a, b = _system(4, dim=6)
    A = to_xp(a[None])
    product = lambda v: (A @ v[:, :, None])[:, :, 0]  # noqa: E731
    x, info = gmres(product, to_xp(b[None]), tol=np.float64(1e-8), atol=np.float32(0.0),
                    max_iter=np.int64(30), restart=np.int32(3))
    x_plain, _ = gmres(product, to_xp(b[None]), tol=1e-8, atol=0.0, max_iter=30, restart=3)
    np.testing.assert_array_equal(host(x), host(x_plain))


BAD_NUMBERS = [
    ("fixed_point_iter", "tau", float("nan")), ("fixed_point_iter", "max_iter", np.float64(3)),
    ("fixed_point_iter", "max_iter", np.True_), ("fixed_point_iter", "tol", np.nan),
    ("fixed_point_iter", "tol", np.inf), ("fixed_point_iter", "tol", np.complex128(1e-3)),
    ("fixed_point_iter", "tau", np.True_),
    ("anderson", "lam", float("nan")), ("anderson", "lam", float("inf")),
    ("anderson", "m", np.float32(3)), ("broyden", "LBFGS_thres", np.float64(2.0)),
    ("newton_krylov", "inner_tol", float("nan")), ("newton_krylov", "fd_eps", float("inf")),
    ("newton_krylov", "inner_max_iter", 2.0), ("newton_krylov", "restart", np.True_),
    ("ode", "rtol", float("nan")), ("ode", "atol", float("inf")), ("ode", "h0", float("nan")),
    ("ode", "rtol", "1e-3"), ("gmres", "restart", 2.5),
]


@pytest.mark.parametrize("name, argument, value", BAD_NUMBERS)
def test_bad_numbers_are_rejected_by_name(name, argument, value, xp, to_xp):
    calls = recording(lambda z: 0.5 * z)
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        get_solver(name)(calls, to_xp(np.zeros((2, 3))), **{argument: value})
    assert not calls.inputs


@pytest.mark.parametrize("name, argument", [
    ("fixed_point_iter", "return_final"), ("anderson", "return_final"), ("broyden", "ls"),
    ("broyden", "return_final"), ("newton_krylov", "return_final"), ("ode", "return_final"),
    ("gmres", "return_final"),
])
def test_flags_must_be_bools(name, argument, xp, to_xp):
    """'False' is truthy: a string flag would silently switch the option on."""
    with pytest.raises(TypeError, match=argument):
        get_solver(name)(lambda z: 0.5 * z, to_xp(np.zeros((2, 3))), **{argument: "False"})


@pytest.mark.parametrize("kw, argument", [
    ({"tol": np.nan}, "tol"), ({"atol": np.inf}, "atol"), ({"max_iter": np.float64(3)}, "max_iter"),
    ({"restart": np.True_}, "restart"),
])
def test_gmres_bad_numbers_are_rejected_by_name(kw, argument, xp, to_xp):
    with pytest.raises(ValueError, match=argument):
        gmres(lambda v: v, to_xp(np.ones((2, 3))), **kw)


# --- tol = 0: run to max_iter -------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXED_POINT_SOLVERS)
def test_tol_zero_runs_to_max_iter_without_warning(name, xp, to_xp):
    """No sample stops early except one whose residual is exactly 0 (sample 1 starts at its
    fixed point); running out of max_iter is what was asked for, so nothing warns (the
    module turns ConvergenceWarning into an error)."""
    func, z0, _ = _row_problem_with_fixed_row(to_xp)
    calls = recording(func)
    # Newton's method reaches a residual of exactly 0 in float64 by its sixth iteration
    # (quadratic convergence: 3e-5, 4e-11, 3e-17, then 0), which would count as converged.
    iterations = 4 if name == "newton_krylov" else 6
    _, _, info = get_solver(name)(calls, z0, max_iter=iterations, tol=0.0)
    if name == "gmres":  # max_iter bounds its evaluations; an iteration is a whole cycle
        assert info["nfe"] == len(calls.inputs) == 6
    else:
        assert info["abs_trace"].shape[1] == iterations
    assert host(info["converged"]).tolist() == [False, True, False]
    assert host(info["nstep"])[1] == 1


def _row_problem_with_fixed_row(to_xp):
    from solver_problems import row_problem

    return row_problem(to_xp, batch=3, dim=4, norm=0.9, fixed_rows=(1,))


def test_gmres_with_zero_tolerances_spends_its_budget(xp, to_xp):
    a, b = _system(5, dim=12)
    A = to_xp(a[None])
    product = recording(lambda v: (A @ v[:, :, None])[:, :, 0])
    x, info = gmres(product, to_xp(b[None]), tol=0.0, atol=0.0, restart=4, max_iter=10)
    assert info["nmatvec"] == len(product.inputs) == 10
    assert not np.any(host(info["converged"]))


# --- gmres: a matvec that returns the wrong thing ---------------------------------------------


@pytest.mark.parametrize("bad, error, pattern", [
    (lambda v: v[:, :2], ValueError, r"matvec returned shape \(2, 2\); expected \(2, 3\)"),
    (lambda v: v[0, ...], ValueError, r"matvec returned shape \(3,\); expected \(2, 3\)"),
    (lambda v: [[0.0] * 3] * 2, TypeError, "matvec returned a list"),
    (lambda v: None, TypeError, "matvec returned a NoneType"),
], ids=["narrow", "one-row", "list", "none"])
def test_gmres_names_a_bad_matvec(bad, error, pattern, xp, to_xp):
    with pytest.raises(error, match=pattern):
        gmres(bad, to_xp(np.ones((2, 3))))


def test_gmres_names_a_matvec_of_another_dtype_or_namespace(xp, to_xp):
    b = to_xp(np.ones((2, 3)))
    with pytest.raises(TypeError, match="matvec returned dtype .*float32; expected .*float64"):
        gmres(lambda v: backend.array_namespace(v).astype(v, xp.float32), b)
    with pytest.raises(TypeError, match="matvec returned a"):
        if backend.namespace_name(xp) == "numpy":
            import array_api_strict

            gmres(lambda v: array_api_strict.asarray(host(v)), b)
        else:
            gmres(lambda v: host(v), b)


# --- float16 ------------------------------------------------------------------------------------


def _float16(xp):
    if getattr(xp, "float16", None) is None:
        pytest.skip(f"{backend.namespace_name(xp)} has no float16")
    return xp.float16


@pytest.mark.parametrize("name", FIXED_POINT_SOLVERS + ("simple_fixed_point_iter",))
def test_float16_states_are_solved(name, xp, to_xp):
    """func sees float16 and z comes back float16, at the float32 solve's answer to float16
    precision; the statistics are float32."""
    half = _float16(xp)
    func32, _, z32, _ = affine_problem(lambda a: to_xp(a, "float32"), dim=5, norm=0.7)
    seen = []

    def func16(z):
        seen.append(z.dtype)
        return xp.astype(func32(xp.astype(z, xp.float32)), half)

    solver = get_solver(name)
    z, trajectory, info = solver(func16, xp.astype(z32, half), max_iter=100, tol=1e-2,
                                 indexing=[2])
    assert z.dtype == half and trajectory[0].dtype == half
    assert seen and all(d == half for d in seen)
    assert info["abs_lowest"].dtype == xp.float32
    z_ref, _, _ = solver(func32, z32, max_iter=100, tol=1e-5)
    np.testing.assert_allclose(host(z).astype(np.float64), host(z_ref), rtol=0.02, atol=0.05)
    if name != "simple_fixed_point_iter":
        assert np.all(host(info["converged"]))


def test_float16_func_returning_another_dtype_is_named(xp, to_xp):
    half = _float16(xp)
    with pytest.raises(TypeError, match="func returned dtype float32; its input has dtype "
                                        "float16"):
        anderson_solver(lambda z: xp.astype(z, xp.float32), xp.zeros((2, 3), dtype=half))


def test_gmres_float16(xp, to_xp):
    half = _float16(xp)
    a, b = _system(6, dim=5, norm=0.5)
    A = to_xp(a[None], "float16")
    seen = []

    def product(v):
        seen.append(v.dtype)
        return (A @ v[:, :, None])[:, :, 0]

    x, info = gmres(product, to_xp(b[None], "float16"), tol=1e-3)
    assert x.dtype == half and all(d == half for d in seen) and np.all(host(info["converged"]))
    np.testing.assert_allclose(host(x)[0].astype(np.float64), np.linalg.solve(a, b), atol=0.02)
