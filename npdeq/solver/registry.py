"""Solvers by name: :func:`get_solver` and :func:`register_solver`.

Every solver follows one contract (TorchDEQ's): ``solver(func, x0, max_iter, tol, stop_mode,
indexing, **its_own_kwargs) -> (z, trajectory, info)`` with ``info`` a
:class:`~npdeq.solver.stats.SolverStat`.
"""

from __future__ import annotations

from typing import Any, Callable

from npdeq.backend.checks import check_callable
from npdeq.solver.anderson import anderson_solver
from npdeq.solver.broyden import broyden_solver
from npdeq.solver.fixed_point import fixed_point_iter, simple_fixed_point_iter
from npdeq.solver.gmres import gmres_solver
from npdeq.solver.newton_krylov import newton_krylov
from npdeq.solver.ode import ode_solver

__all__ = ["get_solver", "register_solver", "registered_solvers"]

_SOLVERS: dict[str, Callable[..., Any]] = {
    "fixed_point_iter": fixed_point_iter,
    "simple_fixed_point_iter": simple_fixed_point_iter,
    "anderson": anderson_solver,
    "broyden": broyden_solver,
    "newton_krylov": newton_krylov,
    "ode": ode_solver,
    # For affine maps only (an IFT adjoint equation is one, where b_solver='gmres' uses the
    # linear solver directly).
    "gmres": gmres_solver,
}


def registered_solvers() -> list[str]:
    """The names :func:`get_solver` accepts, sorted."""
    return sorted(_SOLVERS)


def get_solver(name: str) -> Callable[..., Any]:
    """Return the solver registered as ``name``.

    Args:
        name: ``'fixed_point_iter'``, ``'simple_fixed_point_iter'``, ``'anderson'``,
            ``'broyden'``, ``'newton_krylov'``, ``'ode'``, ``'gmres'`` (affine maps only), or
            a name given to :func:`register_solver`.

    Returns:
        The solver function.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).

    Example:
        >>> get_solver('anderson').__name__
        'anderson_solver'
    """
    try:
        return _SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; registered solvers: "
                         f"{', '.join(registered_solvers())}") from None


def register_solver(name: str, solver: Callable[..., Any]) -> None:
    """Register ``solver`` under ``name`` (replacing a solver of that name).

    Args:
        name: the name for :func:`get_solver` and the DEQ configs' ``f_solver``/``b_solver``.
        solver: a function following the solver contract (see the module docstring).

    Raises:
        TypeError: ``name`` is not a string or ``solver`` is not callable.

    Example:
        >>> from npdeq.solver import fixed_point_iter
        >>> register_solver('damped', lambda f, x0, **kw: fixed_point_iter(f, x0, tau=0.5, **kw))
        >>> 'damped' in registered_solvers()
        True
        >>> del _SOLVERS['damped']
    """
    if not isinstance(name, str):
        raise TypeError(f"a solver name must be a string, got {type(name).__name__}")
    _SOLVERS[name] = check_callable(f"solver {name!r}", solver)
