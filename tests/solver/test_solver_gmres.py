"""``gmres``: batched restarted GMRES against dense solves, zero right-hand sides, restarts
shorter than the state, breakdowns, non-finite products, the product budget, host syncs,
argument checks; and ``gmres_solver`` (registered as ``'gmres'``) on affine maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npdeq import ConvergenceWarning
from npdeq.solver import get_solver, gmres, gmres_solver

from solver_problems import (GENEROUS_MAX_ITER, assert_solution_stats, check_info, check_raw,
                             counted, exact_fixed_point, host, host_map, linear_maps,
                             poison)

pytestmark = pytest.mark.filterwarnings("error::npdeq.ConvergenceWarning")


def _systems(seed, batch, dim, norm):
    """Per-sample ``A_i = I + R_i`` with ``||R_i||_2 = norm < 1``: non-symmetric, condition
    number at most ``(1 + norm) / (1 - norm)``, field of values in the right half-plane (so
    GMRES(m) converges for every m)."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((batch, dim, dim))
    r *= norm / np.linalg.norm(r, 2, axis=(1, 2))[:, None, None]
    return np.eye(dim) + r, rng.standard_normal((batch, dim))


def _product(A):
    """The batched matvec of a ``(B, D, D)`` array, counting its calls."""
    return counted(lambda v: (A @ v[:, :, None])[:, :, 0])


def _dense(a, b):
    return np.linalg.solve(a, b[:, :, None])[:, :, 0]


def _check_info(info, check_array, xp, batch, dtype=None):
    check_raw(check_array, info["residual"], shape=(batch,), dtype=dtype or xp.float64)
    for key in ("converged", "nonfinite"):
        check_raw(check_array, info[key], shape=(batch,), dtype=xp.bool)
    check_raw(check_array, info["nstep"], shape=(batch,))
    assert type(info["nmatvec"]) is int


def _assert_solved(x, info, a, b, tol):
    """Converged, residuals as reported, and x within cond * tol of the dense solution."""
    x_host = host(x)
    residual = np.linalg.norm(b - (a @ x_host[:, :, None])[:, :, 0], axis=1)
    assert np.all(host(info["converged"])) and not np.any(host(info["nonfinite"]))
    np.testing.assert_allclose(host(info["residual"]), residual, rtol=1e-6, atol=1e-14)
    assert np.all(residual <= tol * np.linalg.norm(b, axis=1) * (1 + 1e-6) + 1e-14)
    cond = np.linalg.cond(a)
    error = np.linalg.norm(x_host - _dense(a, b), axis=1)
    assert np.all(error <= 2 * cond * tol * np.linalg.norm(_dense(a, b), axis=1) + 1e-12)


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), dim=st.integers(1, 10),
       norm=st.floats(0.05, 0.9))
def test_matches_dense_solve(xp, to_xp, check_array, seed, batch, dim, norm):
    a, b = _systems(seed, batch, dim, norm)
    product = _product(to_xp(a))
    x, info = gmres(product, to_xp(b), tol=1e-10)
    check_raw(check_array, x, shape=(batch, dim), dtype=xp.float64)
    _check_info(info, check_array, xp, batch)
    _assert_solved(x, info, a, b, 1e-10)
    # Full GMRES (restart >= D) needs at most D products and one for the true residual.
    assert info["nmatvec"] == product.calls <= dim + 1


@given(seed=st.integers(0, 2**16), dim=st.integers(3, 9), data=st.data())
def test_restart_smaller_than_the_state_still_converges(xp, to_xp, seed, dim, data):
    restart = data.draw(st.integers(1, dim - 1), label="restart")
    a, b = _systems(seed, 3, dim, 0.5)
    product = _product(to_xp(a))
    x, info = gmres(product, to_xp(b), tol=1e-9, restart=restart, max_iter=GENEROUS_MAX_ITER)
    _assert_solved(x, info, a, b, 1e-9)
    assert info["nmatvec"] == product.calls


def test_absolute_tolerance(xp, to_xp):
    a, b = _systems(1, 3, 6, 0.8)
    b[1] *= 1e6  # a relative tol would stop sample 1 at a large absolute residual
    x, info = gmres(_product(to_xp(a)), to_xp(b), tol=0.0, atol=1e-8)
    assert np.all(host(info["converged"])) and np.all(host(info["residual"]) <= 1e-8)


def test_per_sample_absolute_tolerances(xp, to_xp):
    """A (B,) atol holds each sample to its own threshold: the loose one stops earlier."""
    a, b = _systems(2, 3, 12, 0.9)
    a[:] = a[0]
    b[:] = b[0]  # three copies of one system, three tolerances
    atol = np.array([1e-1, 1e-4, 1e-10])
    x, info = gmres(_product(to_xp(a)), to_xp(b), tol=0.0, atol=to_xp(atol))
    residual = np.linalg.norm(b - (a @ host(x)[:, :, None])[:, :, 0], axis=1)
    assert np.all(host(info["converged"])) and np.all(residual <= atol * (1 + 1e-6))
    steps = host(info["nstep"])
    assert steps[0] < steps[1] < steps[2], steps
    assert residual[0] > 1e-4  # stopped at its own tolerance, not the tightest one


@pytest.mark.parametrize("atol, message", [
    (np.ones(2), r"atol must be a number or a \(3,\) array"),
    (np.array([1.0, -1.0, 1.0]), "atol must be finite and >= 0"),
    (np.array([1.0, np.nan, 1.0]), "atol must be finite and >= 0"),
    (np.array([1.0, np.inf, 1.0]), "atol must be finite and >= 0"),
])
def test_bad_per_sample_atol(atol, message, xp, to_xp):
    product = counted(lambda v: v)
    with pytest.raises(ValueError, match=message):
        gmres(product, to_xp(np.ones((3, 2))), atol=to_xp(atol))
    assert product.calls == 0


@pytest.mark.parametrize("with_x0", [False, True])
def test_zero_rhs_gives_zero(with_x0, xp, to_xp):
    a, b = _systems(2, 3, 5, 0.7)
    b[1] = 0.0
    x0 = to_xp(np.ones((3, 5))) if with_x0 else None
    x, info = gmres(_product(to_xp(a)), to_xp(b), x0=x0, tol=1e-10)
    assert np.all(host(x)[1] == 0.0) and host(info["residual"])[1] == 0.0
    assert np.all(host(info["converged"]))
    _assert_solved(x, info, a, b, 1e-10)


def test_all_zero_rhs_costs_no_product(xp, to_xp, sync_calls):
    a, _ = _systems(3, 2, 4, 0.5)
    product = _product(to_xp(a))
    x, info = gmres(product, to_xp(np.zeros((2, 4))))
    assert product.calls == info["nmatvec"] == 0 and np.all(host(x) == 0.0)
    assert np.all(host(info["converged"])) and len(sync_calls) <= 1


def test_warm_start_at_the_solution(xp, to_xp):
    a, b = _systems(4, 3, 6, 0.6)
    x, info = gmres(_product(to_xp(a)), to_xp(b), x0=to_xp(_dense(a, b)), tol=1e-8)
    assert info["nmatvec"] == 1 and np.all(host(info["converged"]))


@pytest.mark.parametrize("case", ["identity", "eigenvector", "two_eigenvalues"])
def test_happy_breakdown_is_exact_and_finite(case, xp, to_xp):
    """The Krylov space stops growing (A v in the span built so far): the solution is exact
    there, the next basis vector is zero, and nothing is NaN."""
    dim = 8
    rng = np.random.default_rng(5)
    b = rng.standard_normal((3, dim))
    if case == "identity":
        a, products = np.eye(dim), 1
    elif case == "eigenvector":
        a = np.diag(np.arange(1.0, dim + 1))
        b = np.zeros((3, dim))
        b[:, 2] = [1.0, -2.0, 0.5]
        products = 1
    else:
        a, products = np.diag([0.5] * 4 + [2.0] * 4), 2
    a = np.broadcast_to(a, (3, dim, dim)).copy()
    x, info = gmres(_product(to_xp(a)), to_xp(b), tol=1e-12, restart=dim)
    assert np.all(np.isfinite(host(x)))
    _assert_solved(x, info, a, b, 1e-12)
    assert info["nmatvec"] == products + 1  # and one for the true residual


def test_breakdown_without_a_solution_is_flagged_not_nan(xp, to_xp):
    """A singular A with b outside its range: the Krylov space closes at a residual of 1."""
    a = np.broadcast_to(np.diag([1.0, 0.0, 2.0]), (2, 3, 3)).copy()
    b = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    x, info = gmres(_product(to_xp(a)), to_xp(b), tol=1e-10, max_iter=20)
    assert np.all(np.isfinite(host(x)))
    assert not np.any(host(info["converged"])) and not np.any(host(info["nonfinite"]))
    np.testing.assert_allclose(host(info["residual"]), [1.0, 1.0], rtol=1e-12)
    assert info["nmatvec"] <= 20


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("call", [1, 3])
def test_nonfinite_product_is_flagged_and_isolated(value, call, xp, to_xp):
    a, b = _systems(6, 4, 6, 0.8)
    A = to_xp(a)
    clean, clean_info = gmres(_product(A), to_xp(b), tol=1e-10, restart=2, max_iter=500)
    poisoned = poison(_product(A), xp, sample=2, calls={call}, value=value)
    x, info = gmres(poisoned, to_xp(b), tol=1e-10, restart=2, max_iter=500)
    assert host(info["nonfinite"]).tolist() == [False, False, True, False]
    assert host(info["converged"]).tolist() == [True, True, False, True]
    assert np.all(np.isfinite(host(x))) and np.isfinite(host(info["residual"])[2])
    others = [0, 1, 3]
    np.testing.assert_allclose(host(x)[others], host(clean)[others], rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nonfinite_rhs_is_flagged(xp, to_xp):
    a, b = _systems(7, 3, 4, 0.5)
    b[0, 1] = np.nan
    x, info = gmres(_product(to_xp(a)), to_xp(b), tol=1e-10)
    assert host(info["nonfinite"]).tolist() == [True, False, False]
    assert host(info["converged"]).tolist() == [False, True, True]
    assert np.all(host(x)[0] == 0.0)


@pytest.mark.parametrize("max_iter", [0, 1, 2, 3, 7])
@pytest.mark.parametrize("with_x0", [False, True])
def test_max_iter_is_a_hard_cap_on_products(max_iter, with_x0, xp, to_xp):
    a, b = _systems(8, 3, 12, 0.9)
    product = _product(to_xp(a))
    x0 = to_xp(np.zeros((3, 12))) if with_x0 else None
    x, info = gmres(product, to_xp(b), x0=x0, tol=1e-12, max_iter=max_iter, restart=3)
    assert info["nmatvec"] == product.calls <= max_iter
    assert not np.any(host(info["converged"])) and np.all(np.isfinite(host(x)))
    if product.calls:  # the reported residual is the true one of x
        residual = np.linalg.norm(b - (a @ host(x)[:, :, None])[:, :, 0], axis=1)
        np.testing.assert_allclose(host(info["residual"]), residual, rtol=1e-10)


def test_default_budget(xp, to_xp):
    a, b = _systems(9, 2, 3, 0.99)
    product = _product(to_xp(a))
    gmres(product, to_xp(b), tol=1e-14, restart=1)
    assert product.calls <= 30


def test_batch_independence(xp, to_xp):
    a, b = _systems(10, 4, 7, 0.8)
    x, info = gmres(_product(to_xp(a)), to_xp(b), tol=1e-10, restart=3, max_iter=400)
    for i in range(4):
        x_i, info_i = gmres(_product(to_xp(a[i:i + 1])), to_xp(b[i:i + 1]), tol=1e-10,
                            restart=3, max_iter=400)
        np.testing.assert_allclose(host(x)[i], host(x_i)[0], rtol=1e-12, atol=1e-14)


def test_float32_stays_float32(xp, to_xp, check_array):
    a, b = _systems(11, 3, 6, 0.5)
    x, info = gmres(_product(to_xp(a, "float32")), to_xp(b, "float32"), tol=1e-5)
    check_raw(check_array, x, shape=(3, 6), dtype=xp.float32)
    _check_info(info, check_array, xp, 3, dtype=xp.float32)
    assert np.all(host(info["converged"]))


def test_one_host_sync_per_product(xp, to_xp, sync_calls):
    a, b = _systems(12, 4, 10, 0.9)
    b[2] = 0.0
    _, info = gmres(_product(to_xp(a)), to_xp(b), tol=1e-10, restart=4, max_iter=300)
    assert np.all(host(info["converged"]))
    assert len(sync_calls) <= info["nmatvec"] + 1


def test_inputs_are_not_modified(xp, to_xp):
    a, b = _systems(13, 3, 5, 0.6)
    A, B, X0 = to_xp(a), to_xp(b), to_xp(np.ones((3, 5)))
    gmres(_product(A), B, x0=X0, tol=1e-10, restart=2)
    np.testing.assert_array_equal(host(A), a)
    np.testing.assert_array_equal(host(B), b)
    np.testing.assert_array_equal(host(X0), np.ones((3, 5)))


@pytest.mark.parametrize("kw, argument", [
    ({"tol": -1e-3}, "tol"), ({"tol": "1e-3"}, "tol"), ({"tol": True}, "tol"),
    ({"atol": -1.0}, "atol"), ({"atol": float("nan")}, "atol"), ({"tol": float("inf")}, "tol"),
    ({"restart": 0}, "restart"), ({"restart": 2.0}, "restart"), ({"restart": True}, "restart"),
    ({"max_iter": -1}, "max_iter"), ({"max_iter": 2.5}, "max_iter"),
])
def test_bad_arguments_raise_value_error(kw, argument, xp, to_xp):
    product = counted(lambda v: v)
    with pytest.raises(ValueError, match=argument):
        gmres(product, to_xp(np.ones((2, 3))), **kw)
    assert product.calls == 0


def test_bad_operands(xp, to_xp):
    with pytest.raises(ValueError, match=r"b must have shape \(B, D\)"):
        gmres(lambda v: v, to_xp(np.ones(3)))
    with pytest.raises(ValueError, match="x0 must match b"):
        gmres(lambda v: v, to_xp(np.ones((2, 3))), x0=to_xp(np.ones((2, 4))))
    with pytest.raises(TypeError, match="b must be an array"):
        gmres(lambda v: v, [[1.0, 2.0]])
    with pytest.raises(TypeError, match="real floating"):
        gmres(lambda v: v, to_xp(np.ones((2, 3), dtype=np.int64)))


# --- the fixed-point contract: gmres_solver, registered as 'gmres' --------------------------


def test_registered_as_gmres():
    assert get_solver("gmres") is gmres_solver


@given(data=st.data())
def test_solver_on_affine_maps(xp, xp_device, check_array, data):
    """z = W z + c: the fixed point to tol with statistics of the returned z; every
    evaluation counted."""
    m = data.draw(linear_maps(xp, xp_device), label="map")
    stop_mode = data.draw(st.sampled_from(("abs", "rel")), label="stop_mode")
    func = counted(m.bind())
    z, trajectory, info = gmres_solver(func, m.z0, max_iter=GENEROUS_MAX_ITER, tol=1e-8,
                                       stop_mode=stop_mode, indexing=[1, 2])
    check_info(info, check_array, xp, m.z0.shape[0])
    assert info["nfe"] == func.calls and len(trajectory) == 2
    abs_res = assert_solution_stats(z, info, host_map(m), 1e-8, stop_mode)
    error = np.linalg.norm(host(z) - exact_fixed_point(m), axis=1)
    assert np.all(error <= abs_res / (1 - m.contraction) * (1 + 1e-6) + 1e-12)
    np.testing.assert_array_equal(host(trajectory[0]), host(m.z0))


def test_solver_budget_and_warning(xp, to_xp):
    """A budget of max_iter evaluations in all; not reaching tol warns."""
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((12, 12)))
    W, c = to_xp(0.99 * q), to_xp(np.ones((2, 12)))
    func = counted(lambda z: z @ W.T + c)
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        _, _, info = gmres_solver(func, to_xp(np.zeros((2, 12))), max_iter=6, tol=1e-12)
    assert info["nfe"] == func.calls <= 6
