"""Shared problems and checks for the solver tests.

Problems are built on the host with NumPy and moved to the namespace under test; the checks
read results back with ``backend.to_numpy`` and compare them with quantities recomputed on
the host in float64. Raw arrays are wrapped in a Tensor for the ``check_array`` fixture, which
reads ``x.data``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

import npdeq
from npdeq import ConvergenceWarning, backend
from npdeq.solver import anderson_solver, broyden_solver, fixed_point_iter
from npdeq.testing.strategies import contractive_maps

# The solvers with a tolerance (simple_fixed_point_iter has none).
SOLVERS = {
    "fixed_point_iter": fixed_point_iter,
    "anderson": anderson_solver,
    "broyden": broyden_solver,
}
SOLVER_NAMES = tuple(SOLVERS)
STOP_MODES = ("abs", "rel")
# Enough for plain iteration at contraction 0.99 to reach the tolerances used here.
GENEROUS_MAX_ITER = 5000
# The keys of every solver's statistics.
INFO_KEYS = {"abs_lowest", "rel_lowest", "abs_trace", "rel_trace", "nstep", "sradius",
             "converged", "nonfinite", "nfe"}
REL_EPS = 1e-8


def host(x):
    """A result as a float64-or-native NumPy array on the host."""
    return backend.to_numpy(x)


def check_raw(check_array, x, shape=None, dtype=None):
    """``check_array`` for a raw array (the fixture unwraps ``.data``)."""
    check_array(npdeq.Tensor(x), shape=shape, dtype=dtype)


def other_namespace_array(xp, shape, dtype_name="float64"):
    """Zeros of ``shape`` in a namespace other than ``xp`` (NumPy <-> array_api_strict)."""
    import array_api_strict

    zeros = np.zeros(shape, dtype=dtype_name)
    if backend.namespace_name(xp) == "array_api_strict":
        return zeros
    return array_api_strict.asarray(zeros)


# --- maps ---------------------------------------------------------------------------------


def linear_maps(xp, device, **kw):
    """Random contractive linear maps ``z @ W.T + x @ U.T + b`` in ``xp``."""
    kw.setdefault("dim", st.integers(1, 12))
    kw.setdefault("batch", st.integers(1, 5))
    return contractive_maps(kind="linear", xp=xp, device=device, **kw)


def tanh_maps(xp, device, **kw):
    """Random ``tanh(z @ W.T + x @ U.T + b)`` with ``||W||_2`` in [0.5, 0.99] in ``xp``."""
    kw.setdefault("dim", st.integers(1, 12))
    kw.setdefault("batch", st.integers(1, 5))
    kw.setdefault("contraction", st.floats(0.5, 0.99))
    return contractive_maps(kind="tanh_mlp", xp=xp, device=device, **kw)


def host_map(m, **overrides):
    """The map of ``m`` (a :class:`~npdeq.testing.strategies.ContractiveMap`) on host float64
    arrays, with the same parameter overrides as ``m.bind``."""
    params = {k: host(v).astype(np.float64) for k, v in {**m.params, **overrides}.items()}
    return lambda z: m.func(np.asarray(z, dtype=np.float64), **params)


def exact_fixed_point(m, **overrides):
    """``(I - W)^-1 (U x + b)`` on the host for a linear map."""
    p = {k: host(v).astype(np.float64) for k, v in {**m.params, **overrides}.items()}
    dim = p["W"].shape[0]
    return np.linalg.solve(np.eye(dim) - p["W"], (p["x"] @ p["U"].T + p["b"]).T).T


def row_problem(to_xp, seed=0, batch=4, dim=6, norm=0.9, fixed_rows=()):
    """``f(z) = tanh(z @ W.T + inj)``, row-wise, with ``z0 = 0``.

    The rows in ``fixed_rows`` have a zero injection, so ``z0`` is their exact fixed point
    (``f(0) == 0`` to the bit).

    Returns:
        ``(func, z0, arrays)`` with ``arrays`` the ``W`` and ``inj`` arrays ``func`` captures.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((dim, dim))
    w *= norm / np.linalg.norm(w, 2)
    inj = rng.standard_normal((batch, dim))
    inj[list(fixed_rows)] = 0.0
    W, inj_x = to_xp(w), to_xp(inj)
    xp = backend.array_namespace(W)

    def func(z):
        return xp.tanh(z @ W.T + inj_x)

    return func, to_xp(np.zeros((batch, dim))), {"W": W, "inj": inj_x}


def two_state_problem(to_xp, seed=0, batch=3):
    """A tuple state of shapes ``(B, 3)`` and ``(B, 2, 2)``, coupled both ways.

    Returns:
        ``(func, z0, host_func)``: ``func(z, y) -> (z', y')`` in the namespace of ``to_xp``;
        ``host_func`` is the same map on host arrays.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3, 3))
    a *= 0.5 / np.linalg.norm(a, 2)
    c = rng.standard_normal((4, 3))
    c *= 0.3 / np.linalg.norm(c, 2)
    x = rng.standard_normal((batch, 3))

    def make(A, C, X, xp):
        def func(z, y):
            y_flat = xp.reshape(y, (y.shape[0], 4))
            z_new = xp.tanh(z @ A.T + 0.3 * (y_flat @ C) + X)
            y_new = xp.reshape(0.5 * xp.tanh(z @ C.T), (z.shape[0], 2, 2))
            return z_new, y_new
        return func

    A, C, X = to_xp(a), to_xp(c), to_xp(x)
    func = make(A, C, X, backend.array_namespace(A))
    z0 = (to_xp(np.zeros((batch, 3))), to_xp(np.zeros((batch, 2, 2))))
    return func, z0, make(a, c, x, backend.array_namespace(a))


def poison(func, xp, sample, calls, value=float("nan")):
    """Wrap ``func`` so that its output for row ``sample`` is ``value`` at the given calls
    (1-based call numbers); ``.calls`` counts the calls."""

    def wrapped(z):
        wrapped.calls += 1
        out = func(z)
        if wrapped.calls in calls:
            rows = xp.arange(out.shape[0], device=backend.device(out)) == sample
            out = xp.where(rows[:, None], xp.asarray(value, dtype=out.dtype,
                                                     device=backend.device(out)), out)
        return out

    wrapped.calls = 0
    return wrapped


def counted(func):
    """Wrap ``func``, counting its calls in ``.calls``."""

    def wrapped(*zs):
        wrapped.calls += 1
        return func(*zs)

    wrapped.calls = 0
    return wrapped


# --- checks -------------------------------------------------------------------------------


def check_info(info, check_array, xp, batch, dtype=None):
    """Every statistic has the documented namespace, device, dtype and shape; returns ``N``,
    the number of iterations recorded in the traces."""
    dtype = xp.float64 if dtype is None else dtype
    assert set(info) == INFO_KEYS
    assert isinstance(info, npdeq.solver.SolverStat)
    assert type(info["nfe"]) is int and info["nfe"] >= 0
    iterations = info["abs_trace"].shape[1]
    for key in ("abs_lowest", "rel_lowest", "sradius"):
        check_raw(check_array, info[key], shape=(batch,), dtype=dtype)
    for key in ("abs_trace", "rel_trace"):
        check_raw(check_array, info[key], shape=(batch, iterations), dtype=dtype)
    for key in ("converged", "nonfinite"):
        check_raw(check_array, info[key], shape=(batch,), dtype=xp.bool)
    check_raw(check_array, info["nstep"], shape=(batch,))
    assert xp.isdtype(info["nstep"].dtype, "integral")
    return iterations


def check_state(check_array, z, like):
    """``z`` has the structure, namespace, device, dtype and shapes of ``like``."""
    if isinstance(like, (tuple, list)):
        assert isinstance(z, tuple) and len(z) == len(like)
        for a, b in zip(z, like):
            check_raw(check_array, a, shape=b.shape, dtype=b.dtype)
    else:
        assert not isinstance(z, (tuple, list))
        check_raw(check_array, z, shape=like.shape, dtype=like.dtype)


def recomputed_residuals(host_f, z):
    """``(abs, rel)`` residuals of host array ``z`` under ``host_f``, per sample, in float64."""
    z = np.asarray(z, dtype=np.float64)
    fz = host_f(z)
    abs_res = np.linalg.norm(fz - z, axis=1)
    return abs_res, abs_res / (np.linalg.norm(fz, axis=1) + REL_EPS)


def assert_trace_consistent(info, stop_mode):
    """The per-sample bookkeeping agrees with the traces.

    ``nstep`` points at the trace column of the returned iterate, whose residuals are
    ``abs_lowest``/``rel_lowest``; in ``stop_mode`` it is the first minimum of the finite
    trace; a converged sample is frozen from ``nstep`` on (its trace repeats the lowest).
    """
    a_tr, r_tr = host(info["abs_trace"]), host(info["rel_trace"])
    a_lo, r_lo, nstep = host(info["abs_lowest"]), host(info["rel_lowest"]), host(info["nstep"])
    converged, nonfinite = host(info["converged"]), host(info["nonfinite"])
    stop = a_tr if stop_mode == "abs" else r_tr
    assert not np.any(converged & nonfinite)
    for i in range(a_tr.shape[0]):
        k = int(nstep[i])
        if k == 0:  # nothing finite was ever seen
            assert not converged[i] and np.isinf(a_lo[i])
            continue
        assert a_tr[i, k - 1] == a_lo[i] and r_tr[i, k - 1] == r_lo[i]
        finite = np.isfinite(a_tr[i])
        assert stop[i, k - 1] == np.min(stop[i][finite])
        assert np.all(stop[i, :k - 1] > stop[i, k - 1])
        if converged[i]:
            assert np.all(a_tr[i, k - 1:] == a_lo[i])
            assert np.all(r_tr[i, k - 1:] == r_lo[i])


def assert_solution_stats(z, info, host_f, tol, stop_mode):
    """Every sample converged to ``tol`` and the statistics are those of the returned ``z``
    recomputed on the host."""
    z_host = host(z)
    abs_res, rel_res = recomputed_residuals(host_f, z_host)
    assert np.all(host(info["converged"])), host(info[f"{stop_mode}_lowest"])
    assert not np.any(host(info["nonfinite"]))
    np.testing.assert_allclose(host(info["abs_lowest"]), abs_res, rtol=1e-7, atol=1e-13)
    np.testing.assert_allclose(host(info["rel_lowest"]), rel_res, rtol=1e-7, atol=1e-13)
    reached = abs_res if stop_mode == "abs" else rel_res
    assert np.all(host(info[f"{stop_mode}_lowest"]) <= tol)
    assert np.all(reached <= tol * (1 + 1e-6) + 1e-13)
    assert_trace_consistent(info, stop_mode)
    return abs_res


def slow_maps(xp, device, **kw):
    """Slowly contracting maps in ``xp``: orthogonal or diagonal W (spectral radius = norm)
    with norm 0.95 to 0.99, linear or tanh. Use them through :func:`slow_func`."""
    kw.setdefault("dim", st.integers(1, 10))
    kw.setdefault("batch", st.integers(1, 4))
    kw.setdefault("contraction", st.floats(0.95, 0.99))
    kw.setdefault("structure", st.sampled_from(("orthogonal", "diagonal")))
    return contractive_maps(xp=xp, device=device, **kw)


def slow_func(m):
    """The map of ``m``; for tanh, with the injection scaled down so that the fixed point is
    small and tanh' ~ 1 there (a saturated tanh would contract fast)."""
    if m.kind == "linear":
        return m.bind()
    return m.bind(x=0.05 * m.params["x"], b=0.05 * m.params["b"])


def assert_fewer_evaluations_than_iteration(solver, m, tol=1e-5, **kw):
    """``solver`` reaches ``tol`` on the slow map ``m`` with fewer evaluations than plain
    iteration."""
    func = slow_func(m)
    _, _, plain = fixed_point_iter(func, m.z0, max_iter=GENEROUS_MAX_ITER, tol=tol)
    _, _, info = solver(func, m.z0, max_iter=GENEROUS_MAX_ITER, tol=tol, **kw)
    assert np.all(host(plain["converged"])) and np.all(host(info["converged"]))
    assert info["nfe"] < plain["nfe"], (info["nfe"], plain["nfe"])
    return info["nfe"], plain["nfe"]


def assert_nonfinite_sample_isolated(solve, to_xp, xp, call, rtol, atol, **kw):
    """NaN for sample 2 of a 4-sample problem at one call of f: ``solve`` (a solver with
    ``max_iter``/``tol`` in ``kw``) flags it, keeps it finite and unconverged, and gives the
    other samples what it gives without the NaN. Returns the poisoned solve's ``info``."""
    func, z0, _ = row_problem(to_xp, batch=4, dim=5)
    clean, _, _ = solve(func, z0, **kw)
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        z, _, info = solve(poison(func, xp, sample=2, calls={call}), z0, **kw)
    assert host(info["nonfinite"]).tolist() == [False, False, True, False]
    assert host(info["converged"]).tolist() == [True, True, False, True]
    assert np.all(np.isfinite(host(z)[2]))
    others = [0, 1, 3]
    np.testing.assert_allclose(host(z)[others], host(clean)[others], rtol=rtol, atol=atol)
    return info


def assert_tiny_max_iter(solve, to_xp, max_iter):
    """``max_iter`` of 0, 1 or 2: one trace column per iteration, every evaluation counted in
    ``nfe``, and (below 2) ``x0`` returned, as no step was taken."""
    func, z0, _ = row_problem(to_xp, batch=2)
    calls = counted(func)
    if max_iter == 0:
        z, _, info = solve(calls, z0, max_iter=0)
    else:
        with pytest.warns(ConvergenceWarning):
            z, _, info = solve(calls, z0, max_iter=max_iter, tol=1e-12)
    assert info["abs_trace"].shape[1] == max_iter and info["nfe"] == calls.calls
    if max_iter < 2:
        np.testing.assert_array_equal(host(z), host(z0))
