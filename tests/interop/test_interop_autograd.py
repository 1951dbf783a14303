"""The HIPS autograd bridge: gradients against finite differences and against autograd
through an unrolled converged loop (array and tuple states, several parameters, two
equilibria in one loss), and termination with a warning on maps that do not converge."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")

import npdeq  # noqa: E402
from npdeq import ConvergenceWarning  # noqa: E402
from npdeq.interop.autograd import fixed_point  # noqa: E402
from npdeq.testing import check_vjp  # noqa: E402
from npdeq.testing.strategies import contractive_maps  # noqa: E402

TIGHT = {"tol": 1e-13, "max_iter": 300}
UNROLL = 200  # contraction <= 0.8: 0.8**200 ~ 4e-20


def mlp(z, W, U, b, x):
    return anp.tanh(anp.dot(z, W.T) + anp.dot(x, U.T) + b)


def two_state(z, W, V, x):
    a, c = z
    return anp.tanh(anp.dot(a, W.T) + 0.3 * anp.dot(c, V.T) + x), 0.5 * anp.sin(anp.dot(a, V))


def unrolled(f, z0, params, steps=UNROLL):
    z = z0
    for _ in range(steps):
        z = f(z, *params)
    return z


def _bridge(f, z0, **kw):
    return lambda *params: fixed_point(f, z0, *params, solver_kwargs=TIGHT,
                                       b_solver_kwargs=TIGHT, **kw)


def _project(state, cot):
    """``<cot, state>`` for a tuple state (traced, it is an autograd container: iterate)."""
    return sum(anp.sum(p * c) for p, c in zip(state, cot))


@given(m=contractive_maps(dim=st.integers(1, 5), contraction=st.floats(0.1, 0.8),
                          kind="tanh_mlp"), seed=st.integers(0, 2**16))
def test_array_state_matches_unrolled_and_finite_differences(m, seed):
    params = [m.params[k] for k in ("W", "U", "b", "x")]
    solve = _bridge(mlp, m.z0)
    z = solve(*params)
    assert isinstance(z, np.ndarray) and z.shape == m.z0.shape and z.dtype == np.float64
    np.testing.assert_allclose(z, m.reference_fixed_point(), atol=1e-11)
    cot = np.random.default_rng(seed).standard_normal(z.shape)
    argnums = tuple(range(len(params)))
    ours = autograd.grad(lambda *p: anp.sum(solve(*p) * cot), argnums)(*params)
    reference = autograd.grad(lambda *p: anp.sum(unrolled(mlp, m.z0, p) * cot),
                              argnums)(*params)
    for g, r, p in zip(ours, reference, params):
        assert g.shape == p.shape and g.dtype == np.float64
        np.testing.assert_allclose(g, r, rtol=1e-8, atol=1e-11)
    vjp, _ = autograd.make_vjp(lambda *p: solve(*p), argnums)(*params)
    check_vjp(solve, params, vjp, rtol=1e-6, atol=1e-9, seed=seed)


@pytest.mark.parametrize("b_solver", ["fixed_point_iter", "anderson", "direct"])
def test_tuple_state_matches_unrolled_and_finite_differences(b_solver):
    rng = np.random.default_rng(5)
    W = 0.5 * np.linalg.qr(rng.standard_normal((3, 3)))[0]
    V = 0.3 * np.linalg.qr(rng.standard_normal((3, 3)))[0]
    x = rng.standard_normal((2, 3))
    z0 = (np.zeros((2, 3)), np.zeros((2, 3)))
    solve = _bridge(two_state, z0, b_solver=b_solver)
    a, c = solve(W, V, x)
    assert a.shape == c.shape == (2, 3)
    cot = (rng.standard_normal((2, 3)), rng.standard_normal((2, 3)))
    loss = lambda *p: _project(solve(*p), cot)  # noqa: E731
    ours = autograd.grad(loss, (0, 1, 2))(W, V, x)
    reference = autograd.grad(lambda *p: _project(unrolled(two_state, z0, p), cot),
                              (0, 1, 2))(W, V, x)
    for g, r in zip(ours, reference):
        assert np.any(g != 0)  # a tuple state must never give silently zero gradients
        np.testing.assert_allclose(g, r, rtol=1e-8, atol=1e-11)
    flat = lambda *p: np.concatenate([s.ravel() for s in solve(*p)])  # noqa: E731
    vjp, _ = autograd.make_vjp(lambda *p: anp.concatenate([anp.ravel(s) for s in solve(*p)]),
                               (0, 1, 2))(W, V, x)
    check_vjp(flat, [W, V, x], vjp, rtol=1e-6, atol=1e-9, seed=2)


def test_loss_with_two_equilibria_and_container_params():
    rng = np.random.default_rng(1)
    W = 0.4 * np.linalg.qr(rng.standard_normal((4, 4)))[0]
    b = rng.standard_normal(4)
    f = lambda z, p: anp.tanh(anp.dot(W, z) * p[0] + p[1])  # noqa: E731

    def loss(scale, b):
        z1 = fixed_point(f, np.zeros(4), [scale, b], solver_kwargs=TIGHT,
                         b_solver_kwargs=TIGHT)
        z2 = fixed_point(f, z1, (scale, b + z1), solver_kwargs=TIGHT, b_solver_kwargs=TIGHT)
        return anp.sum(z1 * z2)

    def loss_unrolled(scale, b):
        z1 = unrolled(f, np.zeros(4), ([scale, b],))
        z2 = unrolled(f, np.zeros(4), ((scale, b + z1),))
        return anp.sum(z1 * z2)

    args = (0.9, b)
    ours = autograd.grad(loss, (0, 1))(*args)
    reference = autograd.grad(loss_unrolled, (0, 1))(*args)
    assert ours[0] != 0 and np.any(ours[1] != 0)
    for g, r in zip(ours, reference):
        np.testing.assert_allclose(g, r, rtol=1e-8, atol=1e-11)
    vjp, _ = autograd.make_vjp(loss, (0, 1))(np.float64(0.9), b)
    check_vjp(loss, [np.float64(0.9), b], vjp, rtol=1e-6, atol=1e-9)


def test_state_of_any_shape_is_one_system():
    # A 2-D field whose rows are coupled: no batch dimension is assumed.
    rng = np.random.default_rng(2)
    K = 0.2 * rng.standard_normal((5, 5)) / 5
    s = rng.standard_normal((5, 5))
    f = lambda z, K, s: anp.tanh(anp.dot(K, z) + anp.dot(z, K) + s)  # noqa: E731
    info = {}
    z = fixed_point(f, np.zeros((5, 5)), K, s, solver_kwargs=TIGHT, info=info)
    np.testing.assert_allclose(f(z, K, s), z, atol=1e-12)
    assert bool(np.all(info["forward"]["converged"]))
    g = autograd.grad(lambda K: anp.sum(fixed_point(f, np.zeros((5, 5)), K, s, info=info,
                                                    solver_kwargs=TIGHT,
                                                    b_solver_kwargs=TIGHT) ** 2))(K)
    r = autograd.grad(lambda K: anp.sum(unrolled(f, np.zeros((5, 5)), (K, s)) ** 2))(K)
    np.testing.assert_allclose(g, r, rtol=1e-8, atol=1e-11)
    assert info["backward"] is not None and bool(np.all(info["backward"]["converged"]))


@pytest.mark.parametrize("solver,f", [
    # z -> -1.5 z + 2 sin(3 z): plain iteration oscillates forever around its repelling fixed
    # points (autograd's own fixed_points would never return). Anderson, a root finder,
    # legitimately finds one of them, so it gets a map with no fixed point at all.
    ("fixed_point_iter", lambda z, c: -c * z + 2.0 * anp.sin(3.0 * z)),
    ("anderson", lambda z, c: z + 2.0 + c * anp.sin(3.0 * z)),
])
def test_non_converging_map_terminates_with_a_warning(solver, f):
    info = {}
    with pytest.warns(ConvergenceWarning, match="forward solve"):
        z = fixed_point(f, np.full(3, 0.7), 1.5, solver=solver,
                        solver_kwargs={"max_iter": 30}, info=info)
    assert z.shape == (3,)
    assert not bool(np.all(info["forward"]["converged"]))


def test_diverging_map_never_returns_nan_as_converged():
    f = lambda z: z * z + 1.0  # noqa: E731  (no real fixed point; iterates blow up)
    info = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = fixed_point(f, np.ones(2), solver="fixed_point_iter",
                        solver_kwargs={"max_iter": 50}, info=info)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert not bool(np.all(info["forward"]["converged"])) or not np.all(np.isfinite(z))
    assert not (bool(np.all(info["forward"]["converged"])) and not np.all(np.isfinite(z)))


def test_unconverged_backward_warns():
    W = 0.95 * np.eye(3)
    f = lambda z, W: anp.dot(z, W) + 1.0  # noqa: E731
    with pytest.warns(ConvergenceWarning, match="backward"):
        autograd.grad(lambda W: anp.sum(fixed_point(
            f, np.zeros(3), W, solver_kwargs=TIGHT,
            b_solver_kwargs={"max_iter": 3, "fallback": None})))(W)


def test_unconverged_backward_falls_back_to_gmres():
    """The 3 adjoint iterations stall at J = 0.95 I; GMRES finishes the solve: d/dW of
    sum(z*) with z* = 1 / (1 - 0.95) per entry is exact, and nothing warns."""
    W = 0.95 * np.eye(3)
    f = lambda z, W: anp.dot(z, W) + 1.0  # noqa: E731
    info = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        dW = autograd.grad(lambda W: anp.sum(fixed_point(
            f, np.zeros(3), W, solver_kwargs=TIGHT, b_solver_kwargs={"max_iter": 3},
            info=info)))(W)
    # z* = (I - W^T)^-1 1; dL/dW_ij = z*_i u_j with u = (I - W)^-1 1
    z_star = np.full(3, 20.0)
    np.testing.assert_allclose(dW, np.outer(z_star, z_star), rtol=1e-6)
    assert np.all(info["backward"]["fallback"])


def test_backward_arguments_checked_at_the_call():
    with pytest.raises(ValueError, match="no argument 'mm'"):
        fixed_point(lambda z, W: anp.dot(z, W), np.zeros(3), 0.5 * np.eye(3),
                    b_solver="anderson", b_solver_kwargs={"mm": 2})


def test_errors():
    f = lambda z, W: anp.tanh(anp.dot(W, z))  # noqa: E731
    W = 0.5 * np.eye(3)
    with pytest.raises(ValueError, match="shape"):
        fixed_point(lambda z, W: anp.concatenate([z, z]), np.zeros(3), W)
    with pytest.raises(ValueError, match="state"):
        fixed_point(lambda z, W: (z[0],), (np.zeros(3), np.zeros(3)), W)
    assert callable(f)


# --- second and higher derivatives ------------------------------------------------------------

SOLVE_TIGHT = {"tol": 1e-12, "max_iter": 500}


def _tanh_problem(seed=0, d=3):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, d))
    return 0.6 * W / np.linalg.norm(W, 2), rng.standard_normal(d), rng


@pytest.mark.parametrize("b_solver", ["fixed_point_iter", "gmres", "direct"])
def test_hessian_matches_finite_differences_and_the_tape(b_solver):
    """autograd.hessian through the bridge: against central differences of its gradient,
    and against an HVP through npdeq's own IFT rule on the tape (an independent route)."""
    W0, b, rng = _tanh_problem()
    f = lambda z, W, b: anp.tanh(anp.dot(W, z) + b)  # noqa: E731
    info = {}
    b_kwargs = {} if b_solver == "direct" else SOLVE_TIGHT

    def loss(W):
        z = fixed_point(f, np.zeros(3), W, b, solver_kwargs=SOLVE_TIGHT, b_solver=b_solver,
                        b_solver_kwargs=b_kwargs, info=info)
        return anp.sum(z ** 3)

    H = autograd.hessian(loss)(W0)
    V = rng.standard_normal(W0.shape)
    grad = autograd.grad(loss)
    eps = 1e-5
    fd = (grad(W0 + eps * V) - grad(W0 - eps * V)) / (2 * eps)
    np.testing.assert_allclose(np.tensordot(H, V, axes=2), fd, rtol=1e-6, atol=1e-8)
    assert info["backward_higher"][2]["order"] == 2

    Wt = npdeq.tensor(W0, requires_grad=True)
    z, _ = npdeq.fixed_point(lambda z: npdeq.tanh(z @ Wt.T + b), np.zeros((1, 3)),
                             solver_kwargs=SOLVE_TIGHT, b_solver_kwargs=SOLVE_TIGHT)
    (g,) = npdeq.grad((z ** 3).sum(), [Wt], create_graph=True)
    tape_hvp = npdeq.grad((g * V).sum(), Wt).numpy()
    np.testing.assert_allclose(np.tensordot(H, V, axes=2), tape_hvp, rtol=1e-8, atol=1e-10)


def test_tuple_state_hessian_and_third_order():
    W0, b, rng = _tanh_problem(1)

    def f(zs, W, b):
        z, y = zs
        return anp.tanh(anp.dot(W, z) + 0.3 * anp.sum(y) + b), 0.5 * anp.sin(z[:2])

    def loss(W):
        z, y = fixed_point(f, (np.zeros(3), np.zeros(2)), W, b, solver_kwargs=SOLVE_TIGHT,
                           b_solver_kwargs=SOLVE_TIGHT)
        return anp.sum(z ** 3) + anp.sum(y * y)

    V = rng.standard_normal(W0.shape)
    hvp = lambda W: autograd.grad(lambda W: anp.sum(autograd.grad(loss)(W) * V))(W)  # noqa: E731
    eps = 1e-5
    g = autograd.grad(loss)
    fd = (g(W0 + eps * V) - g(W0 - eps * V)) / (2 * eps)
    np.testing.assert_allclose(hvp(W0), fd, rtol=1e-6, atol=1e-8)
    third = autograd.grad(lambda W: anp.sum(hvp(W) * V))(W0)   # d/dW <H(W) V, V>
    fd3 = (np.sum(hvp(W0 + eps * V) * V) - np.sum(hvp(W0 - eps * V) * V)) / (2 * eps)
    np.testing.assert_allclose(np.sum(third * V), fd3, rtol=1e-5, atol=1e-7)


def test_forward_warning_points_at_the_callers_line():
    """Past npdeq's frames and autograd's tracer, traced or not (the default filter then
    shows it once per line of user code)."""
    f = lambda z, c: c * z + 1.0  # noqa: E731  (c = 0.99: 3 iterations stop short)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fixed_point(f, np.zeros(2), 0.99, solver="fixed_point_iter",
                    solver_kwargs={"max_iter": 3})
        autograd.grad(lambda c: anp.sum(fixed_point(
            f, np.zeros(2), c, solver="fixed_point_iter", solver_kwargs={"max_iter": 3})))(0.99)
    found = [w for w in caught if issubclass(w.category, ConvergenceWarning)
             and "forward solve" in str(w.message)]
    assert len(found) == 2 and all(w.filename == __file__ for w in found), \
        [(w.filename, w.lineno) for w in found]
