"""Implicit differentiation (IFT) as one hand-written rule on the tape.

``implicit_grad`` records ``f`` once at the solution z* (from a fresh leaf) and returns its
value through a primitive ``implicit_correction`` whose VJP turns the incoming cotangent g
into the adjoint solution u of ``u = J^T u + g`` (J = df/dz at z*, each solver step one VJP
of the recorded graph with respect to z). The engine then carries u on through the recorded
graph into the parameters and the input injection. The graph is one call of f, whatever the
number of forward iterations.

Under ``create_graph=True`` the rule's backward is itself recorded, so derivatives of every
order exist: u is attached to its own fixed-point equation by this same rule, and ``f`` is
recorded again at the IFT-corrected state (see ``_recorded_vjp``). A Hessian-vector product
costs the first-order adjoint solve plus one more solve, with J instead of J^T, in the
second backward pass; no forward iteration is ever stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from npdeq import backend
from npdeq.autodiff import (Tensor, defvjp, defvjp_argnums, enable_grad, is_grad_enabled,
                            no_grad, primitive, zeros_like)
from npdeq.autodiff.engine import partial_grad
from npdeq.autodiff.program import vjp_program
from npdeq.grad.adjoint import adjoint_solve, check_adjoint_args
from npdeq.grad.externals import outside_tensors, tape_clock
from npdeq.grad.state import call_state_func, pack_tensors, raw_arrays, unpack_tensors
from npdeq.solver.state import pack_states

__all__ = ["implicit_grad"]


@dataclass(slots=True)
class _AdjointProblem:
    """What the rule needs besides its arguments: the solution z*, the solver settings and
    ``func`` (recorded again at the IFT-corrected state for a differentiable backward)."""

    func: Callable[..., Any]
    z_leaves: tuple[Tensor, ...]
    b_solver: str
    b_solver_kwargs: dict | None
    writer: Callable[[dict], Any] | None
    order: int  # which derivative this rule's adjoint solve serves

    def write(self, stats):
        stats["order"] = self.order
        if self.writer is not None:
            self.writer(stats)


# The value of f(z*), packed (B, D). Its parents are f's recorded output and the tensors
# from outside f that the recording reaches: the first-order rule hands the adjoint to the
# former (the engine carries it through the recorded f), the recorded one (create_graph)
# hands each outside tensor its gradient itself.
implicit_correction = primitive(lambda f_packed, *outside, problem: f_packed,
                                name="implicit_correction")


def _implicit_correction_vjp(argnums, g, ans, f_packed, *outside, problem):
    if is_grad_enabled():
        return _recorded_vjp(argnums, g, ans, f_packed, outside, problem)
    return (_adjoint(g.data, f_packed, problem),) + (None,) * (len(argnums) - 1)


def _adjoint(g, f_packed, problem):
    """The adjoint solution u of ``u = J^T u + g`` (raw (B, D)), J^T from the recorded f."""
    xp = backend.array_namespace(g)
    # The same VJP at every iteration of the adjoint solve: walk the graph once, here.
    program = vjp_program(f_packed, problem.z_leaves, allow_unused=True)
    z_leaves = problem.z_leaves

    def vjp_z(v):
        grads = program(Tensor(v))
        return pack_states([xp.zeros_like(z.data) if gz is None else gz.data
                            for gz, z in zip(grads, z_leaves)])

    with no_grad():
        u, _ = adjoint_solve(vjp_z, g, problem.b_solver, problem.b_solver_kwargs,
                             problem.write)
    return u


def _recorded_vjp(argnums, g, ans, f_packed, outside, problem):
    """The rule's backward as a function on the tape (``create_graph=True``).

    The gradient handed to the outside tensors is ``(df/dtheta)^T u`` at the solution,
    where u solves ``u = J^T u + g``. To record it differentiably, both factors are
    rebuilt as functions of everything they depend on:

    - the state enters as Z, the value z* carrying the derivative of this rule's output
      (``dz*/dtheta = (I - J)^-1 df/dtheta``, the IFT-corrected state), so that derivatives
      of J and of ``df/dtheta`` with respect to theta include the motion of z*;
    - u is itself a fixed point, of ``h(u) = J(Z, theta)^T u + g``: it is solved once and
      attached to ``h`` by this same rule (``implicit_grad``), so its derivative is another
      implicit solve, with J in place of J^T, and every further order nests the same way.

    ``f_packed`` gets nothing: its recording holds z* as a constant.
    """
    u = _adjoint(g.data, f_packed, problem)
    shapes = [tuple(z.shape) for z in problem.z_leaves]
    z_data = pack_states(raw_arrays(problem.z_leaves))
    z_state = unpack_tensors(carry_gradient(z_data, ans), shapes)
    f_z = pack_tensors(call_state_func(problem.func, z_state))

    def h(u_state):
        z_grads = partial_grad(f_z, z_state, u_state, create_graph=True)
        z_grads = [zeros_like(z) if gz is None else gz for gz, z in zip(z_grads, z_state)]
        return pack_tensors(z_grads) + g

    (u_tensor,) = implicit_grad(h, (u,), problem.b_solver, problem.b_solver_kwargs,
                                problem.writer, _order=problem.order + 1)
    wanted = [outside[i - 1] for i in argnums if i > 0]
    grads = partial_grad(f_z, list(z_state) + wanted, u_tensor, create_graph=True)
    by_argnum = dict(zip([i for i in argnums if i > 0], grads[len(z_state):]))
    return tuple(None if i == 0 else by_argnum[i] for i in argnums)


# ``value`` (a raw array) with the derivative of ``carrier``: the cotangent passes through.
carry_gradient = primitive(lambda value, carrier: value, name="carry_gradient")
defvjp(carry_gradient, None, lambda g, ans, value, carrier: g)

defvjp_argnums(implicit_correction, _implicit_correction_vjp)


def implicit_grad(func: Callable[..., Any], z_star: tuple[Any, ...],
                  b_solver: str = "fixed_point_iter", b_solver_kwargs: dict | None = None,
                  writer: Callable[[dict], Any] | None = None, *,
                  _order: int = 1) -> tuple[Tensor, ...]:
    """Attach the IFT gradient to a solved fixed point.

    Args:
        func: the DEQ map on Tensors, ``func(*zs) -> zs'``, closing over whatever requires
            grad (parameters, the input injection).
        z_star: the solution, a tuple of ``(B, ...)`` arrays or Tensors (taken detached).
        b_solver: backward solver name, or ``'direct'`` for a dense per-sample solve.
        b_solver_kwargs: its arguments (``tol``, ``max_iter``, ``stop_mode``, ``m``, ...).
        writer: receives the backward solver's statistics at each backward pass, with
            ``'order'``: 1 for the adjoint solve of a gradient, 2 for the solve that a
            derivative of that gradient adds (``create_graph=True``), and so on.

    Returns:
        A tuple of Tensors with the values of ``func(*z_star)`` whose gradients with respect
        to everything ``func`` closes over are the implicit ones, to every order (the
        backward pass can be recorded with ``create_graph=True`` and differentiated
        again). When nothing in ``func`` requires grad, or under ``no_grad()`` (nothing is
        recorded then), detached values.

    Raises:
        ValueError/TypeError: ``func`` returns a different structure than ``z_star``; an
            unknown ``b_solver`` or an argument it does not take.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.5 * np.eye(2), requires_grad=True)
        >>> f = lambda z: npdeq.tanh(z @ W) + 1.0
        >>> (z,) = implicit_grad(f, (np.zeros((1, 2)),))
        >>> (g,) = npdeq.grad((z ** 2).sum(), [W], create_graph=True)  # recorded
        >>> npdeq.grad(g.sum(), W).shape                                 # a second order
        (2, 2)
    """
    check_adjoint_args(b_solver, b_solver_kwargs)  # a typo fails here, not at backward()
    if not is_grad_enabled():
        # Under no_grad nothing may be recorded: f(z*) as plain values, no rule attached.
        return tuple(o.detach() for o in
                     call_state_func(func, tuple(Tensor(z) for z in raw_arrays(z_star))))
    with enable_grad():
        z_leaves = tuple(Tensor(z, requires_grad=True) for z in raw_arrays(z_star))
        since = tape_clock()
        f_out = call_state_func(func, z_leaves)
        f_packed = pack_tensors(f_out)
        outside = outside_tensors((f_packed,), z_leaves, since)
        if not outside:
            return tuple(o.detach() for o in f_out)
        problem = _AdjointProblem(func, z_leaves, b_solver, b_solver_kwargs, writer, _order)
        corrected = implicit_correction(f_packed, *outside, problem=problem)
        shapes = [tuple(z.shape) for z in z_leaves]
        return unpack_tensors(corrected, shapes)
