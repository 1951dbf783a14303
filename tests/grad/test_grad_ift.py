"""IFT rule: closed forms, finite differences, backward solvers, errors and warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.grad import backward_factory, fixed_point, implicit_grad
from npdeq.testing import check_grads

from deq_problems import MLPProblem, TwoStateProblem, contractive

TIGHT = {"tol": 1e-12, "max_iter": 400}


def _leaves(arrays, names):
    return {k: npdeq.Tensor(arrays[k], requires_grad=True) for k in names}


def test_linear_map_matches_closed_form(xp, to_xp, check_array):
    """z = A z + B x + c: z* = (I - A)^-1 (B x + c) and every gradient has a closed form."""
    rng = np.random.default_rng(1)
    d, n, batch = 5, 3, 4
    A0, B0 = contractive(rng, d, d, 0.8), rng.standard_normal((d, n))
    c0, x0, G = rng.standard_normal(d), rng.standard_normal((batch, n)), rng.standard_normal((batch, d))
    p = _leaves({"A": to_xp(A0), "B": to_xp(B0), "c": to_xp(c0), "x": to_xp(x0)}, "ABcx")
    z, _ = fixed_point(lambda z: z @ p["A"].T + p["x"] @ p["B"].T + p["c"],
                       to_xp(np.zeros((batch, d))), solver_kwargs=TIGHT, b_solver_kwargs=TIGHT)
    (z * npdeq.Tensor(to_xp(G))).sum().backward()

    M = np.linalg.inv(np.eye(d) - A0)
    z_star = (x0 @ B0.T + c0) @ M.T
    U = G @ M  # per sample u = (I - A^T)^-1 g
    expected = {"A": U.T @ z_star, "B": U.T @ x0, "c": U.sum(0), "x": U @ B0}
    check_array(z, shape=(batch, d))
    np.testing.assert_allclose(z.numpy(), z_star, rtol=1e-10, atol=1e-12)
    for name, value in expected.items():
        check_array(p[name].grad, shape=value.shape)
        np.testing.assert_allclose(p[name].grad.numpy(), value, rtol=1e-8, atol=1e-12)


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), dim=st.integers(1, 6),
       in_dim=st.integers(1, 4), norm=st.floats(0.1, 0.9))
def test_mlp_ift_matches_finite_differences(xp, to_xp, seed, batch, dim, in_dim, norm):
    prob = MLPProblem(to_xp, seed, batch, dim, in_dim, norm)

    def solved(*params):
        z, _ = fixed_point(prob.func(*params), prob.z0, solver_kwargs=TIGHT,
                           b_solver_kwargs=TIGHT)
        return z

    check_grads(solved, *[prob.params[k] for k in prob.names], rtol=1e-5, atol=1e-8,
                seed=seed)


@given(seed=st.integers(0, 2**16))
def test_two_state_ift_matches_finite_differences(xp, to_xp, seed):
    prob = TwoStateProblem(to_xp, seed)

    def solved(*params):
        (z, y), _ = fixed_point(prob.func(*params), prob.z0, solver_kwargs=TIGHT,
                                b_solver_kwargs=TIGHT)
        return npdeq.concat([npdeq.flatten(z, 1), npdeq.flatten(y, 1)], axis=1)

    check_grads(solved, *[prob.params[k] for k in prob.names], rtol=1e-5, atol=1e-8,
                seed=seed)


def _gradients(prob, b_solver, b_kwargs):
    p = _leaves(prob.params, prob.names)
    z, _ = fixed_point(prob.func(*[p[k] for k in prob.names]), prob.z0, solver_kwargs=TIGHT,
                       b_solver=b_solver, b_solver_kwargs=b_kwargs)
    (z * z).sum().backward()
    return {k: p[k].grad.numpy() for k in prob.names}


@given(seed=st.integers(0, 2**16))
def test_backward_solvers_agree(xp, to_xp, seed):
    prob = MLPProblem(to_xp, seed)
    reference = _gradients(prob, "direct", None)
    for b_solver, kwargs in [("fixed_point_iter", TIGHT), ("anderson", dict(TIGHT, m=4)),
                             ("broyden", TIGHT)]:
        got = _gradients(prob, b_solver, kwargs)
        for k in prob.names:
            np.testing.assert_allclose(got[k], reference[k], rtol=1e-7, atol=1e-10,
                                       err_msg=f"{b_solver}: {k}")


def test_every_parameter_gets_a_gradient(xp, to_xp):
    prob = TwoStateProblem(to_xp)
    p = _leaves(prob.params, prob.names)
    (z, y), _ = fixed_point(prob.func(*[p[k] for k in prob.names]), prob.z0)
    (z.sum() + y.sum()).backward()
    for k in prob.names:
        assert p[k].grad is not None, f"{k} got no gradient"
        assert float(np.abs(p[k].grad.numpy()).sum()) > 0, f"{k} got a zero gradient"


def test_backward_twice_with_retain_graph_then_freed(xp, to_xp):
    prob = MLPProblem(to_xp)
    p = _leaves(prob.params, prob.names)
    z, _ = fixed_point(prob.func(*[p[k] for k in prob.names]), prob.z0, solver_kwargs=TIGHT,
                       b_solver_kwargs=TIGHT)
    loss = (z * z).sum()
    loss.backward(retain_graph=True)
    first = p["W"].grad.numpy()
    loss.backward()
    np.testing.assert_allclose(p["W"].grad.numpy(), 2 * first, rtol=1e-10)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_nothing_requires_grad_gives_detached_result(xp, to_xp):
    prob = MLPProblem(to_xp)
    z, _ = fixed_point(prob.func(*[prob.params[k] for k in prob.names]), prob.z0)
    assert not z.requires_grad


@pytest.mark.parametrize("fallback", ["gmres", None])
def test_non_contractive_backward_falls_back_or_warns_once_and_flags(xp, to_xp, fallback):
    """A map expanding at z* (J = 1.5 I): the adjoint iteration diverges; no hang, no zeros.
    By default GMRES solves the samples again (u = g / (1 - 1.5) = -2 g, found here through
    the gradient of the injection b); without the fallback one warning and a flag."""
    a = npdeq.Tensor(to_xp(np.array([1.5])), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.zeros((2, 3))), requires_grad=True)
    z_star = to_xp(np.zeros((2, 3)))  # f(0) = 0 is a fixed point of z -> 1.5 z + 0
    stats = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (z,) = implicit_grad(lambda z: z * a + b, (z_star,), "fixed_point_iter",
                             {"max_iter": 30, "tol": 1e-8, "fallback": fallback},
                             writer=stats.append)
        (z + 1.0).sum().backward()
    relevant = [w for w in caught if issubclass(w.category, npdeq.ConvergenceWarning)]
    if fallback is None:
        assert len(relevant) == 1
        assert not bool(xp.any(stats[0]["converged"]))
        assert a.grad is not None
    else:
        assert not relevant
        assert bool(xp.all(stats[0]["converged"])) and bool(xp.all(stats[0]["fallback"]))
        np.testing.assert_allclose(npdeq.backend.to_numpy(b.grad.data), -2.0 * np.ones((2, 3)),
                                   rtol=1e-8)


def test_direct_solver_singular_system_is_flagged(xp, to_xp):
    a = npdeq.Tensor(to_xp(np.array([1.0])), requires_grad=True)  # J = I: I - J^T singular
    stats = []
    with pytest.warns(npdeq.ConvergenceWarning):
        (z,) = implicit_grad(lambda z: z * a + 0.0, (to_xp(np.ones((2, 2))),), "direct",
                             writer=stats.append)
        z.sum().backward()
    assert not bool(xp.all(stats[0]["converged"]))


def test_backward_factory_ift_functor(xp, to_xp, check_array):
    prob = MLPProblem(to_xp)
    p = _leaves(prob.params, prob.names)
    func = prob.func(*[p[k] for k in prob.names])
    z_star, _ = fixed_point(func, prob.z0, solver_kwargs=TIGHT, grad=None)
    seen = []
    functor = backward_factory("ift", hook_ift=True, b_solver="anderson",
                               b_solver_kwargs=dict(TIGHT, m=3))
    out = functor(None, func, z_star.data, writer=seen.append)
    assert isinstance(out, list) and len(out) == 1
    check_array(out[0], shape=z_star.shape)
    (out[0] * out[0]).sum().backward()
    assert len(seen) == 1 and "converged" in seen[0]
    reference = _gradients(prob, "direct", None)
    np.testing.assert_allclose(p["W"].grad.numpy(), reference["W"], rtol=1e-7)


def test_backward_factory_rejects_bad_grad_type():
    with pytest.raises(ValueError, match="grad_type"):
        backward_factory(0)
    with pytest.raises(ValueError, match="grad_type"):
        backward_factory("phantom")


def test_fixed_point_rejects_bad_grad(xp, to_xp):
    with pytest.raises(ValueError, match="grad"):
        fixed_point(lambda z: z, to_xp(np.zeros((1, 1))), grad="exact")


def test_func_returning_wrong_structure_is_an_error(xp, to_xp):
    w = npdeq.Tensor(to_xp(np.ones(2)), requires_grad=True)
    with pytest.raises(ValueError, match="state"):
        implicit_grad(lambda z, y: (z * w,), (to_xp(np.zeros((1, 2))), to_xp(np.zeros((1, 3)))))
    with pytest.raises(ValueError, match="shape"):
        implicit_grad(lambda z: z[:, :1] * w[:1], (to_xp(np.zeros((1, 2))),))


def _peak_training_step_bytes(f_max_iter):
    import tracemalloc

    rng = np.random.default_rng(0)
    W = npdeq.Tensor(contractive(rng, 64, 64, 0.9), requires_grad=True)
    x = npdeq.Tensor(rng.standard_normal((32, 64)))
    tracemalloc.start()
    try:
        # tol far below reach: the solver runs all f_max_iter iterations.
        z, info = fixed_point(lambda z: npdeq.tanh(z @ W.T + x), np.zeros((32, 64)),
                           solver="fixed_point_iter",
                           solver_kwargs={"max_iter": f_max_iter, "tol": 1e-300},
                           b_solver_kwargs={"max_iter": 20})
        (z * z).sum().backward()
        return tracemalloc.get_traced_memory()[1], info["abs_trace"].nbytes

    finally:
        tracemalloc.stop()


def test_ift_training_step_memory_does_not_grow_with_forward_iterations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
        (short, short_trace), (long, long_trace) = (_peak_training_step_bytes(10),
                                                    _peak_training_step_bytes(100))
    # The forward statistics hold B residuals per iteration and kind (abs/rel traces, kept as
    # a list and then stacked: at most 4 copies); that is what the solver returns, not graph
    # memory. Everything else must stay flat.
    statistics = 4 * (long_trace - short_trace)
    assert long <= 1.05 * short + statistics, (short, long, statistics)
