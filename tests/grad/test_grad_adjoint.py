"""The adjoint solve ``u = J^T u + g``: stop modes and tolerances that decide the outcome,
and the GMRES fallback for the samples an iterative backward solver leaves unconverged.

The right-hand sides here are far from norm 1 (``||g||`` about 1e4), so an absolute and a
relative tolerance stop at residuals four orders of magnitude apart: a solver that swaps the
two modes, or ignores ``tol``, fails these tests. Residuals are recomputed here from the
returned ``u``, independently of the statistics the solver reports.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import npdeq
from npdeq.backend import to_numpy
from npdeq.exceptions import ConvergenceWarning
from npdeq.grad import adjoint_solve, fixed_point
from npdeq.solver import gmres

SCALE = 1e4
ITERATIVE = ("fixed_point_iter", "anderson", "broyden")


def _system(to_xp, batch=3, dim=24, radius=0.9, seed=0):
    """A per-sample J^T with spectrum spread in [-radius, radius] (slow for every method)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    jt = q @ np.diag(np.linspace(-radius, radius, dim)) @ q.T
    g = rng.standard_normal((batch, dim))
    g *= SCALE / np.linalg.norm(g, axis=1, keepdims=True)
    jt_xp = to_xp(jt)
    return jt, g, (lambda v: v @ jt_xp), to_xp(g)


def _residual(jt, g, u):
    u = to_numpy(u)
    return np.linalg.norm(u @ jt + g - u, axis=1)


@pytest.mark.parametrize("b_solver", ITERATIVE + ("gmres",))
def test_abs_and_rel_stop_at_their_own_tolerance(xp, to_xp, b_solver):
    jt, g, vjp, g_xp = _system(to_xp)
    tol = 1e-6
    kwargs = {"tol": tol, "max_iter": 400, "fallback": None} if b_solver != "gmres" else \
        {"tol": tol, "max_iter": 400}
    u_abs, info_abs = adjoint_solve(vjp, g_xp, b_solver, dict(kwargs, stop_mode="abs"))
    u_rel, info_rel = adjoint_solve(vjp, g_xp, b_solver, dict(kwargs, stop_mode="rel"))
    res_abs, res_rel = _residual(jt, g, u_abs), _residual(jt, g, u_rel)
    assert np.all(to_numpy(info_abs["converged"])) and np.all(to_numpy(info_rel["converged"]))
    # abs: ||r|| <= tol itself; rel: ||r|| <= tol * (a scale of order ||g|| = 1e4)
    assert np.all(res_abs <= tol * 1.01), res_abs
    assert np.all(res_rel <= tol * SCALE * 10), res_rel
    # ... and rel stops much earlier: its residual is far above the absolute tolerance.
    assert np.all(res_rel > 10 * tol), res_rel
    assert info_rel["nfe"] < info_abs["nfe"]
    np.testing.assert_allclose(to_numpy(info_abs["abs_lowest"]), res_abs, rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("b_solver", ITERATIVE + ("gmres",))
def test_tolerance_decides_the_residual(xp, to_xp, b_solver):
    jt, g, vjp, g_xp = _system(to_xp)
    extra = {} if b_solver == "gmres" else {"fallback": None}
    residuals = []
    for tol in (1e-1, 1e-7):
        u, info = adjoint_solve(vjp, g_xp, b_solver,
                                dict(extra, tol=tol, max_iter=400, stop_mode="abs"))
        res = _residual(jt, g, u)
        assert np.all(res <= tol * 1.01)
        residuals.append(res)
    assert np.all(residuals[0] > 1e-6), "a loose tolerance stops early"


def _expanding(to_xp, batch=3, dim=4, factor=1.5):
    """J = factor * I per sample (with a contractive sample first when asked): plain
    iteration diverges on u = factor u + g, but the equation has the solution g/(1-factor)."""
    rng = np.random.default_rng(1)
    g = rng.standard_normal((batch, dim)) * 100.0
    factors = np.full((batch, 1), factor)
    factors[0] = 0.5
    f_xp = to_xp(factors)
    return g, factors, (lambda v: f_xp * v), to_xp(g)


@pytest.mark.parametrize("b_solver", ITERATIVE)
def test_diverging_adjoint_falls_back_to_gmres(xp, to_xp, b_solver):
    g, factors, vjp, g_xp = _expanding(to_xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        u, info = adjoint_solve(vjp, g_xp, b_solver, {"tol": 1e-8, "max_iter": 40})
    np.testing.assert_allclose(to_numpy(u), g / (1.0 - factors), rtol=1e-7)
    fallback = to_numpy(info["fallback"])
    assert fallback.dtype == bool and fallback.shape == (3,)
    assert np.all(to_numpy(info["converged"]))
    if b_solver == "fixed_point_iter":  # the contractive sample converged on its own
        assert fallback.tolist() == [False, True, True]


def _spectrum_system(seed, low, high, batch, dim=16):
    """A symmetric J^T with its spectrum spread over [low, high], and a (batch, dim) g."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q @ np.diag(np.linspace(low, high, dim)) @ q.T, rng.standard_normal((batch, dim))


def test_relative_fallback_keeps_the_first_solvers_measure(xp, to_xp):
    """With stop_mode='rel' the fixed-point solvers measure ||J^T u + g - u|| against
    ||J^T u + g|| (about ||u||, here about 20 ||g||: J^T = 0.95 I). The GMRES fallback
    stops at that tolerance, not at tol * ||g||, so it spends fewer VJPs and still meets it."""
    jt, g = _spectrum_system(7, 0.9, 0.96, batch=3)
    jt_xp = to_xp(jt)
    tol = 1e-6
    u, info = adjoint_solve(lambda v: v @ jt_xp, to_xp(g), "fixed_point_iter",
                            {"tol": tol, "max_iter": 12, "stop_mode": "rel"})
    assert np.all(to_numpy(info["fallback"])) and np.all(to_numpy(info["converged"]))
    fx = to_numpy(u) @ jt + g
    rel = np.linalg.norm(fx - to_numpy(u), axis=1) / np.linalg.norm(fx, axis=1)
    assert np.all(rel <= tol), rel
    np.testing.assert_allclose(to_numpy(info["rel_lowest"]), rel, rtol=1e-3)
    assert np.all(rel > 0.05 * tol), "stopped near the asked tolerance, not far below it"
    # GMRES relative to ||g|| (what the fallback did before), from the same start, needs
    # more products.
    with pytest.warns(ConvergenceWarning, match="backward"):
        start, _ = adjoint_solve(lambda v: v @ jt_xp, to_xp(g), "fixed_point_iter",
                                 {"tol": tol, "max_iter": 12, "stop_mode": "rel",
                                  "fallback": None})
    _, strict = gmres(lambda v: v - v @ jt_xp, to_xp(g), x0=start, tol=tol, max_iter=200)
    assert info["nfe"] - 12 < strict["nmatvec"]


def test_relative_fallback_from_a_diverged_start(xp, to_xp):
    """Plain iteration diverges (J^T spectrum in [1.2, 1.8]): its best iterate is about
    ten times ||u*||, so a threshold tol * ||start|| alone would stop GMRES ten times too
    early; the fallback starts another round from where the first ended, and meets tol in
    the fixed-point measure."""
    jt, g = _spectrum_system(3, 1.2, 1.8, batch=2)
    jt_xp = to_xp(jt)
    tol = 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        u, info = adjoint_solve(lambda v: v @ jt_xp, to_xp(g), "fixed_point_iter",
                                {"tol": tol, "max_iter": 40, "stop_mode": "rel"})
    fx = to_numpy(u) @ jt + g
    rel = np.linalg.norm(fx - to_numpy(u), axis=1) / np.linalg.norm(fx, axis=1)
    assert np.all(to_numpy(info["converged"])) and np.all(rel <= tol), rel
    exact = np.linalg.solve((np.eye(16) - jt).T, g.T).T
    np.testing.assert_allclose(to_numpy(u), exact, rtol=1e-4)


@pytest.mark.parametrize("stop_mode", ["abs", "rel"])
def test_fallback_flags_a_nonfinite_cotangent(xp, to_xp, stop_mode):
    """A NaN in one sample's cotangent: that sample is flagged non-finite with a warning,
    the others are solved; nothing raises."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, 8))
    g[1, 2] = np.nan
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        u, info = adjoint_solve(lambda v: 0.5 * v, to_xp(g), "anderson",
                                {"tol": 1e-6, "max_iter": 40, "stop_mode": stop_mode})
    assert to_numpy(info["nonfinite"]).tolist() == [False, True, False]
    assert to_numpy(info["converged"]).tolist() == [True, False, True]
    np.testing.assert_allclose(to_numpy(u)[[0, 2]], 2.0 * g[[0, 2]], rtol=1e-5)


def test_relative_fallback_in_float16_with_large_norms(xp, to_xp):
    """||u*|| about 700: float16's squared norms overflow, the fallback's do not."""
    if not hasattr(xp, "float16"):
        pytest.skip(f"{xp.__name__} has no float16")
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    jt = q @ np.diag(np.linspace(0.5, 0.95, 16)) @ q.T
    g = rng.standard_normal((2, 16)) * 20.0
    jt16 = to_xp(jt.astype(np.float16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        u, info = adjoint_solve(lambda v: v @ jt16, to_xp(g.astype(np.float16)),
                                "fixed_point_iter", {"tol": 1e-3, "max_iter": 20,
                                                     "stop_mode": "rel"})
    assert u.dtype == xp.float16 and np.all(to_numpy(info["fallback"]))
    exact = np.linalg.solve((np.eye(16) - jt).T, g.T).T
    error = np.linalg.norm(to_numpy(u).astype(float) - exact, axis=1)
    assert np.all(error <= 2e-2 * np.linalg.norm(exact, axis=1)), error


def test_no_fallback_flags_instead_of_returning_zero(xp, to_xp):
    g, factors, vjp, g_xp = _expanding(to_xp)
    with pytest.warns(ConvergenceWarning):
        u, info = adjoint_solve(vjp, g_xp, "fixed_point_iter",
                                {"tol": 1e-8, "max_iter": 40, "fallback": None})
    assert to_numpy(info["converged"]).tolist() == [True, False, False]
    assert not np.any(to_numpy(info["fallback"]))


def test_fallback_argument_checked(xp, to_xp):
    _, _, vjp, g_xp = _expanding(to_xp)
    with pytest.raises(ValueError, match="fallback"):
        adjoint_solve(vjp, g_xp, "anderson", {"fallback": "direct"})


@pytest.mark.parametrize("b_solver", ("direct", "gmres"))
def test_linear_solvers_report_no_fallback(xp, to_xp, b_solver):
    g, factors, vjp, g_xp = _expanding(to_xp)
    u, info = adjoint_solve(vjp, g_xp, b_solver, {"tol": 1e-10} if b_solver == "gmres" else None)
    np.testing.assert_allclose(to_numpy(u), g / (1.0 - factors), rtol=1e-8)
    assert not np.any(to_numpy(info["fallback"]))


def test_non_contractive_fixed_point_gradient_is_right(xp, to_xp):
    """z = 1.5 z - b has the fixed point z* = 2 b, dz*/db = 2: with the default backward
    solver the gradient was exactly zero (the best iterate of a diverging adjoint iteration
    was its zero start)."""
    b0 = np.array([[1.0, -2.0], [0.5, 3.0]])
    b = npdeq.Tensor(to_xp(b0), requires_grad=True)
    z, info = fixed_point(lambda z: 1.5 * z - b, to_xp(np.zeros((2, 2))), solver="gmres",
                          solver_kwargs={"tol": 1e-12})
    np.testing.assert_allclose(to_numpy(z.data), 2.0 * b0, rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        z.sum().backward()
    np.testing.assert_allclose(to_numpy(b.grad.data), np.full((2, 2), 2.0), rtol=1e-8)
    assert np.all(to_numpy(info["backward"]["fallback"]))


BAD_B_KWARGS = [
    ("anderson", {"mm": 5}, "no argument 'mm'"),
    ("fixed_point_iter", {"tol": 1e-6, "m": 3}, "no argument 'm'"),
    ("anderson", {"fallback": "direct"}, "fallback"),
    ("gmres", {"m": 5}, "takes tol, max_iter, stop_mode and restart; got m"),
    ("direct", {"restart": 5}, "direct"),
    ("nonexistent", None, "nonexistent"),
]


@pytest.mark.parametrize("b_solver, kwargs, match", BAD_B_KWARGS)
def test_backward_arguments_checked_at_the_call(xp, to_xp, b_solver, kwargs, match):
    """A typo in b_solver_kwargs fails where the gradient is set up, before f is called
    (it used to surface only at backward())."""
    from npdeq.grad import backward_factory, implicit_grad

    calls = []

    def func(z):
        calls.append(1)
        return 0.5 * z

    z0 = to_xp(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=match):
        fixed_point(func, z0, b_solver=b_solver, b_solver_kwargs=kwargs)
    with pytest.raises(ValueError, match=match):
        implicit_grad(func, (z0,), b_solver, kwargs)
    with pytest.raises(ValueError, match=match):
        backward_factory("ift", b_solver=b_solver, b_solver_kwargs=kwargs)
    assert not calls


@pytest.mark.parametrize("b_solver", ITERATIVE + ("gmres",))
def test_zero_tolerance_runs_to_max_iter_without_fallback_or_warning(xp, to_xp, b_solver):
    """tol = 0 asks for exactly max_iter steps (TorchDEQ's meaning): no GMRES fallback,
    no warning for not stopping early."""
    jt, g, vjp, g_xp = _system(to_xp, dim=24)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        u, info = adjoint_solve(vjp, g_xp, b_solver, {"tol": 0, "max_iter": 12})
    assert not np.any(to_numpy(info["fallback"]))
    assert info["nfe"] <= 13          # max_iter VJPs (GMRES: plus its true-residual product)
    assert not np.any(to_numpy(info["converged"]))
