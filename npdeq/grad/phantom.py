"""PhantomGrad (and the 1-step / JFB gradient) as one hand-written rule on the tape.

The gradient of k damped steps ``z <- tau * f(z) + (1 - tau) * z`` started from the detached
solution z*. The forward keeps only the k input states of the steps (raw arrays); the
backward walks them in reverse, re-recording ``f`` at one state at a time and pulling the
cotangent back through it, so activation memory does not grow with k. The rule's parents
are the tensors from outside ``f`` that its graph reaches (found with
:mod:`npdeq.grad.externals`); their cotangents come from one shared reverse sweep. Imports
the tape and ``state``/``externals``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff import (Tensor, defvjp_argnums, enable_grad, is_grad_enabled, no_grad,
                            primitive)
from npdeq.autodiff.engine import partial_grad
from npdeq.grad.externals import outside_tensors, tape_clock
from npdeq.grad.state import raw_arrays, call_state_func, pack_tensors, unpack_tensors

__all__ = ["phantom_grad", "supervised_steps"]


def supervised_steps(k: int, sup_gap: int = -1, sup_loc: Sequence[int] | None = None) -> list[int]:
    """The unrolled steps (1-based, in ``1..k``) whose states PhantomGrad returns.

    Every ``sup_gap``-th step when ``sup_gap > 0``, the steps listed in ``sup_loc``, and
    always the last step ``k``.

    Raises:
        ValueError: a ``sup_loc`` entry outside ``1..k``.
    """
    steps = {k}
    if sup_gap is not None and sup_gap > 0:
        steps.update(range(sup_gap, k + 1, sup_gap))
    for s in sup_loc or ():
        if not 1 <= s <= k:
            raise ValueError(f"sup_loc entry {s} is outside the unrolled steps 1..{k}")
        steps.add(int(s))
    return sorted(steps)


class _Unrolled:
    """The saved forward of one PhantomGrad call (no tape inside: raw arrays only)."""

    __slots__ = ("func", "inputs", "shapes", "tau", "steps", "output")

    def __init__(self, func, inputs, shapes, tau, steps, output):
        self.func = func
        self.inputs = inputs      # the input state of each step, packed (B, D)
        self.shapes = shapes
        self.tau = tau
        self.steps = steps
        self.output = output

    def take_output(self):
        out, self.output = self.output, None
        return out


phantom_unroll = primitive(lambda *outside, run: run.take_output(), name="phantom_grad")


def _phantom_vjp(argnums, g, ans, *outside, run):
    if is_grad_enabled():
        raise NotImplementedError(
            "create_graph=True through the PhantomGrad rule is not supported")
    xp = g.xp
    cotangent = g.data
    selected = {step: i for i, step in enumerate(run.steps)}
    wanted = [outside[i] for i in argnums]
    totals = [None] * len(wanted)
    adjoint = xp.zeros_like(cotangent[0, :, :])
    tau = run.tau
    for j in range(len(run.inputs) - 1, -1, -1):  # step j maps input j to state j + 1
        if j + 1 in selected:
            adjoint = adjoint + cotangent[selected[j + 1], :, :]
        with enable_grad():
            z_leaves = unpack_tensors(Tensor(run.inputs[j], requires_grad=True), run.shapes)
            z_leaves = tuple(Tensor(z.data, requires_grad=True) for z in z_leaves)
            f_packed = pack_tensors(call_state_func(run.func, z_leaves))
            grads = partial_grad(f_packed, list(z_leaves) + wanted,
                                 Tensor(tau * adjoint))
        z_grads = [gz.data if gz is not None else z.data * 0
                   for gz, z in zip(grads[:len(z_leaves)], z_leaves)]
        adjoint = pack_tensors([Tensor(a) for a in z_grads]).data + (1.0 - tau) * adjoint
        for i, gp in enumerate(grads[len(z_leaves):]):
            if gp is not None:
                totals[i] = gp.data if totals[i] is None else totals[i] + gp.data
    return tuple(Tensor(t if t is not None else w.data * 0) for t, w in zip(totals, wanted))


defvjp_argnums(phantom_unroll, _phantom_vjp)


def phantom_grad(func: Callable[..., Any], z_star: tuple[Any, ...], k: int = 1,
                 tau: float = 1.0, sup_gap: int = -1,
                 sup_loc: Sequence[int] | None = None) -> list[tuple[Tensor, ...]]:
    """Unroll k damped steps from z* and attach their gradient (PhantomGrad).

    Args:
        func: the DEQ map on Tensors, ``func(*zs) -> zs'``, closing over whatever requires
            grad.
        z_star: the starting state, a tuple of ``(B, ...)`` arrays or Tensors (detached).
        k: number of unrolled steps (``grad`` in TorchDEQ's config); ``k=1, tau=1`` is the
            1-step (JFB) gradient.
        tau: damping, ``0 < tau <= 1``.
        sup_gap: also return every ``sup_gap``-th state when positive.
        sup_loc: also return the states at these steps (1-based).

    Returns:
        One state tuple per step in :func:`supervised_steps`, each carrying the gradient of
        the unrolled steps up to it (detached values under ``no_grad()``: nothing is
        recorded then).

    Raises:
        ValueError: ``k < 1`` or ``tau`` outside ``(0, 1]``.
    """
    steps_k = backend.as_count(k)
    if steps_k is None or steps_k < 1:
        raise ValueError(f"PhantomGrad needs k >= 1 unrolled steps, got {k!r}")
    k = steps_k
    tau = backend.check_real("tau", tau, 0.0, 1.0, low_open=True)
    steps = supervised_steps(k, sup_gap, sup_loc)
    if not is_grad_enabled():
        # Under no_grad nothing may be recorded: the same k steps on plain values.
        return _unrolled_values(func, raw_arrays(z_star), steps, tau)
    clock = tape_clock()
    with enable_grad():
        leaves = tuple(Tensor(z, requires_grad=True) for z in raw_arrays(z_star))
        first = call_state_func(func, leaves)
    outside = outside_tensors(first, leaves, clock)
    shapes = [tuple(z.shape) for z in leaves]
    z = pack_tensors([Tensor(a.data) for a in leaves]).data
    f_z = pack_tensors([o.detach() for o in first]).data
    del first
    inputs, states = [], []
    for step in range(1, k + 1):
        inputs.append(z)
        if step > 1:
            with no_grad():
                f_z = pack_tensors(call_state_func(func, unpack_tensors(Tensor(z), shapes))).data
        z = tau * f_z + (1.0 - tau) * z
        if step in steps:
            states.append(z)
    xp = Tensor(z).xp
    stacked = xp.stack(states, axis=0)
    if not outside:
        return [unpack_tensors(Tensor(s), shapes) for s in states]
    run = _Unrolled(func, inputs, shapes, tau, steps, stacked)
    out = phantom_unroll(*outside, run=run)
    return [unpack_tensors(out[i, :, :], shapes) for i in range(len(steps))]


def _unrolled_values(func, z_star, steps, tau):
    """The states :func:`phantom_grad` returns, computed without recording anything."""
    z = tuple(Tensor(a) for a in z_star)
    states = []
    for step in range(1, steps[-1] + 1):
        z = tuple(tau * o + (1.0 - tau) * s for o, s in zip(call_state_func(func, z), z))
        if step in steps:
            states.append(tuple(s.detach() for s in z))
    return states
