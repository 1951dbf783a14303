"""``get_solver``/``register_solver``/``registered_solvers``, and the contract every
registered solver follows: ``solver(func, x0, max_iter, tol, stop_mode, indexing)``."""

from __future__ import annotations

import numpy as np
import pytest

from npdeq.solver import (anderson_solver, broyden_solver, fixed_point_iter, get_solver,
                          register_solver, registered_solvers, simple_fixed_point_iter)
from npdeq.solver import registry

from solver_problems import check_info, check_raw, host, row_problem

BUILT_IN = {
    "fixed_point_iter": fixed_point_iter,
    "simple_fixed_point_iter": simple_fixed_point_iter,
    "anderson": anderson_solver,
    "broyden": broyden_solver,
}


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made in a test disappear after it."""
    monkeypatch.setattr(registry, "_SOLVERS", dict(registry._SOLVERS))


def test_built_in_names():
    for name, solver in BUILT_IN.items():
        assert get_solver(name) is solver
    names = registered_solvers()
    assert names == sorted(names) and set(BUILT_IN) <= set(names)


@pytest.mark.parametrize("name", ["lbfgs", "Anderson", "", None, 3])
def test_unknown_name_raises_value_error_listing_the_names(name):
    with pytest.raises(ValueError, match="unknown solver") as excinfo:
        get_solver(name)
    for known in BUILT_IN:
        assert known in str(excinfo.value)


def test_register_and_replace(isolated_registry, xp, to_xp):
    def damped(func, x0, **kw):
        return fixed_point_iter(func, x0, tau=0.5, **kw)

    register_solver("damped", damped)
    assert get_solver("damped") is damped and "damped" in registered_solvers()
    z, _, info = get_solver("damped")(lambda z: 2.0 - z, to_xp(np.zeros((1, 2))), tol=1e-9)
    assert np.all(host(z) == 1.0)
    register_solver("damped", fixed_point_iter)
    assert get_solver("damped") is fixed_point_iter
    with pytest.raises(ValueError, match="damped"):
        get_solver("missing")


def test_registrations_do_not_leak():
    assert "damped" not in registered_solvers()


@pytest.mark.parametrize("name, solver, error", [
    (3, fixed_point_iter, "string"), (None, fixed_point_iter, "string"),
    ("x", "fixed_point_iter", "callable"), ("x", None, "callable"),
])
def test_bad_registrations_raise_type_error(isolated_registry, name, solver, error):
    with pytest.raises(TypeError, match=error):
        register_solver(name, solver)
    assert "x" not in registered_solvers()


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_solver_follows_the_contract(name, xp, to_xp, check_array):
    """Called by name with the contract's keywords, each returns ``(z, trajectory, info)``
    with z on the input's device and one trajectory state per indexing entry."""
    func, z0, _ = row_problem(to_xp, batch=2)
    z, trajectory, info = get_solver(name)(func, z0, max_iter=30, tol=1e-6, stop_mode="rel",
                                           indexing=[3, 1])
    check_raw(check_array, z, shape=z0.shape, dtype=xp.float64)
    assert len(trajectory) == 2
    for t in trajectory:
        check_raw(check_array, t, shape=z0.shape, dtype=xp.float64)
    check_info(info, check_array, xp, 2)
