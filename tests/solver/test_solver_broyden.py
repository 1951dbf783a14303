"""``broyden_solver``: faster than plain iteration on slow contractions, finite termination
on linear maps, the line search, the update memory and its arguments. The behaviour every
solver shares is in test_solver_stats.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npdeq.solver import broyden_solver

from solver_problems import (GENEROUS_MAX_ITER, assert_fewer_evaluations_than_iteration,
                             assert_solution_stats, counted, exact_fixed_point, host, host_map,
                             linear_maps, row_problem, slow_maps, tanh_maps)

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")


@given(data=st.data())
def test_fewer_evaluations_than_plain_iteration(xp, xp_device, data):
    m = data.draw(slow_maps(xp, xp_device), label="map")
    assert_fewer_evaluations_than_iteration(broyden_solver, m)


@given(data=st.data())
def test_linear_maps_are_solved_within_2d_steps(xp, xp_device, data):
    """On z = W z + c, Broyden's good method terminates within 2D steps (Gay, 1979): here
    2D + 1 evaluations, plus one for rounding."""
    m = data.draw(linear_maps(xp, xp_device, dim=st.integers(1, 8)), label="map")
    z, _, info = broyden_solver(m.bind(), m.z0, max_iter=GENEROUS_MAX_ITER, tol=1e-9)
    dim = m.z0.shape[1]
    assert np.max(host(info["nstep"])) <= 2 * dim + 2
    np.testing.assert_allclose(host(z), exact_fixed_point(m),
                               atol=1e-9 / (1 - m.contraction) * (1 + 1e-6) + 1e-12)


@pytest.mark.parametrize("memory", [1, 2, 5])
def test_short_update_memory_still_converges(memory, xp, to_xp):
    func, z0, arrays = row_problem(to_xp, batch=3, norm=0.95)
    W, inj = host(arrays["W"]), host(arrays["inj"])
    z, _, info = broyden_solver(func, z0, max_iter=GENEROUS_MAX_ITER, tol=1e-9,
                                LBFGS_thres=memory)
    assert_solution_stats(z, info, lambda a: np.tanh(a @ W.T + inj), 1e-9, "abs")


def test_line_search_halves_a_step_that_does_not_reduce_the_residual(xp, to_xp):
    """f(z) = 2 - z from 0: the first (plain) step lands on 2, whose residual is as large as
    at 0; the line search halves it to 1, the fixed point. Each halving is one evaluation."""
    calls = counted(lambda z: 2.0 - z)
    z, _, info = broyden_solver(calls, to_xp(np.zeros((2, 3))), max_iter=10, tol=1e-12,
                                ls=True)
    assert np.all(host(z) == 1.0)
    assert info["abs_trace"].shape[1] == 2 and np.all(host(info["nstep"]) == 2)
    assert info["nfe"] == calls.calls == 3


@given(data=st.data())
def test_line_search_converges_on_tanh_maps(xp, xp_device, data):
    m = data.draw(tanh_maps(xp, xp_device, dim=st.integers(1, 8)), label="map")
    z, _, info = broyden_solver(m.bind(), m.z0, max_iter=GENEROUS_MAX_ITER, tol=1e-7, ls=True)
    assert_solution_stats(z, info, host_map(m), 1e-7, "abs")
    assert info["nfe"] >= info["abs_trace"].shape[1]


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3"])
def test_bad_update_memory_raises_value_error(value, xp, to_xp):
    calls = counted(lambda z: 0.5 * z)
    with pytest.raises(ValueError, match="LBFGS_thres"):
        broyden_solver(calls, to_xp(np.zeros((2, 3))), LBFGS_thres=value)
    assert calls.calls == 0
