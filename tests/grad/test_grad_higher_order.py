"""Derivatives of every order through the gradient rules: IFT and PhantomGrad under
``create_graph=True``, against closed forms, finite differences and hand-unrolled chains."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import npdeq
from npdeq.core import get_deq
from npdeq.grad import fixed_point, phantom_grad
from npdeq.testing import check_grads

from deq_problems import MLPProblem, TwoStateProblem, contractive

TIGHT = {"tol": 1e-12, "max_iter": 400}
B_SOLVERS = ["fixed_point_iter", "anderson", "gmres", "direct"]  # the IFT's backward solvers


def _leaves(arrays, names):
    return {k: npdeq.Tensor(arrays[k], requires_grad=True) for k in names}


def _b_kwargs(b_solver):
    return {} if b_solver == "direct" else dict(TIGHT)


def test_linear_map_second_derivative_matches_closed_form(xp, to_xp):
    """z = A z + b per sample: z* = M b with M = (I - A)^-1, dz*[V] = M V z*, and
    d2z*[V, W] = M V M W z* + M W M V z*, so the mixed second derivative of
    L = sum <G, z*> + |z*|^2 / 2 along V, W has a closed form."""
    rng = np.random.default_rng(4)
    d, batch = 4, 3
    A0, b0 = contractive(rng, d, d, 0.7), rng.standard_normal((batch, d))
    G, V, W = rng.standard_normal((batch, d)), rng.standard_normal((d, d)), rng.standard_normal((d, d))
    A = npdeq.Tensor(to_xp(A0), requires_grad=True)
    z, _ = fixed_point(lambda z: z @ A.T + to_xp(b0), to_xp(np.zeros((batch, d))),
                       solver_kwargs=TIGHT, b_solver_kwargs=TIGHT)
    loss = (z * to_xp(G)).sum() + 0.5 * (z * z).sum()
    (g,) = npdeq.grad(loss, [A], create_graph=True)
    hv = npdeq.grad((g * to_xp(V)).sum(), A).numpy()

    M = np.linalg.inv(np.eye(d) - A0)
    Z = b0 @ M.T                                   # rows z*_s
    dV, dW = Z @ V.T @ M.T, Z @ W.T @ M.T          # rows M V z*_s
    d2 = Z @ W.T @ M.T @ V.T @ M.T + Z @ V.T @ M.T @ W.T @ M.T
    expected = np.sum((G + Z) * d2) + np.sum(dV * dW)
    np.testing.assert_allclose(np.sum(hv * W), expected, rtol=1e-9)


def _check_ift_second_order(prob, b_solver, seed):
    def solved(*params):
        z, _ = fixed_point(prob.func(*params), prob.z0, solver_kwargs=TIGHT,
                           b_solver=b_solver, b_solver_kwargs=_b_kwargs(b_solver))
        return z * z

    check_grads(solved, *[prob.params[k] for k in prob.names], modes=("rev", "fwd"), order=2,
                rtol=1e-6, atol=1e-8, seed=seed)


@settings(max_examples=3)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 3), dim=st.integers(1, 5))
def test_ift_second_derivatives_match_finite_differences(xp, to_xp, seed, batch, dim):
    """order=2 differentiates the recorded IFT gradient (an HVP per direction) and compares
    it with central differences of the IFT gradient; 'fwd' checks JVPs through z* too."""
    _check_ift_second_order(MLPProblem(to_xp, seed, batch, dim, 3, 0.8), "fixed_point_iter",
                            seed)


@pytest.mark.parametrize("b_solver", B_SOLVERS[1:])
def test_every_backward_solver_gives_second_derivatives(b_solver):
    _check_ift_second_order(MLPProblem(np.asarray, 11, 2, 4, 3, 0.8), b_solver, 11)


def test_tuple_state_second_derivatives(xp, to_xp):
    prob = TwoStateProblem(to_xp, seed=2)

    def solved(*params):
        (z, y), _ = fixed_point(prob.func(*params), prob.z0, solver_kwargs=TIGHT,
                                b_solver_kwargs=TIGHT)
        return (z ** 3).sum() + (y * y).sum() * z.sum()

    check_grads(solved, *[prob.params[k] for k in prob.names], order=2, rtol=1e-6, atol=1e-8)


def test_third_derivative_through_ift():
    """Every order nests: the derivative of an HVP equals central differences of the HVP."""
    prob = MLPProblem(np.asarray, seed=5, batch=2, dim=3, norm=0.7)

    def solved(*params):
        z, _ = fixed_point(prob.func(*params), prob.z0, solver_kwargs=TIGHT,
                           b_solver_kwargs=TIGHT)
        return (z ** 3).sum()

    check_grads(solved, *[prob.params[k] for k in prob.names], order=3, rtol=1e-5, atol=1e-7)


def test_backward_create_graph_then_a_second_backward(xp, to_xp):
    """loss.backward(create_graph=True) leaves a recorded .grad, as in PyTorch; a second
    backward through it gives the same HVP as grad-of-grad, and statistics for each order."""
    prob = MLPProblem(to_xp, seed=1)
    p = _leaves(prob.params, prob.names)
    v = to_xp(np.random.default_rng(0).standard_normal(prob.params["W"].shape))

    def hvp_by(kind):
        z, info = fixed_point(prob.func(*[p[k] for k in prob.names]), prob.z0,
                              solver_kwargs=TIGHT, b_solver_kwargs=TIGHT)
        loss = (z * z * z).sum()
        if kind == "backward":
            p["W"].grad = None
            loss.backward(create_graph=True)
            gW = p["W"].grad
        else:
            gW = npdeq.grad(loss, p["W"], create_graph=True)
        assert gW.requires_grad and info["backward"]["order"] == 1
        return npdeq.grad((gW * v).sum(), p["W"]).numpy(), info

    (h1, info1), (h2, _) = hvp_by("backward"), hvp_by("grad")
    np.testing.assert_allclose(h1, h2, rtol=1e-12, atol=1e-14)
    second = info1["backward_higher"][2]
    assert second["order"] == 2 and bool(xp.all(second["converged"]))
    assert int(npdeq.backend.to_numpy(second["nstep"]).max()) > 1


def test_first_order_backward_is_not_recorded(xp, to_xp):
    """Without create_graph nothing of the backward pass is recorded (no second solve)."""
    prob = MLPProblem(to_xp)
    p = _leaves(prob.params, prob.names)
    z, info = fixed_point(prob.func(*[p[k] for k in prob.names]), prob.z0, solver_kwargs=TIGHT)
    gW = npdeq.grad(z.sum(), p["W"])
    assert not gW.requires_grad and "backward_higher" not in info


@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_cores_second_derivatives_match_finite_differences(core):
    prob = MLPProblem(np.asarray, seed=3, batch=2, dim=4, norm=0.8)
    deq = get_deq(core=core, f_solver="anderson", f_max_iter=200, f_tol=1e-13, ift=True,
                  b_solver="anderson", b_tol=1e-13, b_max_iter=200)

    def solved(*params):
        z_out, _ = deq(prob.func(*params), prob.z0)
        return z_out[-1] ** 2

    check_grads(solved, *[prob.params[k] for k in prob.names], order=2, rtol=1e-6, atol=1e-8)


def _hvp(loss_of, params, direction):
    loss = loss_of(params)
    gs = npdeq.grad(loss, params, create_graph=True)
    inner = sum((g * d).sum() for g, d in zip(gs, direction))
    return [h.numpy() for h in npdeq.grad(inner, params)]


@pytest.mark.parametrize("memory", ["store", "recompute"])
@pytest.mark.parametrize("k, tau", [(1, 1.0), (4, 0.6)])
def test_phantom_second_derivatives_equal_the_hand_unrolled_chain(xp, to_xp, memory, k, tau):
    """PhantomGrad differentiates k damped steps from the detached z*: its HVP equals that
    of the same k steps written out on the tape (tuple state of two sizes)."""
    prob = TwoStateProblem(to_xp, seed=6)
    rng = np.random.default_rng(1)
    z_star, _ = fixed_point(prob.func(*[npdeq.Tensor(prob.params[k_]) for k_ in prob.names]),
                            prob.z0, solver_kwargs=TIGHT, grad=None)
    start = tuple(s.data for s in z_star)
    direction = [to_xp(rng.standard_normal(prob.params[n].shape)) for n in prob.names]

    def by_rule(ps):
        (z, y) = phantom_grad(prob.func(*ps), start, k=k, tau=tau, memory=memory)[-1]
        return (z ** 3).sum() + (y * z[:, :1, None]).sum()

    def by_hand(ps):
        f = prob.func(*ps)
        z, y = npdeq.Tensor(start[0]), npdeq.Tensor(start[1])
        for _ in range(k):
            fz, fy = f(z, y)
            z, y = tau * fz + (1 - tau) * z, tau * fy + (1 - tau) * y
        return (z ** 3).sum() + (y * z[:, :1, None]).sum()

    leaves = lambda: [npdeq.Tensor(prob.params[n], requires_grad=True) for n in prob.names]
    for got, want in zip(_hvp(by_rule, leaves(), direction), _hvp(by_hand, leaves(), direction)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_hvp_through_ift_does_not_store_the_forward_iterations():
    """The peak memory of a solve and an HVP does not grow with the forward iterations."""
    prob = MLPProblem(np.asarray, seed=0, batch=64, dim=128, in_dim=8, norm=0.9)
    v = np.random.default_rng(0).standard_normal(prob.params["W"].shape)

    def peak(iterations):
        p = _leaves(prob.params, prob.names)
        tracemalloc.start()
        z, _ = fixed_point(prob.func(*[p[k] for k in prob.names]), prob.z0,
                           solver="fixed_point_iter",
                           solver_kwargs={"tol": 0.0, "max_iter": iterations},
                           b_solver_kwargs={"tol": 1e-8, "max_iter": 200})
        g = npdeq.grad((z * z).sum(), p["W"], create_graph=True)
        npdeq.grad((g * v).sum(), p["W"])
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(10), peak(100)
    state_bytes = 64 * 128 * 8
    assert large < small + 4 * state_bytes, (small, large)
