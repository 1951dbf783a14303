"""PhantomGrad (and the 1-step / JFB gradient) as one hand-written rule on the tape.

The gradient of k damped steps ``z <- tau * f(z) + (1 - tau) * z`` started from the detached
solution z*. Two ways to keep what the backward needs (``memory``):

- ``'store'`` (the default): the forward records ``f`` at each of the k states and keeps the k
  graphs; the backward pulls the cotangent back through them in reverse. k calls of ``f`` in
  all (TorchDEQ's count); activation memory grows with k.
- ``'recompute'``: the forward keeps only the k input states (raw arrays) and the backward
  re-records ``f`` at one state at a time, so activation memory does not grow with k, at the
  price of k more calls of ``f`` (2k in all).

Both give the same arrays: every step is recorded at the same leaves, and the backward sweep
is the same code. Under ``create_graph=True`` the backward records the k steps again as one
chain from the detached z* (k more calls of ``f``) and differentiates that, so second and
higher derivatives are those of the unrolled k-step approximation. The rule's parents
are the tensors from outside ``f`` that its graph reaches (found with
:mod:`npdeq.grad.externals`); their cotangents come from one shared reverse sweep. Imports
the tape and ``state``/``externals``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff import (Tensor, defvjp_argnums, enable_grad, is_grad_enabled, no_grad,
                            primitive, stack, zeros_like)
from npdeq.autodiff.engine import partial_grad
from npdeq.grad.externals import outside_tensors, tape_clock
from npdeq.grad.state import raw_arrays, call_state_func, pack_tensors, unpack_tensors

__all__ = ["phantom_grad", "supervised_steps", "check_phantom_memory", "PHANTOM_MEMORY"]


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


# The values of phantom_grad's ``memory``: keep the k recorded steps, or re-record them.
PHANTOM_MEMORY = ("store", "recompute")


class _Unrolled:
    """The saved forward of one PhantomGrad call: the input state of each step (raw arrays)
    and, with ``memory='store'``, each step's recorded graph."""

    __slots__ = ("func", "inputs", "shapes", "tau", "steps", "output", "recorded")

    def __init__(self, func, inputs, shapes, tau, steps, output, recorded):
        self.func = func
        self.inputs = inputs      # the input state of each step, packed (B, D)
        self.shapes = shapes
        self.tau = tau
        self.steps = steps
        self.output = output
        self.recorded = recorded  # [(z_leaves, f_packed)] per step, or None

    def take_output(self):
        out, self.output = self.output, None
        return out

    def step_graph(self, j):
        """The leaves and the packed output of step ``j``'s recorded ``f``."""
        if self.recorded is not None:
            return self.recorded[j]
        return _record_step(self.func, self.inputs[j], self.shapes)


def _record_step(func, packed, shapes):
    """Record ``func`` at the state ``packed`` (B, D) from fresh leaves: ``(leaves, f_packed)``.
    Every call of a step goes through here or :func:`_call_step`, so both memory modes see
    the same arrays."""
    with enable_grad():
        z_leaves = _state_tensors(packed, shapes, True)
        return z_leaves, _pack(call_state_func(func, z_leaves))


def _call_step(func, packed, shapes):
    """``func`` at the state ``packed``, not recorded, packed."""
    with no_grad():
        return _pack(call_state_func(func, _state_tensors(packed, shapes, False))).data


def _state_tensors(packed, shapes, requires_grad):
    if len(shapes) == 1 and len(shapes[0]) == 2:  # one (B, D) state: no unpacking
        return (Tensor(packed, requires_grad=requires_grad),)
    return tuple(Tensor(z.data, requires_grad=requires_grad)
                 for z in unpack_tensors(Tensor(packed), shapes))


def _pack(outs):
    return outs[0] if len(outs) == 1 and len(outs[0].shape) == 2 else pack_tensors(outs)


phantom_unroll = primitive(lambda *outside, run: run.take_output(), name="phantom_grad")


def _phantom_vjp(argnums, g, ans, *outside, run):
    if is_grad_enabled():
        return _recorded_vjp(argnums, g, outside, run)
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
        z_leaves, f_packed = run.step_graph(j)
        grads = partial_grad(f_packed, list(z_leaves) + wanted, Tensor(tau * adjoint))
        z_grads = [gz.data if gz is not None else xp.zeros_like(z.data)
                   for gz, z in zip(grads[:len(z_leaves)], z_leaves)]
        packed = (z_grads[0] if len(z_grads) == 1 and z_grads[0].ndim == 2 else
                  xp.concat([xp.reshape(a, (a.shape[0], -1)) for a in z_grads], axis=1))
        adjoint = packed + (1.0 - tau) * adjoint
        for i, gp in enumerate(grads[len(z_leaves):]):
            if gp is not None:
                totals[i] = gp.data if totals[i] is None else totals[i] + gp.data
    return tuple(Tensor(t if t is not None else w.data * 0) for t, w in zip(totals, wanted))


def _recorded_vjp(argnums, g, outside, run):
    """The rule's backward on the tape (``create_graph=True``): the k damped steps from the
    detached z* recorded again as one differentiable chain (k more calls of ``f``), and its
    gradient with respect to the outside tensors recorded too. Its derivatives are those
    of the unrolled approximation, which is what PhantomGrad differentiates."""
    wanted = [outside[i] for i in argnums]
    selected = set(run.steps)
    z, states = Tensor(run.inputs[0]), []
    for step in range(1, run.steps[-1] + 1):
        f_z = _pack(call_state_func(run.func, _unpacked(z, run.shapes)))
        z = run.tau * f_z + (1.0 - run.tau) * z
        if step in selected:
            states.append(z)
    grads = partial_grad(stack(states, axis=0), wanted, g, create_graph=True)
    return tuple(zeros_like(w) if gw is None else gw for gw, w in zip(grads, wanted))


def _unpacked(packed, shapes):
    if len(shapes) == 1 and len(shapes[0]) == 2:
        return (packed,)
    return unpack_tensors(packed, shapes)


defvjp_argnums(phantom_unroll, _phantom_vjp)


def phantom_grad(func: Callable[..., Any], z_star: tuple[Any, ...], k: int = 1,
                 tau: float = 1.0, sup_gap: int = -1,
                 sup_loc: Sequence[int] | None = None,
                 memory: str = "store") -> list[tuple[Tensor, ...]]:
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
        memory: ``'store'`` keeps the k recorded calls of ``func`` until the backward pass
            (k calls in all, as TorchDEQ; activation memory grows with k); ``'recompute'``
            keeps only the k input states and records ``func`` again at each of them in the
            backward pass (2k calls; memory flat in k). The gradients are the same arrays.

    Returns:
        One state tuple per step in :func:`supervised_steps`, each carrying the gradient of
        the unrolled steps up to it (detached values under ``no_grad()``: nothing is
        recorded then).

    Raises:
        ValueError: ``k < 1``, ``tau`` outside ``(0, 1]`` or an unknown ``memory``.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.5 * np.eye(2), requires_grad=True)
        >>> f = lambda z: npdeq.tanh(z @ W)
        >>> [(z,)] = phantom_grad(f, (np.ones((1, 2)),), k=3, tau=0.8, memory='recompute')
        >>> z.sum().backward()
        >>> W.grad.shape
        (2, 2)
    """
    steps_k = backend.as_count(k)
    if steps_k is None or steps_k < 1:
        raise ValueError(f"PhantomGrad needs k >= 1 unrolled steps, got {k!r}")
    k = steps_k
    tau = backend.check_real("tau", tau, 0.0, 1.0, low_open=True)
    check_phantom_memory(memory)
    steps = supervised_steps(k, sup_gap, sup_loc)
    if not is_grad_enabled():
        # Under no_grad nothing may be recorded: the same k steps on plain values.
        return _unrolled_values(func, raw_arrays(z_star), steps, tau)
    store = memory == "store"
    arrays = raw_arrays(z_star)
    shapes = [tuple(a.shape) for a in arrays]
    z = pack_tensors([Tensor(a) for a in arrays]).data
    clock = tape_clock()
    leaves, first = _record_step(func, z, shapes)
    outside = outside_tensors((first,), leaves, clock)
    f_z = first.data
    recorded = [(leaves, first)] if store and outside else None
    del leaves, first
    inputs, states = [], []
    for step in range(1, k + 1):
        inputs.append(z)
        if step > 1:
            if recorded is not None:
                recorded.append(_record_step(func, z, shapes))
                f_z = recorded[-1][1].data
            else:
                f_z = _call_step(func, z, shapes)
        z = tau * f_z + (1.0 - tau) * z
        if step in steps:
            states.append(z)
    xp = Tensor(z).xp
    stacked = xp.stack(states, axis=0)
    if not outside:
        return [unpack_tensors(Tensor(s), shapes) for s in states]
    run = _Unrolled(func, inputs, shapes, tau, steps, stacked, recorded)
    out = phantom_unroll(*outside, run=run)
    return [unpack_tensors(out[i, :, :], shapes) for i in range(len(steps))]


def check_phantom_memory(memory: Any) -> str:
    """Check PhantomGrad's ``memory`` choice (one of :data:`PHANTOM_MEMORY`).

    Raises:
        ValueError: naming the value and the choices.
    """
    if not isinstance(memory, str) or memory not in PHANTOM_MEMORY:
        raise ValueError(f"PhantomGrad memory must be one of {PHANTOM_MEMORY}, got {memory!r}")
    return memory


def _unrolled_values(func, z_star, steps, tau):
    """The states :func:`phantom_grad` returns, computed without recording anything."""
    z = tuple(Tensor(a) for a in z_star)
    states = []
    for step in range(1, steps[-1] + 1):
        z = tuple(tau * o + (1.0 - tau) * s for o, s in zip(call_state_func(func, z), z))
        if step in steps:
            states.append(tuple(s.detach() for s in z))
    return states
