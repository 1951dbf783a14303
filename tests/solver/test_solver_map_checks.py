"""Every solver checks every output of ``func`` against its input, not only the first:
a map whose output changes shape, type or dtype after its first call fails with an error
naming ``func`` (before, the ODE solver broadcast a ``(1, D)`` output over the batch and
reported the wrong answer as converged, and the others failed with NumPy's broadcast
error)."""

from __future__ import annotations

import numpy as np
import pytest

from npdeq.solver import get_solver
from solver_problems import host

SOLVERS = ["fixed_point_iter", "simple_fixed_point_iter", "anderson", "broyden",
           "newton_krylov", "ode", "gmres"]


def _changing(xp, to_xp, after, change):
    """A contractive map whose output is ``change``d from call ``after`` on."""
    calls = []
    shift = to_xp(np.linspace(-1.0, 1.0, 4))

    def func(z):
        calls.append(1)
        out = xp.tanh(0.5 * z + shift)
        return change(out) if len(calls) > after else out
    return func


CHANGES = {
    "shape": (lambda out: out[:1, :], ValueError, r"func returned shape \(1, 4\) at call"),
    "list": (lambda out: [out], TypeError, "func returned a tuple of 1 arrays|func returned"),
}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("after", [1, 3])
@pytest.mark.parametrize("change", ["shape", "list"])
def test_changed_output_is_an_error_naming_func(xp, to_xp, solver, after, change):
    alter, error, message = CHANGES[change]
    func = _changing(xp, to_xp, after, alter)
    with pytest.raises(error, match=message):
        get_solver(solver)(func, to_xp(np.zeros((3, 4))), max_iter=50, tol=1e-10)


@pytest.mark.parametrize("solver", SOLVERS)
def test_changed_dtype_is_an_error(xp, to_xp, solver):
    func = _changing(xp, to_xp, 2, lambda out: xp.astype(out, xp.float32))
    with pytest.raises(TypeError, match=r"func returned dtype \S*float32 at call 3; expected "
                                        r"\S*float64 .*lower precision than its input"):
        get_solver(solver)(func, to_xp(np.zeros((3, 4))), max_iter=50, tol=1e-10)


def test_promoted_dtype_names_its_likely_source(xp, to_xp):
    """A float64 operand inside func turns a float32 state's image float64: the message says
    where such an operand comes from and how to fix it."""
    weight = to_xp(np.full(4, 0.5))                                 # float64
    with pytest.raises(TypeError, match=r"func returned dtype \S*float64 at call 1; expected "
                                        r"\S*float32 .*set_default_dtype.*promotes the result"
                                        r".*model\.to\(dtype="):
        get_solver("anderson")(lambda z: weight * z, to_xp(np.zeros((3, 4)), np.float32),
                               max_iter=5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_tuple_state_checked_at_every_call(xp, to_xp, solver):
    calls = []

    def func(z, y):
        calls.append(1)
        y_out = xp.tanh(0.5 * y + 1.0)
        return 0.5 * z, (y_out[:1, ...] if len(calls) > 2 else y_out)
    with pytest.raises(ValueError, match=r"func returned shape \(1, 2, 2\) for state 1 at call 3"):
        get_solver(solver)(func, (to_xp(np.zeros((3, 4))), to_xp(np.zeros((3, 2, 2)))),
                           max_iter=50, tol=1e-10)


@pytest.mark.parametrize("solver", SOLVERS)
def test_tuple_state_structure_checked_at_every_call(xp, to_xp, solver):
    calls = []

    def func(z, y):
        calls.append(1)
        out = (xp.tanh(0.5 * z + 1.0), xp.tanh(0.5 * y + 1.0))
        return out[:1] if len(calls) > 2 else out
    with pytest.raises(TypeError, match="func returned a tuple of 1 arrays at call 3"):
        get_solver(solver)(func, (to_xp(np.zeros((3, 4))), to_xp(np.zeros((3, 2, 2)))),
                           max_iter=50, tol=1e-10)


# --- Tensors: read as their arrays (the solvers do not differentiate) ---------------------


@pytest.mark.parametrize("name", ["fixed_point_iter", "anderson_solver", "broyden_solver"])
def test_solvers_read_tensors_as_arrays(name, xp, to_xp, check_array):
    import npdeq
    from npdeq import solver

    W = npdeq.tensor(to_xp(0.3 * np.eye(3)), requires_grad=True)   # a parameter inside func
    b = to_xp(np.ones((2, 3)))

    def func(z):                      # written with npdeq's ops: returns a Tensor
        return npdeq.tanh(npdeq.matmul(z, W) + b)

    for z0 in (to_xp(np.zeros((2, 3))), npdeq.tensor(to_xp(np.zeros((2, 3))))):
        z, _, info = getattr(solver, name)(func, z0, tol=1e-10, max_iter=200)
        assert not isinstance(z, npdeq.Tensor)
        check_array(z, shape=(2, 3), dtype=xp.float64)
        expected = np.tanh(np.asarray(host(z)) @ (0.3 * np.eye(3)) + 1.0)
        np.testing.assert_allclose(host(z), expected, atol=1e-8)
        assert host(info["converged"]).all()


def test_tuple_states_read_tensors_and_parameters():
    import npdeq
    from npdeq import nn, solver

    p = nn.Parameter(np.full((2, 1), 0.5))          # a Tensor subclass

    def func(a, c):
        return npdeq.tensor(a) * 0.5 + 1.0, p * c

    (a, c), _, info = solver.anderson_solver(func, (p, np.ones((2, 1))), tol=1e-12)
    assert type(a) is np.ndarray and type(c) is np.ndarray
    np.testing.assert_allclose(a, 2.0, atol=1e-9)
    np.testing.assert_allclose(c, 0.0, atol=1e-9)


def test_scalar_state_error_says_what_shape_to_pass():
    from npdeq import solver

    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        solver.anderson_solver(lambda z: 0.5 * (z + 2 / z), np.array(1.0))
    z, _, _ = solver.anderson_solver(lambda z: 0.5 * (z + 2 / z), np.array([1.0]), tol=1e-10)
    np.testing.assert_allclose(z, [np.sqrt(2.0)])
