"""Every solver checks every output of ``func`` against its input, not only the first:
a map whose output changes shape, type or dtype after its first call fails with an error
naming ``func`` (before, the ODE solver broadcast a ``(1, D)`` output over the batch and
reported the wrong answer as converged, and the others failed with NumPy's broadcast
error)."""

from __future__ import annotations

import numpy as np
import pytest

from npdeq.solver import get_solver

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
