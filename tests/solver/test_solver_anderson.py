"""``anderson_solver``: faster than plain iteration on slow contractions, never fails on a
singular mixing system, its own arguments (m, lam, tau). The behaviour every solver shares is
in test_solver_stats.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npdeq import ConvergenceWarning
from npdeq.solver import anderson_solver, fixed_point_iter

from solver_problems import (GENEROUS_MAX_ITER, assert_fewer_evaluations_than_iteration,
                             assert_solution_stats, assert_trace_consistent, counted, host,
                             row_problem, slow_maps)

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")

LAMS = pytest.mark.parametrize("lam", [1e-4, 0.0])


@given(data=st.data())
def test_fewer_evaluations_than_plain_iteration(xp, xp_device, data):
    m = data.draw(slow_maps(xp, xp_device), label="map")
    assert_fewer_evaluations_than_iteration(anderson_solver, m)


# --- singular mixing systems --------------------------------------------------------------


@LAMS
def test_constant_map(lam, xp, to_xp):
    """f(z) = c: every residual history is singular; the second iterate is exact."""
    c = to_xp(np.array([[1.0, -2.0, 3.0], [0.0, 0.5, 0.25]]))
    z, _, info = anderson_solver(lambda z: c + 0.0 * z, to_xp(np.zeros((2, 3))), tol=1e-12,
                                 lam=lam)
    np.testing.assert_array_equal(host(z), host(c))
    assert np.all(host(info["nstep"]) == 2) and np.all(host(info["converged"]))


@LAMS
@pytest.mark.parametrize("slope", [0.5, 0.99, -0.9])
def test_one_dimensional_states(slope, lam, xp, to_xp):
    """D = 1: every pair of residuals is linearly dependent (a rank-1 Gram matrix)."""
    b = to_xp(np.array([[1.0], [-3.0], [0.0]]))
    z, _, info = anderson_solver(lambda z: slope * z + b, to_xp(np.zeros((3, 1))), tol=1e-10,
                                 lam=lam, max_iter=GENEROUS_MAX_ITER)
    np.testing.assert_allclose(host(z), host(b) / (1 - slope), rtol=1e-8, atol=1e-10)
    assert np.all(host(info["converged"]))
    assert_trace_consistent(info, "abs")


@LAMS
def test_rank_one_map(lam, xp, to_xp):
    """z = W z + b with rank-1 W: the residual history spans at most two directions."""
    rng = np.random.default_rng(3)
    u = rng.standard_normal(8)
    W_host = 0.95 * np.outer(u, u) / (u @ u)
    b_host = rng.standard_normal((3, 8))
    W, b = to_xp(W_host), to_xp(b_host)
    z, _, info = anderson_solver(lambda z: z @ W.T + b, to_xp(np.zeros((3, 8))), tol=1e-10,
                                 lam=lam, max_iter=GENEROUS_MAX_ITER)
    exact = np.linalg.solve(np.eye(8) - W_host, b_host.T).T
    np.testing.assert_allclose(host(z), exact, atol=1e-8)
    assert_solution_stats(z, info, lambda a: a @ W_host.T + b_host, 1e-10, "abs")


@LAMS
def test_zero_residual_sample_beside_active_ones(lam, xp, to_xp):
    """Sample 0 starts at its exact fixed point (an all-zero Gram matrix for the rest of the
    solve); it keeps x0 exactly and the others converge."""
    func, z0, _ = row_problem(to_xp, batch=3, fixed_rows=(0,))
    z, _, info = anderson_solver(func, z0, tol=1e-10, lam=lam, max_iter=GENEROUS_MAX_ITER)
    assert np.all(host(z)[0] == 0.0) and host(info["nstep"])[0] == 1
    assert np.all(host(info["converged"])) and np.all(np.isfinite(host(z)))


@LAMS
def test_singular_histories_keep_samples_independent(lam, xp, to_xp):
    """Diagonal W: sample 0's residuals stay on one axis (a rank-1 Gram matrix from the
    second step on), the others' span at most three (rank-deficient once the history is
    longer). Each sample is solved as if it were alone, faster than by plain iteration."""
    W = to_xp(np.diag([0.95, 0.5, -0.3]))
    b_host = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, -2.0, 0.5]])
    b = to_xp(b_host)
    kw = {"tol": 1e-10, "max_iter": GENEROUS_MAX_ITER}
    z, _, info = anderson_solver(lambda z: z @ W.T + b, to_xp(np.zeros((3, 3))), lam=lam,
                                 **kw)
    _, _, plain = fixed_point_iter(lambda z: z @ W.T + b, to_xp(np.zeros((3, 3))), **kw)
    assert np.all(host(info["converged"])) and info["nfe"] < plain["nfe"]
    for i in range(3):
        b_i = b[i:i + 1, :]
        z_i, _, info_i = anderson_solver(lambda z: z @ W.T + b_i, to_xp(np.zeros((1, 3))),
                                         lam=lam, **kw)
        assert host(info["nstep"])[i] == host(info_i["nstep"])[0]
        np.testing.assert_allclose(host(z)[i], host(z_i)[0], rtol=1e-12, atol=1e-14)


def test_exact_fixed_point_as_x0(xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=3, fixed_rows=(0, 1, 2))
    calls = counted(func)
    z, _, info = anderson_solver(calls, z0, tol=1e-12)
    assert calls.calls == 1 and info["nfe"] == 1
    np.testing.assert_array_equal(host(z), host(z0))
    assert np.all(host(info["nstep"]) == 1) and np.all(host(info["abs_lowest"]) == 0.0)


@LAMS
def test_no_fixed_point_keeps_the_best_finite_iterate(lam, xp, to_xp):
    """f(z) = z + d: every residual is d (an all-equal Gram matrix); nothing raises, the
    solve stays finite and returns its best iterate."""
    d = to_xp(np.array([[1.0, 2.0], [0.0, 1e-3]]))
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        z, _, info = anderson_solver(lambda z: z + d, to_xp(np.zeros((2, 2))), tol=1e-8,
                                     lam=lam, max_iter=20)
    assert np.all(np.isfinite(host(z))) and not np.any(host(info["nonfinite"]))
    assert not np.any(host(info["converged"]))
    assert_trace_consistent(info, "abs")


# --- m, lam, tau ----------------------------------------------------------------------------


def test_history_of_one_is_plain_iteration(xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=3, norm=0.9)
    z, _, info = anderson_solver(func, z0, m=1, tol=1e-9, max_iter=GENEROUS_MAX_ITER)
    z_fp, _, info_fp = fixed_point_iter(func, z0, tol=1e-9, max_iter=GENEROUS_MAX_ITER)
    np.testing.assert_array_equal(host(z), host(z_fp))
    np.testing.assert_array_equal(host(info["abs_trace"]), host(info_fp["abs_trace"]))
    assert info["nfe"] == info_fp["nfe"]


@pytest.mark.parametrize("m", [2, 3, 50])
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_history_sizes_and_damping_converge(m, tau, xp, to_xp):
    func, z0, arrays = row_problem(to_xp, batch=3, norm=0.95)
    W, inj = host(arrays["W"]), host(arrays["inj"])
    z, _, info = anderson_solver(func, z0, m=m, tau=tau, tol=1e-9,
                                 max_iter=GENEROUS_MAX_ITER)
    assert_solution_stats(z, info, lambda a: np.tanh(a @ W.T + inj), 1e-9, "abs")


@pytest.mark.parametrize("kw, argument", [
    ({"m": 0}, "m"), ({"m": -2}, "m"), ({"m": 2.0}, "m"), ({"m": True}, "m"),
    ({"lam": -1e-3}, "lam"), ({"lam": "0.1"}, "lam"),
    ({"tau": 0.0}, "tau"), ({"tau": 1.01}, "tau"),
])
def test_bad_arguments_raise_value_error(kw, argument, xp, to_xp):
    calls = counted(lambda z: 0.5 * z)
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        anderson_solver(calls, to_xp(np.zeros((2, 3))), **kw)
    assert calls.calls == 0
