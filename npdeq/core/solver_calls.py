"""How the DEQ cores call solvers, checked before any solve.

The cores call every forward solver as ``solver(func, x0, max_iter=..., indexing=...,
tol=..., stop_mode=..., **solver_kwargs)`` and every IFT backward solver with ``max_iter``,
``tol`` and ``stop_mode``: which keywords a solver takes, whether a registered solver's
signature can take the core's call, a solver name resolved with an error naming the config
key, and the per-call ``solver_kwargs`` checked against the forward solver.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Callable

from npdeq.core.config import check_value, unknown_key_error
from npdeq.solver import get_solver, registered_solvers

__all__ = ["solver_parameters", "check_solver_call", "named_solver", "check_solver_kwargs",
           "NO_STOPPING_TEST"]

# Solver arguments the cores set themselves (not through solver_kwargs).
_RESERVED = ("func", "x0", "max_iter", "indexing")
# Registered solvers that take a tolerance for the solver contract but never stop early.
NO_STOPPING_TEST = ("simple_fixed_point_iter",)


@functools.lru_cache(maxsize=64)
def solver_parameters(solver: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword arguments ``solver`` takes besides ``func``, ``x0``, ``max_iter`` and
    ``indexing`` (``None``: any, it has ``**kwargs``).

    Args:
        solver: a solver function.

    Returns:
        The names, or ``None``.

    Example:
        >>> from npdeq.solver import fixed_point_iter
        >>> sorted(solver_parameters(fixed_point_iter))
        ['per_sample', 'return_final', 'stop_mode', 'tau', 'tol']
    """
    try:
        params = inspect.signature(solver).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                   inspect.Parameter.KEYWORD_ONLY)]
    return frozenset(names[2:]) - set(_RESERVED)  # after (func, x0)


def check_solver_call(solver: Callable[..., Any], name: str, role: str,
                      keys: Any) -> None:
    """Check, before any solve, that ``solver(func, x0, **{key: ...})`` is a valid call.

    The cores call every solver with the same keywords (``max_iter``, ``indexing``, ``tol``,
    ``stop_mode`` for the forward solve; ``max_iter``, ``tol``, ``stop_mode`` for the IFT
    backward solve): a registered solver whose signature cannot take them would otherwise
    fail at the first forward call, or only at ``backward()``.

    Args:
        solver: the solver function.
        name: its registered name (for the message).
        role: the config key that chose it (``'f_solver'`` or ``'b_solver'``).
        keys: the keyword names the core passes.

    Raises:
        ValueError: the signature cannot bind those keywords (names the solver and the
            keywords).

    Example:
        >>> try:
        ...     check_solver_call(lambda func, x0, max_iter: None, 'mine', 'b_solver',
        ...                       ('max_iter', 'tol'))
        ... except ValueError as error:
        ...     print(str(error).split(': ')[-1])
        got an unexpected keyword argument 'tol'
    """
    try:
        signature = inspect.signature(solver)
    except (TypeError, ValueError):
        return
    keys = tuple(keys)
    try:
        signature.bind(None, None, **dict.fromkeys(keys))
    except TypeError as error:
        call = ", ".join(["func", "x0"] + [f"{k}=..." for k in keys])
        raise ValueError(f"{role} {name!r} cannot be called as the DEQ core calls it, "
                         f"solver({call}): {error}") from None


def named_solver(key: str, name: str, extra: tuple[str, ...] = ()) -> Callable[..., Any]:
    """``get_solver(name)``, its error naming the config key (and the names ``key`` also
    takes besides the registered solvers)."""
    try:
        return get_solver(name)
    except ValueError as error:
        extra = tuple(n for n in extra if n not in registered_solvers())
        also = f" (or {', '.join(repr(n) for n in extra)})" if extra else ""
        raise ValueError(f"config key {key!r}: {error}{also}") from None


def check_solver_kwargs(solver_name: str,
                        solver_kwargs: Mapping[str, Any] | None) -> tuple[dict, int | None]:
    """Check a call's ``solver_kwargs`` against the forward solver; split off ``f_max_iter``.

    Args:
        solver_name: the forward solver's registered name.
        solver_kwargs: the arguments for this call (``None``: none).

    Returns:
        ``(kwargs, f_max_iter)``: the solver's arguments and the per-call budget (``None``
        when not given).

    Raises:
        TypeError: ``solver_kwargs`` is not a dict.
        ValueError: a key the core sets itself, a key the solver does not take (with the
            closest valid ones), or a bad ``f_max_iter``.

    Example:
        >>> check_solver_kwargs('anderson', {'m': 4, 'f_max_iter': 10})
        ({'m': 4}, 10)
    """
    if solver_kwargs is None:
        return {}, None
    if not isinstance(solver_kwargs, Mapping):
        raise TypeError(f"solver_kwargs must be a dict, got {type(solver_kwargs).__name__}")
    kwargs = dict(solver_kwargs)
    budget = kwargs.pop("f_max_iter", None)
    if budget is not None:
        budget = check_value("f_max_iter", budget)
    for key in _RESERVED:
        if key in kwargs:
            hint = " (use 'f_max_iter')" if key == "max_iter" else ""
            raise ValueError(f"solver_kwargs may not set {key!r}: the DEQ core sets it{hint}")
    accepted = solver_parameters(get_solver(solver_name))
    if accepted is not None:
        for key in kwargs:
            if key not in accepted:
                raise unknown_key_error(key, accepted | {"f_max_iter"},
                                        f"argument of solver {solver_name!r}")
    return kwargs, budget
