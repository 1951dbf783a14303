"""``fixed_point_iter`` (damping, rate, arguments) and ``simple_fixed_point_iter`` (exactly
max_iter steps, no host syncs, its statistics). The behaviour every solver shares is in
test_solver_stats.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from npdeq import ConvergenceWarning
from npdeq.solver import fixed_point_iter, simple_fixed_point_iter

from solver_problems import (check_info, check_raw, check_state, counted, host, poison,
                             recomputed_residuals, row_problem, two_state_problem)

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")




# --- fixed_point_iter ---------------------------------------------------------------------


def test_damping_stops_an_oscillation(xp, to_xp):
    """f(z) = 2 - z oscillates between 0 and 2 undamped; tau = 0.5 lands on 1 in one step."""
    z0 = to_xp(np.zeros((2, 3)))
    with pytest.warns(ConvergenceWarning):
        z, _, info = fixed_point_iter(lambda z: 2.0 - z, z0, max_iter=7, tol=1e-9)
    assert np.all(host(z) == 0.0) and np.all(host(info["nstep"]) == 1)
    np.testing.assert_array_equal(host(info["abs_trace"]), np.full((2, 7), 12 ** 0.5))
    z, _, info = fixed_point_iter(lambda z: 2.0 - z, z0, max_iter=7, tol=1e-9, tau=0.5)
    assert np.all(host(z) == 1.0)
    assert np.all(host(info["nstep"]) == 2) and info["nfe"] == 2
    assert np.all(host(info["converged"]))


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_residuals_shrink_at_the_damped_contraction_rate(tau, xp, to_xp):
    """f(z) = c z + b per entry: each step multiplies the residual by tau c + 1 - tau."""
    c = to_xp(np.array([[0.5], [-0.8]]))
    b = to_xp(np.array([[1.0, -2.0], [0.5, 3.0]]))
    with pytest.warns(ConvergenceWarning):
        _, _, info = fixed_point_iter(lambda z: c * z + b, to_xp(np.zeros((2, 2))),
                                      max_iter=8, tol=1e-30, tau=tau)
    trace = host(info["abs_trace"])
    rate = tau * np.array([0.5, -0.8]) + 1 - tau
    np.testing.assert_allclose(trace[:, 1:] / trace[:, :-1],
                               np.broadcast_to(np.abs(rate)[:, None], (2, 7)), rtol=1e-6)


@pytest.mark.parametrize("tau", [0.0, -0.5, 1.5, "0.5", None])
def test_bad_tau_raises_value_error(tau, xp, to_xp):
    for solve in (fixed_point_iter, simple_fixed_point_iter):
        with pytest.raises(ValueError, match="tau"):
            solve(lambda z: z, to_xp(np.zeros((1, 2))), tau=tau)


# --- simple_fixed_point_iter --------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 0.7])
def test_simple_runs_exactly_max_iter_steps(tau, xp, to_xp, check_array, sync_calls):
    """A plain function, called exactly max_iter times even though sample 1 starts at its
    fixed point; the result is the plain loop's; no host synchronisation at all."""
    func, z0, _ = row_problem(to_xp, batch=3, fixed_rows=(1,))
    calls = counted(func)
    z, trajectory, info = simple_fixed_point_iter(calls, z0, max_iter=9, tau=tau,
                                                  indexing=[9, 2, 2])
    assert calls.calls == 9 and info["nfe"] == 9
    assert sync_calls == []
    states = [z0]
    for _ in range(9):
        states.append(tau * func(states[-1]) + (1 - tau) * states[-1] if tau != 1.0
                      else func(states[-1]))
    check_raw(check_array, z, shape=z0.shape, dtype=xp.float64)
    np.testing.assert_allclose(host(z), host(states[9]), rtol=1e-14, atol=1e-15)
    assert np.all(host(z)[1] == 0.0)
    assert len(trajectory) == 3
    for k, t in zip([9, 2, 2], trajectory):
        check_raw(check_array, t, shape=z0.shape, dtype=xp.float64)
        np.testing.assert_allclose(host(t), host(states[k]), rtol=1e-14, atol=1e-15)

    # The statistics describe the last step: the residual of the iterate it started from.
    assert check_info(info, check_array, xp, 3) == 1
    abs_res, rel_res = recomputed_residuals(lambda a: host(func(to_xp(a))), host(states[8]))
    np.testing.assert_allclose(host(info["abs_lowest"]), abs_res, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(host(info["rel_lowest"]), rel_res, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(host(info["abs_trace"])[:, 0], abs_res, rtol=1e-12,
                               atol=1e-300)
    assert np.all(host(info["nstep"]) == 9)
    assert not np.any(host(info["converged"])) and not np.any(host(info["nonfinite"]))


def test_simple_with_max_iter_0(xp, to_xp, check_array):
    z0 = to_xp(np.ones((2, 3)))
    calls = counted(lambda z: 0.5 * z)
    z, trajectory, info = simple_fixed_point_iter(calls, z0, max_iter=0, indexing=[1])
    assert calls.calls == 0
    np.testing.assert_array_equal(host(z), host(z0))
    assert len(trajectory) == 1
    np.testing.assert_array_equal(host(trajectory[0]), host(z0))
    assert check_info(info, check_array, xp, 2) == 0
    assert info["nfe"] == 0


def test_simple_with_a_tuple_state(xp, to_xp, check_array):
    func, z0, host_func = two_state_problem(to_xp, batch=2)
    z, trajectory, info = simple_fixed_point_iter(func, z0, max_iter=4, indexing=[1])
    check_state(check_array, z, z0)
    check_state(check_array, trajectory[0], z0)
    expected = tuple(host(a) for a in z0)
    for _ in range(4):
        expected = host_func(*expected)
    for a, b in zip(z, expected):
        np.testing.assert_allclose(host(a), b, rtol=1e-13, atol=1e-15)
    check_info(info, check_array, xp, 2)


def test_simple_flags_a_nonfinite_last_step_without_warning(xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, info = simple_fixed_point_iter(poison(func, xp, sample=1, calls={5}), z0,
                                             max_iter=5)
    assert host(info["nonfinite"]).tolist() == [False, True, False]


@pytest.mark.parametrize("kw, argument", [
    ({"max_iter": -1}, "max_iter"), ({"max_iter": 1.0}, "max_iter"),
    ({"indexing": [0]}, "indexing"), ({"max_iter": 3, "indexing": [4]}, "indexing"),
])
def test_simple_bad_arguments_raise_value_error(kw, argument, xp, to_xp):
    with pytest.raises(ValueError, match=argument):
        simple_fixed_point_iter(lambda z: z, to_xp(np.zeros((1, 2))), **kw)


def test_simple_accepts_the_solver_contract(xp, to_xp):
    """tol and stop_mode are accepted (and checked) like every solver's, and do not stop it."""
    calls = counted(lambda z: 0.5 * z)
    simple_fixed_point_iter(calls, to_xp(np.zeros((1, 2))), max_iter=6, tol=1e-3,
                            stop_mode="rel", indexing=None)
    assert calls.calls == 6
    with pytest.raises(ValueError, match="stop_mode"):
        simple_fixed_point_iter(calls, to_xp(np.zeros((1, 2))), stop_mode="max")
    with pytest.raises(ValueError, match="tol"):
        simple_fixed_point_iter(calls, to_xp(np.zeros((1, 2))), tol=-1e-3)
