"""``npdeq.fixed_point``: a differentiable fixed point for users without DEQ modules."""

from __future__ import annotations

from typing import Any, Callable

from npdeq import backend
from npdeq.autodiff import Tensor
from npdeq.grad.adjoint import check_adjoint_args, store_backward_stats
from npdeq.grad.ift import implicit_grad
from npdeq.grad.phantom import check_phantom_memory, phantom_grad
from npdeq.grad.state import as_state_tuple, raw_arrays, restore, solver_map
from npdeq.solver import get_solver

__all__ = ["fixed_point"]


def fixed_point(func: Callable[..., Any], z0: Any, *, solver: str = "anderson",
                grad: str | int | None = "ift", tau: float = 1.0,
                solver_kwargs: dict | None = None, b_solver: str = "fixed_point_iter",
                b_solver_kwargs: dict | None = None,
                phantom_memory: str = "store") -> tuple[Any, dict]:
    """Solve ``z = func(z)`` and return z* carrying the chosen gradient rule.

    Args:
        func: map on Tensors, ``func(z) -> z`` (or ``func(*zs) -> zs`` for a tuple state),
            closing over whatever requires grad (parameters, inputs).
        z0: initial state: a ``(B, ...)`` array or Tensor, or a tuple of them sharing B.
        solver: forward solver name (``'anderson'``, ``'fixed_point_iter'``, ``'broyden'``,
            ``'newton_krylov'``, ``'ode'`` or a registered one).
        grad: ``'ift'`` (implicit differentiation), an int k (PhantomGrad with k damped
            steps; ``1`` is the 1-step gradient), or ``None`` (no gradient).
        tau: PhantomGrad damping.
        solver_kwargs: forward solver arguments (``max_iter``, ``tol``, ``stop_mode``, ...).
        b_solver: IFT backward solver: a registered solver name, ``'gmres'`` (GMRES on the
            linear adjoint equation) or ``'direct'``.
        b_solver_kwargs: its arguments.
        phantom_memory: with PhantomGrad, ``'store'`` keeps the k recorded steps for the
            backward pass, ``'recompute'`` records them again there (memory flat in k); see
            :func:`~npdeq.grad.phantom.phantom_grad`.

    Returns:
        ``(z, info)``: ``z`` a Tensor (tuple of Tensors for a tuple state); ``info`` the
        forward solver's statistics, whose ``'backward'`` entry holds the backward solver's
        statistics once a backward pass has run (``None`` before); the solves that higher
        derivatives add (IFT under ``create_graph=True``) are in ``'backward_higher'``, by
        order (see :func:`~npdeq.grad.adjoint.store_backward_stats`).

    Raises:
        ValueError: an unknown ``grad``, solver, backward solver or ``phantom_memory``, or a
            backward solver argument it does not take (before any solve).

    Example:
        >>> import numpy as np, npdeq
        >>> A = npdeq.tensor(np.array([[0.5, 0.1], [0.0, 0.3]]), requires_grad=True)
        >>> b = npdeq.tensor(np.ones((1, 2)), requires_grad=True)
        >>> z, info = npdeq.fixed_point(lambda z: z @ A.T + b, np.zeros((1, 2)),
        ...                             solver_kwargs={"tol": 1e-10})
        >>> z.sum().backward()
        >>> A.grad is not None and b.grad is not None
        True
    """
    steps = None if grad is None or isinstance(grad, str) else backend.as_count(grad)
    if not (grad is None or grad == "ift" or (steps is not None and steps >= 1)):
        raise ValueError(f"grad must be 'ift', a positive int (PhantomGrad steps) or None, "
                         f"got {grad!r}")
    states = as_state_tuple(z0)
    arrays = raw_arrays(states)
    single = not isinstance(z0, (tuple, list))
    solve = get_solver(solver)
    if grad == "ift":
        check_adjoint_args(b_solver, b_solver_kwargs)  # fails here, not in backward()
    check_phantom_memory(phantom_memory)
    z_star, _, info = solve(solver_map(func, z0), arrays[0] if single else arrays,
                            **(solver_kwargs or {}))
    z_star = as_state_tuple(z_star)
    info["backward"] = None
    if grad is None:
        return restore(tuple(Tensor(z) for z in z_star), z0), info
    if grad == "ift":
        def writer(stats):
            store_backward_stats(info, stats)
        out = implicit_grad(func, z_star, b_solver, b_solver_kwargs, writer)
    else:
        out = phantom_grad(func, z_star, grad, tau, memory=phantom_memory)[-1]
    return restore(out, z0), info
