"""Implicit differentiation (IFT) as one hand-written rule on the tape.

``implicit_grad`` records ``f`` once at the solution z* (from a fresh leaf) and returns its
value through a primitive ``implicit_correction`` whose VJP turns the incoming cotangent g
into the adjoint solution u of ``u = J^T u + g`` (J = df/dz at z*, each solver step one VJP
of the recorded graph with respect to z). The engine then carries u on through the recorded
graph into the parameters and the input injection. The graph is one call of f, whatever the
number of forward iterations. Imports the tape, the solvers (through ``adjoint``) and
``state``.
"""

from __future__ import annotations

from typing import Any, Callable

from npdeq.autodiff import Tensor, defvjp, enable_grad, is_grad_enabled, primitive
from npdeq.autodiff.program import vjp_program
from npdeq.grad.adjoint import adjoint_solve, check_adjoint_args
from npdeq.grad.state import raw_arrays, call_state_func, pack_tensors, unpack_tensors

__all__ = ["implicit_grad"]


class _AdjointProblem:
    """What the rule needs besides its arguments: the leaves z* and the solver settings."""

    __slots__ = ("z_leaves", "b_solver", "b_solver_kwargs", "writer")

    def __init__(self, z_leaves, b_solver, b_solver_kwargs, writer):
        self.z_leaves = z_leaves
        self.b_solver = b_solver
        self.b_solver_kwargs = b_solver_kwargs
        self.writer = writer


implicit_correction = primitive(lambda f_packed, problem: f_packed, name="implicit_correction")


def _implicit_correction_vjp(g, ans, f_packed, problem):
    if is_grad_enabled():
        raise NotImplementedError(
            "create_graph=True through the IFT rule is not supported: the adjoint solve is "
            "not itself recorded (second derivatives of a DEQ need an unrolled gradient)")
    xp = g.xp

    # The same VJP at every iteration of the adjoint solve: walk the graph once, here.
    program = vjp_program(f_packed, problem.z_leaves, allow_unused=True)
    z_leaves = problem.z_leaves
    batch = g.shape[0]

    def vjp_z(v):
        grads = program(Tensor(v))
        grads = [xp.zeros_like(z.data) if gz is None else gz.data
                 for gz, z in zip(grads, z_leaves)]
        if len(grads) == 1:
            return grads[0] if grads[0].ndim == 2 else xp.reshape(grads[0], (batch, -1))
        return xp.concat([xp.reshape(a, (batch, -1)) for a in grads], axis=1)

    u, _ = adjoint_solve(vjp_z, g.data, problem.b_solver, problem.b_solver_kwargs,
                         problem.writer)
    return Tensor(u)


defvjp(implicit_correction, _implicit_correction_vjp)


def implicit_grad(func: Callable[..., Any], z_star: tuple[Any, ...],
                  b_solver: str = "fixed_point_iter", b_solver_kwargs: dict | None = None,
                  writer: Callable[[dict], Any] | None = None) -> tuple[Tensor, ...]:
    """Attach the IFT gradient to a solved fixed point.

    Args:
        func: the DEQ map on Tensors, ``func(*zs) -> zs'``, closing over whatever requires
            grad (parameters, the input injection).
        z_star: the solution, a tuple of ``(B, ...)`` arrays or Tensors (taken detached).
        b_solver: backward solver name, or ``'direct'`` for a dense per-sample solve.
        b_solver_kwargs: its arguments (``tol``, ``max_iter``, ``stop_mode``, ``m``, ...).
        writer: receives the backward solver's statistics at each backward pass.

    Returns:
        A tuple of Tensors with the values of ``func(*z_star)`` whose gradients with respect
        to everything ``func`` closes over are the implicit ones. When nothing in ``func``
        requires grad, or under ``no_grad()`` (nothing is recorded then), detached values.

    Raises:
        ValueError/TypeError: ``func`` returns a different structure than ``z_star``; an
            unknown ``b_solver`` or an argument it does not take.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.5 * np.eye(2), requires_grad=True)
        >>> f = lambda z: npdeq.tanh(z @ W) + 1.0
        >>> (z,) = implicit_grad(f, (np.zeros((1, 2)),))
    """
    check_adjoint_args(b_solver, b_solver_kwargs)  # a typo fails here, not at backward()
    if not is_grad_enabled():
        # Under no_grad nothing may be recorded: f(z*) as plain values, no rule attached.
        return tuple(o.detach() for o in
                     call_state_func(func, tuple(Tensor(z) for z in raw_arrays(z_star))))
    with enable_grad():
        z_leaves = tuple(Tensor(z, requires_grad=True) for z in raw_arrays(z_star))
        f_out = call_state_func(func, z_leaves)
        # One (B, D) state needs no packing (one op less in every VJP of the adjoint solve).
        flat = len(f_out) == 1 and len(f_out[0].shape) == 2
        f_packed = f_out[0] if flat else pack_tensors(f_out)
        problem = _AdjointProblem(z_leaves, b_solver, b_solver_kwargs, writer)
        if not _depends_on_outside(f_packed, z_leaves):
            return tuple(o.detach() for o in f_out)
        corrected = implicit_correction(f_packed, problem)
        return (corrected,) if flat else unpack_tensors(corrected,
                                                        [tuple(z.shape) for z in z_leaves])


def _depends_on_outside(f_packed: Tensor, z_leaves: tuple[Tensor, ...]) -> bool:
    """Whether the recorded graph reaches a tensor that requires grad besides z itself."""
    ids = {id(z) for z in z_leaves}
    stack, seen = [f_packed], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t._node is None:
            if id(t) not in ids and t.requires_grad:
                return True
            continue
        stack.extend(p for _, p in t._node.parents)
    return False
