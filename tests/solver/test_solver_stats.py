"""Statistics and per-sample bookkeeping (``SolveTracker``), through every solver with a
tolerance: convergence on random contractive maps with statistics that match the returned
state, batch independence, freezing, indexing, ``return_final``, tuple states, non-finite
samples, tiny ``max_iter``, shared argument checks, devices and dtypes, host syncs, purity.
Also the tracker's helpers on their own (``residual_norms``, ``check_solver_args``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq.solver
from npdeq import ConvergenceWarning, backend
from npdeq.solver import SolverStat, pack_states, residual_norms
from npdeq.solver.stats import SolveTracker, check_solver_args

from solver_problems import (GENEROUS_MAX_ITER, SOLVER_NAMES, SOLVERS, STOP_MODES,
                             assert_solution_stats, assert_trace_consistent, check_info,
                             check_raw, check_state, counted, exact_fixed_point, host, host_map,
                             linear_maps, poison, recomputed_residuals, row_problem,
                             tanh_maps, two_state_problem)

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")

TOL = 1e-6


def _solve(name, func, x0, **kw):
    return SOLVERS[name](func, x0, **kw)


# --- convergence on random contractive maps -----------------------------------------------


@pytest.mark.parametrize("name", SOLVER_NAMES)
@given(data=st.data())
def test_linear_maps_reach_tol_at_the_exact_fixed_point(name, xp, xp_device, check_array,
                                                        data):
    """z = W z + (U x + b), ||W|| < 1: every sample converges, the statistics are those of the
    returned z, and z is within ||f(z) - z|| / (1 - ||W||) of (I - W)^-1 (U x + b)."""
    m = data.draw(linear_maps(xp, xp_device), label="map")
    stop_mode = data.draw(st.sampled_from(STOP_MODES), label="stop_mode")
    z, trajectory, info = _solve(name, m.bind(), m.z0, max_iter=GENEROUS_MAX_ITER, tol=TOL,
                                 stop_mode=stop_mode)
    batch, dim = m.z0.shape
    check_raw(check_array, z, shape=(batch, dim), dtype=xp.float64)
    check_info(info, check_array, xp, batch)
    assert trajectory == []
    abs_res = assert_solution_stats(z, info, host_map(m), TOL, stop_mode)
    error = np.linalg.norm(host(z) - exact_fixed_point(m), axis=1)
    assert np.all(error <= abs_res / (1 - m.contraction) * (1 + 1e-6) + 1e-12)
    assert info["nfe"] >= int(np.max(host(info["nstep"])))


@pytest.mark.parametrize("name", SOLVER_NAMES)
@given(data=st.data())
def test_tanh_maps_reach_tol(name, xp, xp_device, check_array, data):
    """z = tanh(W z + U x + b), ||W|| in [0.5, 0.99]: every sample converges and the
    statistics are those of the returned z."""
    m = data.draw(tanh_maps(xp, xp_device), label="map")
    stop_mode = data.draw(st.sampled_from(STOP_MODES), label="stop_mode")
    z, _, info = _solve(name, m.bind(), m.z0, max_iter=GENEROUS_MAX_ITER, tol=TOL,
                        stop_mode=stop_mode)
    check_raw(check_array, z, shape=m.z0.shape, dtype=xp.float64)
    check_info(info, check_array, xp, m.z0.shape[0])
    assert_solution_stats(z, info, host_map(m), TOL, stop_mode)


@pytest.mark.parametrize("name", SOLVER_NAMES)
@given(data=st.data())
def test_float32_stays_float32(name, xp, xp_device, check_array, data):
    m = data.draw(tanh_maps(xp, xp_device, dim=st.integers(1, 8), dtype="float32"),
                  label="map")
    stop_mode = data.draw(st.sampled_from(STOP_MODES), label="stop_mode")
    z, trajectory, info = _solve(name, m.bind(), m.z0, max_iter=GENEROUS_MAX_ITER, tol=1e-4,
                                 stop_mode=stop_mode, indexing=[1, 2])
    check_raw(check_array, z, shape=m.z0.shape, dtype=xp.float32)
    for t in trajectory:
        check_raw(check_array, t, shape=m.z0.shape, dtype=xp.float32)
    check_info(info, check_array, xp, m.z0.shape[0], dtype=xp.float32)
    assert np.all(host(info["converged"]))
    assert np.all(host(info[f"{stop_mode}_lowest"]) <= 1e-4)
    assert_trace_consistent(info, stop_mode)


# --- per-sample behaviour -----------------------------------------------------------------


@pytest.mark.parametrize("name", SOLVER_NAMES)
@given(data=st.data())
def test_batch_size_independence(name, xp, xp_device, data):
    """Solving a batch gives, per sample, what solving that sample alone gives."""
    m = data.draw(tanh_maps(xp, xp_device, batch=st.integers(2, 4), dim=st.integers(1, 8)),
                  label="map")
    stop_mode = data.draw(st.sampled_from(STOP_MODES), label="stop_mode")
    kw = {"max_iter": GENEROUS_MAX_ITER, "tol": 1e-8, "stop_mode": stop_mode}
    z, _, info = _solve(name, m.bind(), m.z0, **kw)
    for i in range(m.z0.shape[0]):
        z_i, _, info_i = _solve(name, m.bind(x=m.params["x"][i:i + 1, :]),
                                m.z0[i:i + 1, :], **kw)
        np.testing.assert_allclose(host(z)[i], host(z_i)[0], rtol=1e-9, atol=1e-11)
        assert host(info["nstep"])[i] == host(info_i["nstep"])[0]
        # ||f(z) - z|| moves by at most (1 + Lip f) <= 2 times z's own rounding difference.
        moved = np.linalg.norm(host(z)[i] - host(z_i)[0])
        residual, residual_alone = host(info["abs_lowest"])[i], host(info_i["abs_lowest"])[0]
        assert abs(residual - residual_alone) <= 2 * moved + 1e-6 * residual + 1e-13, (
            residual, residual_alone, moved)


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_converged_sample_is_frozen(name, xp, to_xp, check_array):
    """Sample 1 starts at its exact fixed point: it converges at step 1 and keeps exactly
    that value while the others iterate on."""
    func, z0, _ = row_problem(to_xp, batch=4, fixed_rows=(1,))
    z, _, info = _solve(name, func, z0, max_iter=200, tol=1e-10)
    check_info(info, check_array, xp, 4)
    nstep, trace = host(info["nstep"]), host(info["abs_trace"])
    assert nstep[1] == 1 and np.all(nstep[[0, 2, 3]] > 1)
    assert np.all(host(z)[1] == 0.0)
    assert np.all(trace[1] == 0.0) and trace.shape[1] == np.max(nstep)
    assert np.all(host(info["converged"]))
    assert_trace_consistent(info, "abs")


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_tuple_states_of_different_shapes(name, xp, to_xp, check_array):
    """A (B, 3) and a (B, 2, 2) state: func(*zs) returns a tuple; z and every trajectory
    entry come back as such tuples and the statistics are those of the packed state."""
    func, z0, host_func = two_state_problem(to_xp, batch=3)
    z, trajectory, info = _solve(name, func, z0, max_iter=300, tol=1e-9, indexing=[2, 1])
    check_state(check_array, z, z0)
    assert len(trajectory) == 2
    for t in trajectory:
        check_state(check_array, t, z0)
    check_info(info, check_array, xp, 3)

    def packed_host(packed):
        out = host_func(packed[:, :3], packed[:, 3:].reshape(-1, 2, 2))
        return pack_states(out)

    assert_solution_stats(pack_states(tuple(host(a) for a in z)), info, packed_host, 1e-9,
                          "abs")


# NumPy warns about the inf - inf the solvers compute for the poisoned sample.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_nonfinite_sample_is_flagged_and_isolated(name, value, xp, to_xp, check_array):
    """f returns NaN/inf for sample 2 at the 4th call: that sample is flagged, not converged,
    keeps a finite best iterate found before; the others converge as if nothing happened."""
    func, z0, _ = row_problem(to_xp, batch=4, dim=5)
    clean, _, clean_info = _solve(name, func, z0, max_iter=300, tol=1e-10)
    poisoned = poison(func, xp, sample=2, calls={4}, value=value)
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        z, _, info = _solve(name, poisoned, z0, max_iter=300, tol=1e-10)
    check_raw(check_array, z, shape=z0.shape, dtype=xp.float64)
    check_info(info, check_array, xp, 4)
    nonfinite, converged = host(info["nonfinite"]), host(info["converged"])
    assert nonfinite.tolist() == [False, False, True, False]
    assert converged.tolist() == [True, True, False, True]
    assert np.all(np.isfinite(host(z)[2])) and np.isfinite(host(info["abs_lowest"])[2])
    assert 1 <= host(info["nstep"])[2] <= 3
    assert np.all(np.isnan(host(info["abs_trace"])[2, 3])
                  | np.isinf(host(info["abs_trace"])[2, 3]))
    others = [0, 1, 3]
    np.testing.assert_allclose(host(z)[others], host(clean)[others], rtol=1e-12, atol=1e-14)
    assert host(info["nstep"])[others].tolist() == host(clean_info["nstep"])[others].tolist()
    assert_trace_consistent(info, "abs")


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_nonfinite_at_the_first_call_keeps_x0(name, xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=3, dim=4)
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        z, _, info = _solve(name, poison(func, xp, sample=0, calls=set(range(1, 1000))), z0,
                            max_iter=50, tol=1e-8)
    assert np.all(host(z)[0] == 0.0)
    assert host(info["nstep"])[0] == 0 and np.isinf(host(info["abs_lowest"])[0])
    assert host(info["nonfinite"]).tolist() == [True, False, False]
    assert host(info["converged"]).tolist() == [False, True, True]
    assert_trace_consistent(info, "abs")


# --- indexing, return_final and small max_iter --------------------------------------------


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_indexing_returns_exactly_the_requested_states(name, xp, to_xp, check_array):
    """Entry j is the best state after ``indexing[j]`` iterations (= the result of a solve
    with that max_iter), in the requested order, repeats included."""
    func, z0, _ = row_problem(to_xp, batch=3, norm=0.95)
    indexing = [5, 1, 3, 5, 8]
    with pytest.warns(ConvergenceWarning):
        z, trajectory, info = _solve(name, func, z0, max_iter=8, tol=1e-14,
                                     indexing=indexing)
    assert len(trajectory) == len(indexing)
    for k, t in zip(indexing, trajectory):
        check_raw(check_array, t, shape=z0.shape, dtype=xp.float64)
        with pytest.warns(ConvergenceWarning):
            expected, _, _ = _solve(name, func, z0, max_iter=k, tol=1e-14)
        np.testing.assert_array_equal(host(t), host(expected), err_msg=f"iteration {k}")
    np.testing.assert_array_equal(host(trajectory[-1]), host(z))


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_indexing_past_an_early_stop_is_padded_with_the_final_state(name, xp, to_xp,
                                                                    check_array):
    func, z0, _ = row_problem(to_xp, batch=2, norm=0.5)
    max_iter = 100
    z, trajectory, info = _solve(name, func, z0, max_iter=max_iter, tol=1e-6,
                                 indexing=[max_iter, 2, 90])
    iterations = check_info(info, check_array, xp, 2)
    assert iterations < 90
    assert len(trajectory) == 3
    for t in (trajectory[0], trajectory[2]):
        check_raw(check_array, t, shape=z0.shape, dtype=xp.float64)
        np.testing.assert_array_equal(host(t), host(z))
    with pytest.warns(ConvergenceWarning):
        expected, _, _ = _solve(name, func, z0, max_iter=2, tol=1e-6)
    np.testing.assert_array_equal(host(trajectory[1]), host(expected))


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_return_final_returns_the_last_evaluated_iterate(name, xp, to_xp):
    """A map without a fixed point (residuals in [0.5, 1.5] per entry): return_final returns,
    and records, the last evaluated iterate, whose residual is the trace's last entry; the
    default returns the one whose residual is the lowest."""
    z0 = to_xp(np.array([[0.0, 1.0, -2.0], [0.3, 0.0, 5.0]]))

    def func(z):
        return z + 1.0 + 0.5 * backend.array_namespace(z).sin(3.0 * z)

    def host_func(z):
        return z + 1.0 + 0.5 * np.sin(3.0 * z)

    with pytest.warns(ConvergenceWarning):
        best, _, info_best = _solve(name, func, z0, max_iter=6, tol=1e-8)
    with pytest.warns(ConvergenceWarning):
        final, trajectory, info = _solve(name, func, z0, max_iter=6, tol=1e-8,
                                         return_final=True, indexing=[2, 5, 6])
    trace = host(info["abs_trace"])
    np.testing.assert_array_equal(trace, host(info_best["abs_trace"]))
    np.testing.assert_allclose(recomputed_residuals(host_func, host(best))[0],
                               trace.min(axis=1), rtol=1e-12)
    np.testing.assert_allclose(recomputed_residuals(host_func, host(final))[0], trace[:, -1],
                               rtol=1e-12)
    for k, t in zip([2, 5, 6], trajectory):
        np.testing.assert_allclose(recomputed_residuals(host_func, host(t))[0],
                                   trace[:, k - 1], rtol=1e-12)
    np.testing.assert_array_equal(host(trajectory[-1]), host(final))
    assert not np.array_equal(host(final), host(best))


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_return_final_of_converged_samples_is_their_solution(name, xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=3, fixed_rows=(0,))
    z, _, info = _solve(name, func, z0, max_iter=300, tol=1e-10, return_final=True)
    z_best, _, _ = _solve(name, func, z0, max_iter=300, tol=1e-10)
    assert np.all(host(info["converged"]))
    np.testing.assert_array_equal(host(z), host(z_best))


@pytest.mark.parametrize("max_iter", [0, 1, 2])
@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_tiny_max_iter_returns_the_best_iterate_seen(name, max_iter, xp, to_xp, check_array):
    """An expanding map: its residual grows every step, so the best iterate seen is x0 (or,
    with max_iter=0, x0 unevaluated)."""
    x0_host = np.array([[0.5, -1.0], [2.0, 0.0], [0.0, 0.25]])
    z0 = to_xp(x0_host)
    counting = counted(lambda z: 1.0 - 2.0 * z)
    if max_iter == 0:
        z, trajectory, info = _solve(name, counting, z0, max_iter=0, tol=1e-8, indexing=[1])
    else:
        with pytest.warns(ConvergenceWarning, match="did not reach tol"):
            z, trajectory, info = _solve(name, counting, z0, max_iter=max_iter, tol=1e-8,
                                         indexing=[1])
    assert check_info(info, check_array, xp, 3) == max_iter
    assert info["nfe"] == counting.calls == max_iter
    check_raw(check_array, z, shape=(3, 2), dtype=xp.float64)
    np.testing.assert_array_equal(host(z), x0_host)
    np.testing.assert_array_equal(host(trajectory[0]), x0_host)
    assert np.all(host(info["nstep"]) == min(max_iter, 1))
    assert not np.any(host(info["converged"]))
    if max_iter:
        abs_res, _ = recomputed_residuals(lambda z: 1.0 - 2.0 * z, x0_host)
        np.testing.assert_allclose(host(info["abs_lowest"]), abs_res, rtol=1e-12)
        assert_trace_consistent(info, "abs")
    else:
        assert np.all(np.isinf(host(info["abs_lowest"])))


@pytest.mark.parametrize("max_iter", [1, 2])
@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_tiny_max_iter_on_a_contraction_returns_the_last_step(name, max_iter, xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=2)
    with pytest.warns(ConvergenceWarning):
        z, _, info = _solve(name, func, z0, max_iter=max_iter, tol=1e-12)
    expected = host(z0) if max_iter == 1 else host(func(z0))
    np.testing.assert_array_equal(host(z), expected)
    assert np.all(host(info["nstep"]) == max_iter)


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, argument", [
    ({"tol": float("nan")}, "tol"), ({"tol": float("inf")}, "tol"), ({"tol": -1e-3}, "tol"),
    ({"tol": "1e-3"}, "tol"), ({"tol": True}, "tol"),
    ({"max_iter": -1}, "max_iter"), ({"max_iter": 2.5}, "max_iter"),
    ({"max_iter": True}, "max_iter"),
    ({"stop_mode": "max"}, "stop_mode"), ({"stop_mode": None}, "stop_mode"),
    ({"indexing": [0]}, "indexing"), ({"indexing": [3, 11]}, "indexing"),
    ({"indexing": [2.7]}, "indexing"), ({"indexing": ["3"]}, "indexing"),
])
@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_bad_shared_arguments_raise_value_error(name, kw, argument, xp, to_xp):
    calls = counted(lambda z: 0.5 * z)
    kw = {"max_iter": 10, **kw}
    with pytest.raises(ValueError, match=argument):
        _solve(name, calls, to_xp(np.zeros((2, 3))), **kw)
    assert calls.calls == 0


def test_check_solver_args_returns_indexing_in_request_order():
    assert check_solver_args(5, 1e-3, "rel", (4, 2, 4), 0.5).indexing == [4, 2, 4]
    assert check_solver_args(0, None, "abs", None).indexing == []
    assert check_solver_args(0, None, "abs", [1]).indexing == [1]  # padded by the tracker


# --- devices, host syncs, purity ------------------------------------------------------------


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_everything_returned_is_on_the_input_device(name, xp, to_xp, check_array):
    func, z0, _ = row_problem(to_xp, batch=3)
    z, trajectory, info = _solve(name, func, z0, max_iter=100, tol=1e-8, indexing=[1, 2, 99])
    check_raw(check_array, z, shape=z0.shape, dtype=xp.float64)
    assert len(trajectory) == 3
    for t in trajectory:
        check_raw(check_array, t, shape=z0.shape, dtype=xp.float64)
    check_info(info, check_array, xp, 3)


@pytest.mark.parametrize("converge", [True, False], ids=["converging", "max_iter"])
@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_one_host_sync_per_iteration(name, converge, xp, to_xp, sync_calls):
    """``backend.to_scalar`` (the solvers' only host read) is called at most once per
    iteration plus a few times at the end (the warning checks); with a map that has no
    fixed point the solve runs all of max_iter."""
    func, z0, _ = row_problem(to_xp, batch=4, norm=0.95, fixed_rows=(2,))
    if not converge:
        func = lambda z: z + 1.0  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, _, info = _solve(name, func, z0, max_iter=40, tol=1e-9)
    iterations = info["abs_trace"].shape[1]
    assert np.all(host(info["converged"])) == converge
    assert iterations == (info["nfe"] if converge else 40)
    assert len(sync_calls) <= iterations + 3


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_inputs_are_not_modified(name, xp, to_xp):
    """x0 and the arrays func captures are unchanged after a solve (one array and tuple)."""
    func, z0, captured = row_problem(to_xp, batch=3)
    tfunc, tz0, _ = two_state_problem(to_xp)
    inputs = [z0, *captured.values(), *tz0]
    before = [host(a).copy() for a in inputs]
    _solve(name, func, z0, max_iter=50, tol=1e-8, indexing=[1, 3])
    _solve(name, tfunc, tz0, max_iter=50, tol=1e-8, indexing=[2])
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(host(a), b)


# --- the helpers on their own ---------------------------------------------------------------


def test_residual_norms_per_sample(xp, to_xp, check_array):
    fx = to_xp(np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]]))
    x = to_xp(np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]]))
    abs_res, rel_res = residual_norms(fx, x)
    check_raw(check_array, abs_res, shape=(3,), dtype=xp.float64)
    check_raw(check_array, rel_res, shape=(3,), dtype=xp.float64)
    np.testing.assert_allclose(host(abs_res), [5.0, 0.0, 1.0])
    np.testing.assert_allclose(host(rel_res), [5.0 / (5.0 + 1e-8), 0.0, 1 / (2 ** 0.5 + 1e-8)])


def test_tracker_freezes_converged_and_nonfinite_samples(xp, to_xp, check_array):
    x0 = to_xp(np.zeros((3, 2)))
    tracker = SolveTracker(x0, 0.5, "abs", [2, 1, 2])
    fx = to_xp(np.array([[0.1, 0.0], [1.0, 1.0], [np.nan, 0.0]]))
    assert tracker.observe(x0, fx) is True  # sample 1 is still active
    proposal = to_xp(np.full((3, 2), 7.0))
    np.testing.assert_array_equal(host(tracker.next_iterate(proposal)),
                                  [[0.0, 0.0], [7.0, 7.0], [0.0, 0.0]])
    tracker.nfe = 1
    z, trajectory, info = tracker.finish(lambda p: p, "test", warn=False)
    check_info(info, check_array, xp, 3)
    assert isinstance(info, SolverStat) and "abs_lowest" in repr(info)
    assert host(info["converged"]).tolist() == [True, False, False]
    assert host(info["nonfinite"]).tolist() == [False, False, True]
    assert host(info["nstep"]).tolist() == [1, 1, 0]
    np.testing.assert_allclose(host(info["abs_lowest"]), [0.1, 2 ** 0.5, np.inf])
    # Iteration 2 never ran: its entries are the returned state.
    assert len(trajectory) == 3
    np.testing.assert_array_equal(host(trajectory[1]), host(x0))
    for t in (trajectory[0], trajectory[2]):
        np.testing.assert_array_equal(host(t), host(z))


def test_observe_without_sync(xp, to_xp, monkeypatch):
    monkeypatch.setattr(backend, "to_scalar", lambda x: pytest.fail("host sync"))
    x0 = to_xp(np.zeros((2, 2)))
    tracker = SolveTracker(x0, None, "abs", [])
    assert tracker.observe(x0, to_xp(np.ones((2, 2))), sync=False) is True


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_tracker_warnings(xp, to_xp):
    x0 = to_xp(np.zeros((2, 2)))
    tracker = SolveTracker(x0, 1e-3, "rel", [])
    tracker.observe(x0, to_xp(np.ones((2, 2))))
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        tracker.finish(lambda p: p, "test")
    tracker = SolveTracker(x0, 1e-3, "abs", [])
    tracker.observe(x0, to_xp(np.array([[np.inf, 0.0], [0.0, 0.0]])))
    with pytest.warns(ConvergenceWarning, match="non-finite values for some samples"):
        tracker.finish(lambda p: p, "test")


# --- solver_stat_from_final_step (TorchDEQ's record of a solve known by its last step) ---


def test_stat_from_final_step_matches_closed_form(xp, to_xp, check_array):
    from npdeq.solver import solver_stat_from_final_step

    rng = np.random.default_rng(0)
    z, fz = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    fz[1] = z[1] + 1e-9                       # one sample within any tolerance below
    fz[2, 0, 0] = np.nan                       # one non-finite sample
    info = solver_stat_from_final_step(to_xp(z), to_xp(fz), nstep=4, tol=1e-6)
    abs_res = np.linalg.norm((fz - z).reshape(3, -1), axis=1)
    rel_res = abs_res / (np.linalg.norm(fz.reshape(3, -1), axis=1) + 1e-8)
    for key, expected in [("abs_lowest", abs_res), ("rel_lowest", rel_res)]:
        check_array(info[key], shape=(3,), dtype=xp.float64)
        np.testing.assert_allclose(host(info[key]), expected, rtol=1e-12)
    for key, expected in [("abs_trace", abs_res), ("rel_trace", rel_res)]:
        check_array(info[key], shape=(3, 1), dtype=xp.float64)
        np.testing.assert_allclose(host(info[key])[:, 0], expected, rtol=1e-12)
    check_array(info["nstep"], shape=(3,), dtype=xp.int64)
    assert host(info["nstep"]).tolist() == [4, 4, 4] and info["nfe"] == 4
    assert host(info["converged"]).tolist() == [False, True, False]
    assert host(info["nonfinite"]).tolist() == [False, False, True]


def test_stat_from_final_step_tuple_states_stop_mode_and_no_tol():
    from npdeq.solver import solver_stat_from_final_step

    z = (np.ones((2, 3)), np.ones((2, 1)))
    fz = (np.ones((2, 3)), np.full((2, 1), 1.5))
    info = solver_stat_from_final_step(z, fz, tol=0.4, stop_mode="rel")
    np.testing.assert_allclose(info["abs_lowest"], [0.5, 0.5])
    assert info["converged"].tolist() == [True, True]          # 0.5 / sqrt(5.25) < 0.4
    assert not solver_stat_from_final_step(z, fz, tol=0.4)["converged"].any()   # abs: 0.5
    assert not solver_stat_from_final_step(z, fz)["converged"].any()           # no tol given


def test_stat_from_final_step_top_level_takes_tensors():
    import npdeq

    z = npdeq.tensor(np.ones((2, 3)), requires_grad=True)
    info = npdeq.solver_stat_from_final_step(z, 0.5 * z, nstep=2)
    np.testing.assert_allclose(info["abs_lowest"], [0.5 * np.sqrt(3)] * 2)
    assert isinstance(info["abs_lowest"], np.ndarray)


@pytest.mark.parametrize("kwargs, match", [
    ({"nstep": -1}, "nstep"), ({"nstep": 1.5}, "nstep"), ({"tol": -1e-3}, "tol"),
    ({"stop_mode": "relative"}, "stop_mode"), ({"fz": np.ones((2, 4))}, r"same \(packed\) shape"),
])
def test_stat_from_final_step_rejects_bad_arguments(kwargs, match):
    from npdeq.solver import solver_stat_from_final_step

    args = {"z": np.ones((2, 3)), "fz": np.ones((2, 3)), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        solver_stat_from_final_step(**args)


# --- per_sample=False: TorchDEQ's batch-wise loop -----------------------------------------


def test_tracker_batchwise_keeps_converged_samples_moving(xp, to_xp):
    x0 = to_xp(np.zeros((3, 2)))
    tracker = SolveTracker(x0, 0.5, "abs", [], per_sample=False)
    fx = to_xp(np.array([[0.1, 0.0], [1.0, 1.0], [np.nan, 0.0]]))
    assert tracker.observe(x0, fx) is True  # sample 1 has not converged
    proposal = to_xp(np.full((3, 2), 7.0))
    # The converged sample 0 moves on; only the non-finite sample 2 is frozen.
    np.testing.assert_array_equal(host(tracker.next_iterate(proposal)),
                                  [[7.0, 7.0], [7.0, 7.0], [0.0, 0.0]])
    # Once every finite sample has converged, the loop stops.
    assert tracker.observe(x0, to_xp(np.array([[0.1, 0.0], [0.2, 0.0], [np.nan, 0.0]]))) is False


ALL_SOLVERS = {**SOLVERS, "ode_solver": npdeq.solver.ode_solver,
               "newton_krylov": npdeq.solver.newton_krylov}


@pytest.mark.parametrize("name", list(ALL_SOLVERS))
def test_batchwise_solve_keeps_iterating_converged_samples(name, xp, to_xp, check_array):
    # Sample 0 starts within tol of its fixed point, sample 1 far from its own: per sample,
    # sample 0 is frozen at its first iterate; batch-wise (TorchDEQ) it keeps improving
    # until sample 1 has converged too.
    scale = np.array([[0.05], [0.9]])
    z_star = np.ones((2, 3))
    for _ in range(500):
        z_star = scale * np.tanh(z_star) + 1.0
    start = np.concatenate([z_star[:1] + 3e-7, np.zeros((1, 3))])
    scale_xp = to_xp(scale)

    def func(z):
        return scale_xp * xp.tanh(z) + 1.0

    tol = 1e-6
    solver = ALL_SOLVERS[name]
    _, _, frozen = solver(func, to_xp(start), tol=tol, max_iter=400)
    _, _, moving = solver(func, to_xp(start), tol=tol, max_iter=400, per_sample=False)
    for info in (frozen, moving):
        check_info(info, check_array, xp, 2)
        assert host(info["converged"]).tolist() == [True, True]
    frozen_steps, moving_steps = host(frozen["nstep"]), host(moving["nstep"])
    assert moving_steps[0] > frozen_steps[0]
    assert host(moving["abs_lowest"])[0] < host(frozen["abs_lowest"])[0]
    # Frozen: the converged sample's trace repeats; batch-wise it keeps changing.
    frozen_trace = host(frozen["abs_trace"])[0, frozen_steps[0]:]
    assert np.all(frozen_trace == frozen_trace[0])


def test_batchwise_flag_is_checked():
    from npdeq.solver import anderson_solver

    with pytest.raises(TypeError, match="per_sample"):
        anderson_solver(lambda z: z, np.zeros((1, 2)), per_sample=1)


def test_an_overflowed_image_norm_is_not_a_relative_residual_of_zero():
    """||f(x)||^2 overflowing float32 would make ||f(x) - x|| / ||f(x)|| exactly 0: a
    diverging sample would count as converged. It counts as non-finite instead."""
    from npdeq.solver.stats import residual_norms

    fx = np.array([[1e20, 1e20], [1.0, 2.0]], dtype=np.float32)
    x = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    with np.errstate(over="ignore"):
        abs_res, rel = residual_norms(fx, x)
    assert np.isnan(rel[0]) and rel[1] == pytest.approx(1 / np.sqrt(5.0))
    # Plain iteration on u = 10 u + g diverges; the old relative residual read 0 once
    # ||f(u)||^2 overflowed and called the sample converged.
    rng = np.random.default_rng(1)
    rng.standard_normal((3, 4))
    g = (rng.standard_normal((3, 4)) * 100.0).astype(np.float32)
    factor = np.array([[0.5], [10.0], [10.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with np.errstate(over="ignore", invalid="ignore"):
            _, _, info = npdeq.solver.fixed_point_iter(
                lambda u: factor * u + g, np.zeros_like(g), max_iter=40, tol=1e-4,
                stop_mode="rel")
    assert np.asarray(info["converged"]).tolist() == [True, False, False]
