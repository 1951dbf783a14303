"""``b_solver='gmres'``: the IFT adjoint solved by batched GMRES on ``(I - J^T) u = g`` gives
the gradients of ``'direct'`` and of finite differences, through ``npdeq.fixed_point`` and
the DEQ cores; its statistics, warnings and arguments. Also IFT gradients behind the new
forward solvers (``newton_krylov``; ``ode`` is in tests/solver/test_solver_ode.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.core import get_deq
from npdeq.grad import adjoint_solve, fixed_point, implicit_grad
from npdeq.solver import SolverStat
from npdeq.testing import check_grads

from deq_problems import MLPProblem, TwoStateProblem

TIGHT = {"tol": 1e-12, "max_iter": 400}
# A backward solve's statistics: the solver's, which samples fell back to GMRES, and which
# derivative order the solve serves.
INFO_KEYS = {"abs_lowest", "rel_lowest", "abs_trace", "rel_trace", "nstep", "sradius", "fallback",
             "converged", "nonfinite", "nfe", "order"}


def _leaves(arrays, names):
    return {k: npdeq.Tensor(arrays[k], requires_grad=True) for k in names}


def _gradients(prob, b_solver, b_kwargs, solver="anderson"):
    p = _leaves(prob.params, prob.names)
    z, _ = fixed_point(prob.func(*[p[k] for k in prob.names]), prob.z0, solver=solver,
                       solver_kwargs=TIGHT, b_solver=b_solver, b_solver_kwargs=b_kwargs)
    (z * z).sum().backward()
    return {k: p[k].grad.numpy() for k in prob.names}


def _rule_gradients(prob, z_star, b_solver, b_kwargs, stats):
    """The IFT rule's gradients at an already solved z* (one forward solve serves both
    backward solvers)."""
    p = _leaves(prob.params, prob.names)
    (z,) = implicit_grad(prob.func(*[p[k] for k in prob.names]), (z_star,), b_solver,
                         b_kwargs, writer=stats.append)
    (z * z).sum().backward()
    return {k: p[k].grad.numpy() for k in prob.names}


@pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")
@given(seed=st.integers(0, 2**16), stop_mode=st.sampled_from(("abs", "rel")),
       restart=st.sampled_from((2, 20)))
def test_gmres_matches_direct(xp, to_xp, check_array, seed, stop_mode, restart):
    prob = MLPProblem(to_xp, seed)
    with npdeq.no_grad():
        z_star, _ = fixed_point(prob.func(*[prob.params[k] for k in prob.names]), prob.z0,
                                solver="broyden", solver_kwargs=TIGHT, grad=None)
    stats = []
    reference = _rule_gradients(prob, z_star.data, "direct", None, stats)
    got = _rule_gradients(prob, z_star.data, "gmres",
                          dict(TIGHT, stop_mode=stop_mode, restart=restart), stats)
    for k in prob.names:
        np.testing.assert_allclose(got[k], reference[k], rtol=1e-8, atol=1e-11, err_msg=k)
    info = stats[1]
    assert isinstance(info, SolverStat) and set(info) == INFO_KEYS
    assert type(info["nfe"]) is int and 1 <= info["nfe"] <= TIGHT["max_iter"]
    batch = prob.z0.shape[0]
    for key in ("abs_lowest", "rel_lowest", "sradius"):
        check_array(npdeq.Tensor(info[key]), shape=(batch,), dtype=xp.float64)
    for key in ("converged", "nonfinite"):
        check_array(npdeq.Tensor(info[key]), shape=(batch,), dtype=xp.bool)
    assert bool(xp.all(info["converged"]))


@pytest.mark.parametrize("seed", [0, 1])
def test_gmres_ift_matches_finite_differences(xp, to_xp, seed):
    prob = MLPProblem(to_xp, seed, batch=2, dim=4, in_dim=3)

    def solved(*params):
        z, _ = fixed_point(prob.func(*params), prob.z0, solver_kwargs=TIGHT, b_solver="gmres",
                           b_solver_kwargs=TIGHT)
        return z

    check_grads(solved, *[prob.params[k] for k in prob.names], rtol=1e-5, atol=1e-8,
                seed=seed)


def test_two_state_gmres_matches_finite_differences(xp, to_xp):
    prob = TwoStateProblem(to_xp, 3)

    def solved(*params):
        (z, y), _ = fixed_point(prob.func(*params), prob.z0, solver_kwargs=TIGHT,
                                b_solver="gmres", b_solver_kwargs=TIGHT)
        return npdeq.concat([npdeq.flatten(z, 1), npdeq.flatten(y, 1)], axis=1)

    check_grads(solved, *[prob.params[k] for k in prob.names], rtol=1e-5, atol=1e-8, seed=3)


def test_newton_krylov_forward_with_gmres_backward(xp, to_xp):
    prob = MLPProblem(to_xp, 5)
    reference = _gradients(prob, "direct", None)
    got = _gradients(prob, "gmres", TIGHT, solver="newton_krylov")
    for k in prob.names:
        np.testing.assert_allclose(got[k], reference[k], rtol=1e-7, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_deq_cores_accept_gmres(xp, to_xp, core):
    """get_deq(b_solver='gmres') builds, passes b_tol/b_max_iter/b_stop_mode on, and trains
    to the gradients of b_solver='direct'."""
    prob = MLPProblem(to_xp, 2)
    grads, stats = {}, {}
    for b_solver in ("direct", "gmres"):
        b_args = {"b_tol": 1e-12, "b_max_iter": 7, "b_stop_mode": "rel"}
        deq = get_deq(core=core, f_solver="anderson", f_max_iter=200, f_tol=1e-12, ift=True,
                      b_solver=b_solver, **(b_args if b_solver == "gmres" else {}))
        p = _leaves(prob.params, prob.names)
        z_out, info = deq(prob.func(*[p[k] for k in prob.names]), prob.z0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            (z_out[-1] * z_out[-1]).sum().backward()
        grads[b_solver] = {k: p[k].grad.numpy() for k in prob.names}
        stats[b_solver] = info["backward"]
    # b_max_iter=7 reached the solver: D = 5 products and the true residual fit in 7.
    assert stats["gmres"]["nfe"] <= 7 and bool(xp.all(stats["gmres"]["converged"]))
    for k in prob.names:
        np.testing.assert_allclose(grads["gmres"][k], grads["direct"][k], rtol=1e-8,
                                   atol=1e-11)


def test_gmres_solves_a_non_contractive_adjoint(xp, to_xp):
    """J = 1.5 I at z*: u = J^T u + g diverges under fixed-point iteration, but I - J^T is
    nonsingular and GMRES finds u = -2 g."""
    a = npdeq.Tensor(to_xp(np.array([1.5])), requires_grad=True)
    z_star = to_xp(np.zeros((2, 3)))
    stats = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", npdeq.ConvergenceWarning)
        (z,) = implicit_grad(lambda z: z * a + 1.0, (z_star,), "gmres", TIGHT,
                             writer=stats.append)
        (z * npdeq.Tensor(to_xp(np.ones((2, 3))))).sum().backward()
    assert bool(xp.all(stats[0]["converged"]))
    # dL/da = u . z* = 0 here; the check is that the solve converged without warnings.
    np.testing.assert_allclose(a.grad.numpy(), [0.0], atol=1e-12)


def test_adjoint_solution_and_statistics(xp, to_xp, check_array):
    J = np.array([[0.5, 0.2, 0.0], [0.0, 0.8, -0.3], [0.1, 0.0, 0.6]])
    g_host = np.random.default_rng(0).standard_normal((4, 3))
    g_host[2] = 0.0
    Jx = to_xp(J)
    u, info = adjoint_solve(lambda v: v @ Jx, to_xp(g_host), "gmres", {"tol": 1e-12})
    check_array(npdeq.Tensor(u), shape=(4, 3), dtype=xp.float64)
    expected = g_host @ np.linalg.inv(np.eye(3) - J)
    np.testing.assert_allclose(npdeq.backend.to_numpy(u), expected, rtol=1e-10, atol=1e-12)
    assert np.all(npdeq.backend.to_numpy(u)[2] == 0.0)
    residual = np.linalg.norm(g_host - npdeq.backend.to_numpy(u) @ (np.eye(3) - J), axis=1)
    np.testing.assert_allclose(npdeq.backend.to_numpy(info["abs_lowest"]), residual,
                               rtol=1e-6, atol=1e-15)
    assert info["nfe"] == 4  # D products and the true residual


def test_missed_tolerance_warns_once_and_is_flagged(xp, to_xp):
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((12, 12)))
    J = to_xp(0.99 * q)
    stats = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adjoint_solve(lambda v: v @ J, to_xp(np.ones((2, 12))), "gmres",
                      {"tol": 1e-12, "max_iter": 4}, writer=stats.append)
    relevant = [w for w in caught if issubclass(w.category, npdeq.ConvergenceWarning)]
    assert len(relevant) == 1 and "did not reach" in str(relevant[0].message)
    assert not bool(xp.any(stats[0]["converged"])) and stats[0]["nfe"] <= 4


def test_singular_adjoint_is_flagged_not_nan(xp, to_xp):
    """J = I: I - J^T = 0; the solve returns zeros (finite) and says it did not converge."""
    with pytest.warns(npdeq.ConvergenceWarning):
        u, info = adjoint_solve(lambda v: v, to_xp(np.ones((2, 3))), "gmres", {"max_iter": 5})
    assert np.all(np.isfinite(npdeq.backend.to_numpy(u)))
    assert not bool(xp.any(info["converged"]))


@pytest.mark.parametrize("kwargs, match", [
    ({"m": 5}, "takes tol, max_iter, stop_mode and restart"), ({"tol": float("nan")}, "tol"),
    ({"tol": -1.0}, "tol"), ({"stop_mode": "max"}, "stop_mode"), ({"restart": 0}, "restart"),
    ({"max_iter": -1}, "max_iter"),
])
def test_bad_gmres_arguments(xp, to_xp, kwargs, match):
    with pytest.raises(ValueError, match=match):
        adjoint_solve(lambda v: v * 0.5, to_xp(np.ones((1, 2))), "gmres", kwargs)


def test_fixed_point_rejects_an_unknown_backward_solver_before_solving(xp, to_xp):
    calls = []

    def func(z):
        calls.append(1)
        return z * 0.5

    with pytest.raises(ValueError, match="unknown solver 'gmress'"):
        fixed_point(func, to_xp(np.zeros((1, 2))), b_solver="gmress")
    assert calls == []


def test_the_cores_take_gmres_as_the_adjoint_solver_not_from_the_solver_registry(monkeypatch):
    from npdeq.solver import registry
    monkeypatch.delitem(registry._SOLVERS, "gmres")
    deq = npdeq.get_deq(core="indexing", ift=True, b_solver="gmres")
    assert deq.b_solver == "gmres"
    with pytest.raises(ValueError, match="unknown solver 'gmress'"):
        npdeq.get_deq(b_solver="gmress")
