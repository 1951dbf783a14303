"""``fixed_point`` as a HIPS autograd primitive: npdeq's solvers and IFT gradient for people
who write their model with ``autograd.numpy``.

The forward runs an npdeq solver on plain NumPy arrays; the VJP solves the adjoint fixed
point ``u = J^T u + g`` (J = df/dz at z*) with npdeq's backward solver, each step one
autograd VJP of ``f`` with respect to z, then pulls u back into every parameter that needs a
gradient with one more VJP: one shared adjoint solve per backward pass, whatever the number
of parameters. When autograd differentiates the backward pass itself (``autograd.hessian``,
a gradient of a gradient), the adjoint is returned as this module's own fixed point of
``u = J^T u + g``, so its derivative is one more implicit solve (with J in place of J^T),
and so on for every order. The whole state is solved as one system (a ``(1, D)`` row: no
batch dimension is assumed, so ``f`` may couple every entry). Unlike
``autograd.misc.fixed_points``, every solve has an iteration cap, and a solve that stops
short or meets a non-finite value warns with :class:`~npdeq.exceptions.ConvergenceWarning`
(:mod:`npdeq.solver.failure`). Needs the optional ``autograd`` extra.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

try:
    from autograd import make_vjp
    from autograd.builtins import dict as ag_dict, list as ag_list, tuple as ag_tuple
    from autograd.extend import defvjp_argnums, primitive
    from autograd.tracer import getval, isbox
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("npdeq.interop.autograd needs HIPS autograd: pip install autograd "
                      "(or npdeq's 'autograd' extra)") from exc

from npdeq.exceptions import ConvergenceWarning
from npdeq.grad.adjoint import adjoint_solve, check_adjoint_args, store_backward_stats
from npdeq.solver import get_solver, pack_states, unpack_states
from npdeq.solver.failure import warn_failure, warn_if_failed

__all__ = ["fixed_point", "FORWARD_DEFAULTS", "BACKWARD_DEFAULTS"]

# Scientific use wants tighter solves than a DEQ training step (TorchDEQ's 1e-3 / 40).
FORWARD_DEFAULTS = {"tol": 1e-8, "max_iter": 100, "stop_mode": "abs"}
BACKWARD_DEFAULTS = {"tol": 1e-8, "max_iter": 100, "stop_mode": "abs"}


class _Layout:
    """A state (one array or a tuple of arrays) as one ``(1, D)`` row and back: each array is
    one sample of :func:`~npdeq.solver.pack_states`'s layout."""

    def __init__(self, z0: Any) -> None:
        self.is_tuple = isinstance(z0, (tuple, list))
        parts = [np.asarray(getval(p)) for p in (z0 if self.is_tuple else (z0,))]
        if not parts:
            raise ValueError("z0 is an empty tuple: a state needs at least one array")
        self.shapes = [p.shape for p in parts]
        dtype = np.result_type(*parts)
        self.dtype = dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)

    def pack(self, z: Any, what: str = "f") -> np.ndarray:
        parts = list(z) if self.is_tuple else [z]
        if len(parts) != len(self.shapes):
            raise ValueError(f"{what} returned {len(parts)} state(s); z0 has "
                             f"{len(self.shapes)}")
        parts = [np.asarray(p) for p in parts]
        for i, (p, shape) in enumerate(zip(parts, self.shapes)):
            if p.shape != shape:
                raise ValueError(f"{what} returned shape {p.shape} for state {i}; z0 has "
                                 f"shape {shape}")
        # One part packs to a view of the caller's array: copy it, as joining several does.
        return pack_states([p.reshape(1, -1) for p in parts]).astype(
            self.dtype, copy=len(parts) == 1)

    def unpack(self, row: np.ndarray) -> Any:
        parts = unpack_states(row.reshape(1, -1), [(1, *shape) for shape in self.shapes])
        parts = [p.reshape(shape) for p, shape in zip(parts, self.shapes)]
        return tuple(parts) if self.is_tuple else parts[0]

    def container(self, z: Any) -> Any:
        """``z`` as something autograd traces: a tuple state returned as a plain tuple of
        boxes would look constant to autograd (a silently zero gradient)."""
        return ag_tuple(tuple(z)) if self.is_tuple else z


@dataclass(slots=True)
class _Problem:
    """The non-differentiable part of a call: ``f``, the start and the solver settings."""

    f: Callable[..., Any]
    layout: _Layout
    z0: Any
    solver: str
    solver_kwargs: dict
    b_solver: str
    b_solver_kwargs: dict
    info: dict | None
    order: int = 1  # 1 for z*; n + 1 for the adjoint of an order-n backward pass


_WHO = "npdeq.interop.autograd.fixed_point"
_FORWARD_NONFINITE = ("the forward solve met non-finite values; the result is not a fixed "
                      "point (is f contractive?)")
# No numbers in the messages (they are in info): the default filter then shows each once per
# calling line instead of once per solve.
_FORWARD_NOT_CONVERGED = ("the forward solve stopped at max_iter for some samples; the result "
                          "is approximate (see info['forward']['abs_lowest']; raise max_iter, "
                          "or is f contractive?)")


def _warn_forward(info: dict, z: np.ndarray) -> None:
    # Autograd's tracer calls this module: the warning points past its frames too.
    if not np.all(np.isfinite(z)):
        warn_failure(f"{_WHO}: {_FORWARD_NONFINITE}", skip=("autograd",))
    else:
        warn_if_failed(info, _FORWARD_NONFINITE, _FORWARD_NOT_CONVERGED, who=_WHO,
                       skip=("autograd",))


@primitive
def _solve(problem: _Problem, *params: Any) -> Any:
    layout = problem.layout

    def mapped(row):
        return layout.pack(problem.f(layout.unpack(row), *params))

    solve = get_solver(problem.solver)
    with warnings.catch_warnings():
        # One warning that names this call is raised below instead of the solver's own.
        warnings.simplefilter("ignore", ConvergenceWarning)
        z, _, info = solve(mapped, layout.pack(problem.z0, "z0"), **problem.solver_kwargs)
    _warn_forward(info, z)
    if problem.info is not None and problem.order == 1:
        problem.info["forward"] = info
    return layout.unpack(np.array(z, copy=True))


def _solve_vjp(argnums, ans, args, kwargs):
    problem, params = args[0], args[1:]
    layout = problem.layout
    wanted = [i - 1 for i in argnums]

    def vjp(g):
        traced = isbox(g) or isbox(ans) or any(isbox(p) for p in params)
        z_star = ag_tuple(ans) if layout.is_tuple else ans
        values = [_value(p) for p in params]  # the adjoint solve itself is never traced
        vjp_z, _ = make_vjp(lambda z: layout.container(problem.f(z, *values)))(_value(z_star))

        def transposed(v_row):
            return layout.pack(vjp_z(layout.unpack(v_row)), "the VJP of f")

        def writer(stats):
            if problem.info is not None:
                store_backward_stats(problem.info, dict(stats, order=problem.order))

        u, _ = adjoint_solve(transposed, layout.pack(getval(g), "the cotangent"),
                             problem.b_solver, problem.b_solver_kwargs, writer)
        u = layout.unpack(u)
        if traced:  # a higher derivative: u as a differentiable function of g, z*, params
            u = _adjoint_fixed_point(problem, u, g, z_star, params)

        def at(chosen):
            full = list(params)
            for k, i in enumerate(wanted):
                full[i] = chosen[k]
            return layout.container(problem.f(z_star, *full))

        vjp_params, _ = make_vjp(at)(tuple(params[i] for i in wanted))
        return tuple(vjp_params(u))

    return vjp


def _value(x: Any) -> Any:
    """``x`` with every autograd box removed, inside containers too."""
    x = getval(x)
    if isinstance(x, dict):
        return {k: _value(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_value(v) for v in x) if type(x) in (tuple, list) else \
            tuple(_value(v) for v in x)
    return x


def _adjoint_fixed_point(problem: _Problem, u: Any, g: Any, z_star: Any, params: tuple) -> Any:
    """The adjoint u of ``u = J(z*, params)^T u + g`` as this module's own differentiable
    fixed point, so that autograd can differentiate the backward pass (Hessians): its VJP
    is one more implicit solve, with J in place of J^T, and so on for every order. The
    solution u already found is the start, so the forward solve only confirms it; z*
    enters as the traced result, carrying its own IFT derivative."""
    layout = problem.layout

    def adjoint_map(u, g, z, *params):
        vjp_z, _ = make_vjp(lambda z: layout.container(problem.f(z, *params)))(z)
        w = vjp_z(u)
        if layout.is_tuple:
            return ag_tuple(tuple(a + b for a, b in zip(w, g)))
        return w + g

    inner = _Problem(adjoint_map, layout, u, "fixed_point_iter",
                     dict(problem.b_solver_kwargs, max_iter=max(
                         2, problem.b_solver_kwargs.get("max_iter", 2))),
                     problem.b_solver, problem.b_solver_kwargs, problem.info,
                     problem.order + 1)
    return _solve(inner, g, z_star, *params)


defvjp_argnums(_solve, _solve_vjp)


def _as_container(p: Any) -> Any:
    """Plain tuples/lists/dicts of parameters as autograd containers, so boxes inside them
    are seen by the primitive (a plain container hides them: a silently zero gradient)."""
    if isinstance(p, dict) and not isbox(p):
        return ag_dict({k: _as_container(v) for k, v in p.items()})
    if isinstance(p, (tuple, list)) and not isbox(p):
        items = [_as_container(v) for v in p]
        return ag_tuple(tuple(items)) if isinstance(p, tuple) else ag_list(items)
    return p


def _detached(z: Any) -> Any:
    if isinstance(z, (tuple, list)) or (isbox(z) and isinstance(getval(z), (tuple, list))):
        return tuple(np.asarray(getval(p)) for p in z)
    return np.asarray(getval(z))


def fixed_point(f: Callable[..., Any], z0: Any, *params: Any, solver: str = "anderson",
                solver_kwargs: dict | None = None, b_solver: str = "fixed_point_iter",
                b_solver_kwargs: dict | None = None, info: dict | None = None) -> Any:
    """Solve ``z = f(z, *params)`` with an npdeq solver, differentiable by HIPS autograd.

    ``autograd.grad`` of anything computed from the result gets the implicit (IFT) gradient
    with respect to every parameter, from one shared adjoint solve. The result does not
    depend on ``z0`` (no gradient flows into it).

    Args:
        f: ``f(z, *params) -> z'`` written with ``autograd.numpy``; for a tuple state ``z``
            is a tuple (autograd container) and ``f`` returns a tuple or list.
        z0: initial state: an array of any shape, or a tuple of arrays.
        *params: arrays (or tuples/lists/dicts of arrays) that ``f`` depends on.
        solver: forward solver name (``'anderson'``, ``'fixed_point_iter'``, ``'broyden'``,
            ...).
        solver_kwargs: its arguments; missing ``tol``/``max_iter``/``stop_mode`` default to
            :data:`FORWARD_DEFAULTS` (``1e-8``, ``100``, ``'abs'``).
        b_solver: backward (adjoint) solver name, or ``'direct'`` for a dense solve.
        b_solver_kwargs: its arguments, defaulting to :data:`BACKWARD_DEFAULTS`.
        info: optional dict filled with the solver statistics: ``'forward'`` (and
            ``'backward'`` after a backward pass; ``'backward_higher'``, by order, after
            the solves that second and higher derivatives add).

    Returns:
        z*, shaped like ``z0`` (a tuple for a tuple state; an autograd container when
        traced). A solve that does not converge warns with
        :class:`~npdeq.exceptions.ConvergenceWarning` and returns the solver's best iterate.

    Raises:
        ValueError: an unknown solver, a backward solver argument it does not take, or
            ``f`` returning another structure or shape than ``z0``.

    Example:
        >>> import autograd, autograd.numpy as anp, numpy as np
        >>> f = lambda z, W, b: anp.tanh(anp.dot(W, z) + b)
        >>> W, b = 0.5 * np.eye(3), np.ones(3)
        >>> loss = lambda W, b: anp.sum(fixed_point(f, np.zeros(3), W, b) ** 2)
        >>> dW, db = autograd.grad(loss, (0, 1))(W, b)
        >>> autograd.hessian(loss)(W, b).shape                # second derivatives too
        (3, 3, 3, 3)
    """
    check_adjoint_args(b_solver, b_solver_kwargs)  # a typo fails here, not in the backward
    layout = _Layout(z0)
    problem = _Problem(f, layout, _detached(z0), solver,
                       {**FORWARD_DEFAULTS, **(solver_kwargs or {})}, b_solver,
                       {**BACKWARD_DEFAULTS, **(b_solver_kwargs or {})}, info)
    return _solve(problem, *[_as_container(p) for p in params])
