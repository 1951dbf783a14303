"""``backward_factory``: TorchDEQ's gradient functors, built on the IFT and PhantomGrad rules."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.grad.adjoint import check_adjoint_args
from npdeq.grad.ift import implicit_grad
from npdeq.grad.phantom import check_phantom_memory, phantom_grad
from npdeq.grad.state import as_state_tuple, restore

__all__ = ["backward_factory"]

GradFunctor = Callable[..., list]


def backward_factory(grad_type: str | int = "ift", hook_ift: bool = False,
                     b_solver: str | None = None, b_solver_kwargs: dict | None = None,
                     sup_gap: int = -1, sup_loc: Sequence[int] | None = None, tau: float = 1.0,
                     phantom_memory: str = "store", **ignored: Any) -> GradFunctor:
    """Make a gradient functor for a DEQ's backward pass, with TorchDEQ's names and defaults.

    Args:
        grad_type: ``'ift'`` for implicit differentiation, or an int k for PhantomGrad with
            k unrolled steps (``1`` with ``tau=1`` is the 1-step / JFB gradient).
        hook_ift: accepted for compatibility; npdeq has one IFT implementation (a hand-written
            rule on the tape with O(1) memory in the number of forward iterations), used for
            both values.
        b_solver: IFT backward solver name (default ``'fixed_point_iter'``), or ``'direct'``.
        b_solver_kwargs: its arguments (``tol``, ``max_iter``, ``stop_mode``, ``m``, ``lam``...).
        sup_gap: PhantomGrad: also return every ``sup_gap``-th unrolled state when positive.
        sup_loc: PhantomGrad: also return the states at these (1-based) steps.
        tau: PhantomGrad damping in ``(0, 1]``.
        phantom_memory: PhantomGrad: ``'store'`` keeps the k recorded calls of ``func`` for
            the backward pass (k calls in all), ``'recompute'`` records them again there
            (2k calls, activation memory flat in k); the gradients are the same arrays
            (see :func:`~npdeq.grad.phantom.phantom_grad`).
        **ignored: other DEQ config keys, accepted as TorchDEQ's factory does so that a whole
            config can be passed through.

    Returns:
        ``fn(trainer, func, z_pred, writer=None) -> list`` where ``func`` maps the state (one
        Tensor or several) to the same structure, ``z_pred`` is the solver's state, and the
        list holds gradient-carrying states (one for IFT; the supervised ones for
        PhantomGrad). ``trainer`` is accepted for TorchDEQ compatibility and unused.

    Raises:
        ValueError: a ``grad_type`` that is neither ``'ift'`` nor a positive int, or an
            unknown ``phantom_memory``.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.5 * np.eye(3), requires_grad=True)
        >>> fn = backward_factory('ift', b_solver_kwargs={'tol': 1e-8})
        >>> [z] = fn(None, lambda z: npdeq.tanh(z @ W), np.zeros((2, 3)))
    """
    del ignored, hook_ift
    if grad_type == "ift":
        solver = b_solver or "fixed_point_iter"
        check_adjoint_args(solver, b_solver_kwargs)  # a typo fails here, not at backward()
        kwargs = dict(b_solver_kwargs or {})

        def ift_functor(trainer, func, z_pred, writer=None):
            states = implicit_grad(func, as_state_tuple(z_pred), solver, kwargs, writer)
            return [restore(states, z_pred)]

        return ift_functor
    steps = backend.as_count(grad_type)
    if steps is None or not steps >= 1:
        raise ValueError(
            f"grad_type must be 'ift' or a positive int (PhantomGrad steps), got {grad_type!r}")
    check_phantom_memory(phantom_memory)

    def phantom_functor(trainer, func, z_pred, writer=None):
        outs = phantom_grad(func, as_state_tuple(z_pred), grad_type, tau, sup_gap, sup_loc,
                            phantom_memory)
        return [restore(states, z_pred) for states in outs]

    return phantom_functor
