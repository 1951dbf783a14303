"""``newton_krylov``: fewer evaluations than Anderson on slowly contracting maps, the same
fixed point as the other solvers, the statistics contract (every evaluation counted, indexing,
frozen and non-finite samples, tuple states, host syncs), the line search, arguments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npdeq import ConvergenceWarning, backend
from npdeq.solver import anderson_solver, get_solver, newton_krylov

from solver_problems import (assert_nonfinite_sample_isolated, assert_tiny_max_iter,
                             GENEROUS_MAX_ITER, STOP_MODES, assert_solution_stats,
                             assert_trace_consistent, check_info, check_raw, check_state,
                             counted, exact_fixed_point, host, host_map, linear_maps,
                             row_problem, tanh_maps, two_state_problem)

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")


def _slow_problem(to_xp, kind, seed, dim=16, batch=3):
    """Spectral radius 0.99: ``z -> 0.99 Q z + x`` (Q orthogonal) or its smooth version
    ``tanh(0.99 Q z + 0.01 x)`` (small fixed point, so tanh stays near its linear part)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = rng.standard_normal((batch, dim))
    W, X = to_xp(0.99 * q), to_xp(x)
    xp = backend.array_namespace(W)
    if kind == "linear":
        return (lambda z: z @ W.T + X), (lambda z: z @ (0.99 * q).T + x), to_xp(
            np.zeros((batch, dim)))
    return ((lambda z: xp.tanh(z @ W.T + 0.01 * X)),
            (lambda z: np.tanh(z @ (0.99 * q).T + 0.01 * x)), to_xp(np.zeros((batch, dim))))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["linear", "tanh"])
def test_fewer_evaluations_than_anderson_at_contraction_0_99(kind, seed, xp, to_xp):
    """Newton-Krylov reaches tol; Anderson, given twice as many evaluations, has not (it
    needs 5 to 30 times as many here); both approach the same fixed point."""
    func, host_func, z0 = _slow_problem(to_xp, kind, seed)
    z, _, info = newton_krylov(func, z0, max_iter=GENEROUS_MAX_ITER, tol=1e-6)
    assert_solution_stats(z, info, host_func, 1e-6, "abs")
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        _, _, info_and = anderson_solver(func, z0, max_iter=2 * info["nfe"], tol=1e-6)
    assert info_and["nfe"] == 2 * info["nfe"]
    # The fixed point from a tight Anderson solve on the host: ||z - z*|| <= 1e-6 / 0.01.
    z_star, _, _ = anderson_solver(host_func, np.zeros(z0.shape), max_iter=20000, tol=1e-12)
    np.testing.assert_allclose(host(z), z_star, atol=1e-6 / 0.01)


@given(data=st.data())
def test_same_fixed_point_as_anderson(xp, xp_device, check_array, data):
    m = data.draw(tanh_maps(xp, xp_device, dim=st.integers(1, 8)), label="map")
    stop_mode = data.draw(st.sampled_from(STOP_MODES), label="stop_mode")
    func = counted(m.bind())
    z, trajectory, info = newton_krylov(func, m.z0, max_iter=GENEROUS_MAX_ITER, tol=1e-9,
                                        stop_mode=stop_mode)
    check_raw(check_array, z, shape=m.z0.shape, dtype=xp.float64)
    check_info(info, check_array, xp, m.z0.shape[0])
    assert trajectory == [] and info["nfe"] == func.calls
    assert_solution_stats(z, info, host_map(m), 1e-9, stop_mode)
    # Anderson's answer, on the host (float64, NumPy: cheap even at tight tolerances).
    z_and, _, _ = anderson_solver(host_map(m), host(m.z0), max_iter=GENEROUS_MAX_ITER,
                                  tol=1e-11)
    np.testing.assert_allclose(host(z), z_and, atol=2e-9 / (1 - m.contraction) + 1e-9)


@given(data=st.data())
def test_linear_maps_reach_the_exact_fixed_point(xp, xp_device, data):
    m = data.draw(linear_maps(xp, xp_device, dim=st.integers(1, 8)), label="map")
    z, _, info = newton_krylov(m.bind(), m.z0, max_iter=GENEROUS_MAX_ITER, tol=1e-9)
    abs_res = assert_solution_stats(z, info, host_map(m), 1e-9, "abs")
    error = np.linalg.norm(host(z) - exact_fixed_point(m), axis=1)
    assert np.all(error <= abs_res / (1 - m.contraction) * (1 + 1e-6) + 1e-12)


def test_float32_stays_float32(xp, to_xp, check_array):
    func, z0, _ = row_problem(lambda a: to_xp(a, "float32"), batch=3, norm=0.9)
    z, trajectory, info = newton_krylov(func, z0, max_iter=100, tol=1e-4, indexing=[1, 2])
    check_raw(check_array, z, shape=z0.shape, dtype=xp.float32)
    check_info(info, check_array, xp, 3, dtype=xp.float32)
    assert np.all(host(info["converged"]))
    for t in trajectory:
        check_raw(check_array, t, shape=z0.shape, dtype=xp.float32)


# --- the statistics contract ----------------------------------------------------------------


def test_converged_sample_is_frozen(xp, to_xp):
    func, z0, _ = row_problem(to_xp, batch=4, fixed_rows=(1,))
    z, _, info = newton_krylov(func, z0, max_iter=100, tol=1e-10)
    assert host(info["nstep"])[1] == 1 and np.all(host(z)[1] == 0.0)
    assert np.all(host(info["abs_trace"])[1] == 0.0) and np.all(host(info["converged"]))
    assert_trace_consistent(info, "abs")


def test_tuple_states(xp, to_xp, check_array):
    func, z0, host_func = two_state_problem(to_xp, batch=3)
    z, trajectory, info = newton_krylov(func, z0, max_iter=100, tol=1e-9, indexing=[2, 1])
    check_state(check_array, z, z0)
    assert len(trajectory) == 2
    for t in trajectory:
        check_state(check_array, t, z0)
    z_host = tuple(host(a) for a in z)
    new = host_func(*z_host)
    residual = np.sqrt(sum(np.sum((n - a).reshape(3, -1) ** 2, axis=1)
                           for n, a in zip(new, z_host)))
    assert np.all(residual <= 1e-9) and np.all(host(info["converged"]))


def test_indexing_returns_the_requested_iterations(xp, to_xp):
    """Entry j is the best state after ``indexing[j]`` Newton iterations (= the result of a
    solve with that max_iter); past an early stop it is the final state."""
    func, z0, _ = row_problem(to_xp, batch=3, norm=0.95)
    z, trajectory, info = newton_krylov(func, z0, max_iter=50, tol=1e-12,
                                        indexing=[3, 1, 2, 3, 50])
    assert info["abs_trace"].shape[1] < 50
    for k, t in zip([3, 1, 2, 3], trajectory):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            expected, _, _ = newton_krylov(func, z0, max_iter=k, tol=1e-12)
        np.testing.assert_array_equal(host(t), host(expected), err_msg=f"iteration {k}")
    np.testing.assert_array_equal(host(trajectory[-1]), host(z))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("call", [1, 3, 8])
def test_nonfinite_sample_is_flagged_and_isolated(call, xp, to_xp):
    """NaN for sample 2 at one call (the first: x0; later ones: inside a difference product):
    the sample is flagged, keeps a finite iterate and is not converged; the others converge
    as without it."""
    info = assert_nonfinite_sample_isolated(
        newton_krylov, to_xp, xp, call, rtol=1e-10, atol=1e-12, max_iter=100, tol=1e-10)
    assert_trace_consistent(info, "abs")


@pytest.mark.parametrize("max_iter", [0, 1, 2])
def test_tiny_max_iter(max_iter, xp, to_xp):
    assert_tiny_max_iter(newton_krylov, to_xp, max_iter)


@pytest.mark.parametrize("converge", [True, False], ids=["converging", "max_iter"])
def test_host_syncs_bounded_by_evaluations(converge, xp, to_xp, sync_calls):
    """At most one host read per evaluation of f, plus one per Newton iteration and a few at
    the end."""
    func, z0, _ = row_problem(to_xp, batch=4, norm=0.95, fixed_rows=(2,))
    if not converge:
        func = lambda z: z + 1.0  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, _, info = newton_krylov(func, z0, max_iter=10, tol=1e-9)
    assert np.all(host(info["converged"])) == converge
    assert len(sync_calls) <= info["nfe"] + info["abs_trace"].shape[1] + 3


def test_inputs_are_not_modified(xp, to_xp):
    func, z0, captured = row_problem(to_xp, batch=3)
    before = [host(a).copy() for a in (z0, *captured.values())]
    newton_krylov(func, z0, max_iter=20, tol=1e-8, indexing=[1, 3])
    for a, b in zip((z0, *captured.values()), before):
        np.testing.assert_array_equal(host(a), b)


def test_registered_and_follows_the_contract(xp, to_xp, check_array):
    assert get_solver("newton_krylov") is newton_krylov
    func, z0, _ = row_problem(to_xp, batch=2)
    z, trajectory, info = get_solver("newton_krylov")(func, z0, max_iter=30, tol=1e-6,
                                                      stop_mode="rel", indexing=[3, 1])
    check_raw(check_array, z, shape=z0.shape, dtype=xp.float64)
    assert len(trajectory) == 2
    check_info(info, check_array, xp, 2)


# --- line search and arguments --------------------------------------------------------------


def test_line_search_rescues_newton_on_arctan(xp, to_xp):
    """g(z) = -atan(z - c), c the same in every entry of a sample: full Newton steps diverge
    from |z0 - c| > 1.39; the backtracking line search converges."""
    c = to_xp(np.array([[0.5], [-1.0], [2.0], [0.0]]) * np.ones((1, 3)))
    z0 = to_xp(np.full((4, 3), 4.0))

    def func(z):
        return z - xp.atan(z - c)

    z, _, info = newton_krylov(func, z0, max_iter=60, tol=1e-10)
    np.testing.assert_allclose(host(z), host(c), atol=1e-9)
    with pytest.warns(ConvergenceWarning):
        _, _, plain = newton_krylov(func, z0, max_iter=60, tol=1e-10, line_search=False)
    assert not np.any(host(plain["converged"]))


@pytest.mark.parametrize("kw, argument", [
    ({"restart": 0}, "restart"), ({"inner_tol": 0.0}, "inner_tol"),
    ({"inner_tol": 1.0}, "inner_tol"), ({"inner_max_iter": 0}, "inner_max_iter"),
    ({"inner_max_iter": 2.5}, "inner_max_iter"), ({"fd_eps": 0.0}, "fd_eps"),
    ({"fd_eps": "1e-8"}, "fd_eps"), ({"tol": -1.0}, "tol"), ({"max_iter": -2}, "max_iter"),
    ({"stop_mode": "max"}, "stop_mode"), ({"indexing": [0]}, "indexing"),
])
def test_bad_arguments_raise_value_error(kw, argument, xp, to_xp):
    calls = counted(lambda z: 0.5 * z)
    with pytest.raises(ValueError, match=argument):
        newton_krylov(calls, to_xp(np.zeros((2, 3))), **kw)
    assert calls.calls == 0


def test_line_search_must_be_a_bool(xp, to_xp):
    with pytest.raises(TypeError, match="line_search"):
        newton_krylov(lambda z: z, to_xp(np.zeros((1, 2))), line_search="yes")
