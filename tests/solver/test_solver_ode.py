"""``ode_solver``: the steady state of dz/dt = f(z) - z is Anderson's fixed point; the error
control keeps the local error under the tolerance on a flow with a closed form; the tableaus
have the orders they claim; IFT gradients through it match finite differences; the statistics
contract (evaluation count, indexing, frozen and non-finite samples, tuple states, host
syncs); arguments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import npdeq
from npdeq import ConvergenceWarning
from npdeq.grad import fixed_point
from npdeq.solver import anderson_solver, get_solver, ode_solver
from npdeq.solver.ode import TABLEAUS
from npdeq.testing import check_grads

from deq_problems import MLPProblem
from solver_problems import (assert_nonfinite_sample_isolated, assert_tiny_max_iter,
                             GENEROUS_MAX_ITER, STOP_MODES, assert_solution_stats,
                             assert_trace_consistent, check_info, check_raw, check_state,
                             counted, host, row_problem, two_state_problem)

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")

METHODS = pytest.mark.parametrize("method", sorted(TABLEAUS))


@METHODS
@pytest.mark.parametrize("stop_mode", STOP_MODES)
@pytest.mark.parametrize("seed, dim, contraction", [(0, 1, 0.5), (1, 5, 0.9)])
def test_steady_state_is_andersons_fixed_point(method, stop_mode, seed, dim, contraction, xp,
                                               to_xp, check_array):
    """tanh(W z + U x + b), ||W|| = contraction: the steady state within tol, with the
    statistics of the returned z, is Anderson's fixed point. (Fixed draws: a solve takes a
    few dozen steps, too many to repeat for every hypothesis example.)"""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((dim, dim))
    w *= contraction / np.linalg.norm(w, 2)
    injection = rng.standard_normal((3, dim))
    W, inj = to_xp(w), to_xp(injection)

    def host_func(z):
        return np.tanh(z @ w.T + injection)

    func = counted(lambda z: xp.tanh(z @ W.T + inj))
    z0 = to_xp(np.zeros((3, dim)))
    z, _, info = ode_solver(func, z0, max_iter=GENEROUS_MAX_ITER, tol=1e-9,
                            stop_mode=stop_mode, method=method)
    check_raw(check_array, z, shape=(3, dim), dtype=xp.float64)
    check_info(info, check_array, xp, 3)
    assert info["nfe"] == func.calls
    assert_solution_stats(z, info, host_func, 1e-9, stop_mode)
    z_and, _, _ = anderson_solver(host_func, np.zeros((3, dim)), max_iter=GENEROUS_MAX_ITER,
                                  tol=1e-12)
    np.testing.assert_allclose(host(z), z_and, atol=2e-9 / (1 - contraction))


# --- the integrator ---------------------------------------------------------------------


def _flow_problem(seed, batch=2, dim=4):
    """``dy/dt = (A - I) y + c`` (A symmetric, eigenvalues in (-0.9, 0.9)) with the time ``s``
    as a first state entry (``ds/dt = 1``, integrated exactly): the steps can be read back
    from the states, and the exact flow is ``y* + Q exp((L - 1) h) Q^T (y - y*)``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    eigenvalues = rng.uniform(-0.9, 0.9, dim)
    a = (q * eigenvalues) @ q.T
    c = rng.standard_normal((batch, dim))
    y_star = np.linalg.solve(np.eye(dim) - a, c.T).T

    def exact(y, h):
        decay = np.exp((eigenvalues - 1.0) * h[:, None])
        return y_star + ((y - y_star) @ q * decay) @ q.T

    return a, c, exact


@METHODS
@pytest.mark.parametrize("rtol, atol", [(1e-3, 1e-6), (1e-6, 1e-9)])
def test_local_error_stays_under_the_tolerance(method, rtol, atol, xp, to_xp):
    """The true local error of every step, in the controller's norm (the RMS over the state
    of ``error / (atol + rtol * max(|z_n|, |z_n+1|))``, the exact time entry counting with a
    zero error), is at the tolerance: below 1 on average, and nowhere above 2 (the embedded
    estimate is asymptotic; once the flow settles the steps sit near the edge of stability,
    where it underestimates by up to 1.5x on this flow). The step sizes adapt: they grow by
    orders of magnitude as the flow settles."""
    a, c, exact = _flow_problem(0)
    A, C = to_xp(a), to_xp(c)

    def func(z):  # z = (s, y): ds/dt = 1, dy/dt = (A - I) y + c
        y = z[:, 1:]
        return z + npdeq.backend.array_namespace(z).concat(
            [z[:, :1] * 0.0 + 1.0, y @ A.T - y + C], axis=1)

    iterations = 40
    with pytest.warns(ConvergenceWarning):  # dt/ds = 1: never a steady state
        _, trajectory, info = ode_solver(func, to_xp(np.zeros((2, 5))), max_iter=iterations,
                                         tol=1e-12, method=method, rtol=rtol, atol=atol,
                                         return_final=True, indexing=range(1, iterations + 1))
    states = np.stack([host(t) for t in trajectory])        # (N, B, 1 + D)
    times, ys = states[:, :, 0], states[:, :, 1:]
    steps = np.diff(times, axis=0)                           # (N - 1, B); 0 where rejected
    accepted = steps > 0
    assert accepted.sum() >= 0.8 * steps.size
    norms = []
    for n in range(steps.shape[0]):
        error = (ys[n + 1] - exact(ys[n], steps[n])) / (
            atol + rtol * np.maximum(np.abs(ys[n]), np.abs(ys[n + 1])))
        norms.append(np.sqrt(np.sum(error ** 2, axis=1) / states.shape[2]))
    assert np.max(norms) <= 2.0 and np.mean(norms) <= 0.75, (np.max(norms), np.mean(norms))
    taken = steps[accepted]
    assert taken.max() > 100 * taken.min()


@METHODS
def test_tableau_orders(method):
    """One step's error is O(h^6) for the solution (5th order) and O(h^5) for the embedded
    4th-order one, on a nonlinear autonomous system (reference: tiny steps of the method)."""
    tableau = TABLEAUS[method]

    def rhs(y):
        return np.array([np.cos(y[0]) - 0.3 * y[1], 0.5 * y[0] * y[1] - np.sin(y[1])])

    def step(y, h):
        stages = [rhs(y)]
        for row in tableau["a"]:
            stages.append(rhs(y + h * sum(w * k for w, k in zip(row, stages))))
        high = y + h * sum(w * k for w, k in zip(tableau["a"][-1], stages))
        return high, high - h * sum(w * k for w, k in zip(tableau["error"], stages))

    def reference(y, h, n=2000):
        for _ in range(n):
            y, _ = step(y, h / n)
        return y

    y0 = np.array([0.3, 0.7])
    errors = []
    for h in (0.2, 0.1):
        exact = reference(y0, h)
        high, low = step(y0, h)
        errors.append((np.linalg.norm(high - exact), np.linalg.norm(low - exact)))
    (high_1, low_1), (high_2, low_2) = errors
    assert 5.5 < np.log2(high_1 / high_2) < 7.0
    assert 4.5 < np.log2(low_1 / low_2) < 5.5
    for row in tableau["a"]:  # FSAL: the last row is the solution's weights
        assert len(row) <= 6
    assert abs(sum(tableau["error"])) < 1e-15


# --- gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_ift_gradients_through_the_ode_solver_match_finite_differences(seed, xp, to_xp):
    prob = MLPProblem(to_xp, seed, batch=2, dim=4, in_dim=3, norm=0.8)
    tight = {"tol": 1e-12, "max_iter": 2000}

    def solved(*params):
        z, _ = fixed_point(prob.func(*params), prob.z0, solver="ode", solver_kwargs=tight,
                           b_solver_kwargs={"tol": 1e-12, "max_iter": 400})
        return z

    check_grads(solved, *[prob.params[k] for k in prob.names], rtol=1e-5, atol=1e-8,
                seed=seed)


# --- the statistics contract ----------------------------------------------------------------


@pytest.mark.parametrize("h0", [None, 0.5])
def test_iterations_steps_and_evaluations(h0, xp, to_xp):
    """Iteration 1 is z0; each further one is a step of six evaluations (plus one for the
    initial step size unless h0 is given)."""
    func, z0, _ = row_problem(to_xp, batch=3)
    calls = counted(func)
    _, _, info = ode_solver(calls, z0, max_iter=500, tol=1e-8, h0=h0)
    iterations = info["abs_trace"].shape[1]
    assert info["nfe"] == calls.calls == 1 + (h0 is None) + 6 * (iterations - 1)
    assert_trace_consistent(info, "abs")


def test_converged_sample_is_frozen(xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=4, fixed_rows=(1,))
    z, _, info = ode_solver(func, z0, max_iter=500, tol=1e-10)
    assert host(info["nstep"])[1] == 1 and np.all(host(z)[1] == 0.0)
    assert np.all(host(info["abs_trace"])[1] == 0.0) and np.all(host(info["converged"]))


def test_tuple_states(xp, to_xp, check_array):
    func, z0, host_func = two_state_problem(to_xp, batch=3)
    z, trajectory, info = ode_solver(func, z0, max_iter=500, tol=1e-9, indexing=[2, 1])
    check_state(check_array, z, z0)
    assert len(trajectory) == 2
    for t in trajectory:
        check_state(check_array, t, z0)
    z_host = tuple(host(a) for a in z)
    residual = np.sqrt(sum(np.sum((n - a).reshape(3, -1) ** 2, axis=1)
                           for n, a in zip(host_func(*z_host), z_host)))
    assert np.all(residual <= 1e-9) and np.all(host(info["converged"]))


def test_indexing_returns_the_requested_iterations(xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=3, norm=0.9)
    with pytest.warns(ConvergenceWarning):
        z, trajectory, _ = ode_solver(func, z0, max_iter=12, tol=1e-14, indexing=[4, 1, 12])
    for k, t in zip([4, 1, 12], trajectory):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            expected, _, _ = ode_solver(func, z0, max_iter=k, tol=1e-14)
        np.testing.assert_array_equal(host(t), host(expected), err_msg=f"iteration {k}")
    np.testing.assert_array_equal(host(trajectory[-1]), host(z))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("call", [1, 2, 5])
def test_nonfinite_sample_is_flagged_and_isolated(call, xp, to_xp):
    """NaN for sample 2 at one call (x0, the initial-step probe, a stage): flagged, finite,
    not converged; the others as without it."""
    assert_nonfinite_sample_isolated(
        ode_solver, to_xp, xp, call, rtol=1e-12, atol=1e-14, max_iter=500, tol=1e-10)


@pytest.mark.parametrize("max_iter", [0, 1, 2])
def test_tiny_max_iter(max_iter, xp, to_xp):
    assert_tiny_max_iter(ode_solver, to_xp, max_iter)


def test_float32_stays_float32(xp, to_xp, check_array):
    func, z0, _ = row_problem(lambda a: to_xp(a, "float32"), batch=3, norm=0.9)
    z, _, info = ode_solver(func, z0, max_iter=500, tol=1e-4, method="tsit5")
    check_raw(check_array, z, shape=z0.shape, dtype=xp.float32)
    check_info(info, check_array, xp, 3, dtype=xp.float32)
    assert np.all(host(info["converged"]))


def test_one_host_sync_per_step(xp, to_xp, sync_calls):
    func, z0, _ = row_problem(to_xp, batch=4, norm=0.9, fixed_rows=(2,))
    _, _, info = ode_solver(func, z0, max_iter=500, tol=1e-9)
    assert len(sync_calls) <= info["abs_trace"].shape[1] + 3


def test_inputs_are_not_modified(xp, to_xp):
    func, z0, captured = row_problem(to_xp, batch=3)
    before = [host(a).copy() for a in (z0, *captured.values())]
    ode_solver(func, z0, max_iter=50, tol=1e-8, indexing=[1, 3])
    for a, b in zip((z0, *captured.values()), before):
        np.testing.assert_array_equal(host(a), b)


def test_registered_as_ode():
    assert get_solver("ode") is ode_solver


@pytest.mark.parametrize("kw, argument", [
    ({"method": "rk4"}, "method"), ({"rtol": -1.0}, "rtol"), ({"rtol": "1e-3"}, "rtol"),
    ({"atol": 0.0}, "atol"), ({"atol": True}, "atol"), ({"h0": 0.0}, "h0"),
    ({"h0": float("inf")}, "h0"), ({"tol": -1e-3}, "tol"), ({"indexing": [11]}, "indexing"),
])
def test_bad_arguments_raise_value_error(kw, argument, xp, to_xp):
    calls = counted(lambda z: 0.5 * z)
    with pytest.raises(ValueError, match=argument):
        ode_solver(calls, to_xp(np.zeros((2, 3))), max_iter=10, **kw)
    assert calls.calls == 0
