"""PhantomGrad (and the 1-step / JFB gradient): k damped steps as k recompute nodes.

The gradient of k damped steps ``z <- tau * f(z) + (1 - tau) * z`` started from the detached
solution z*. Each step is one :func:`~npdeq.grad.recompute.rerun_in_backward` node on the
previous step's state and the tensors from outside ``f`` that its graph reaches (found
once, with :mod:`npdeq.grad.externals`), so the engine chains the k steps' backward passes.
Two ways to keep what the backward needs (``memory``):

- ``'store'`` (the default): the forward records each step and keeps the k graphs; the
  backward pulls the cotangent back through them. k calls of ``f`` in all (TorchDEQ's
  count); activation memory grows with k.
- ``'recompute'``: the forward keeps only the k states and the backward records one step
  at a time again, so activation memory does not grow with k, at the price of k more calls
  of ``f`` (2k in all).

Both give the same arrays: every step is the same function of the same arrays. Under
``create_graph=True`` each node records its step again from its input state, so second and
higher derivatives are those of the unrolled k-step approximation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff import Tensor, defvjp, enable_grad, is_grad_enabled, no_grad, primitive
from npdeq.grad.externals import outside_tensors, tape_clock
from npdeq.grad.recompute import Recorded, record, rerun_in_backward
from npdeq.grad.state import call_state_func, pack_tensors, raw_arrays, unpack_tensors
from npdeq.solver.state import pack_states

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


# ``tau * f(z) + (1 - tau) * z`` as one op: a recorded step keeps f's graph and this op's
# output, no intermediate array; its VJPs are the two scalings.
damped = primitive(lambda f_z, z, tau: tau * f_z + (1.0 - tau) * z, name="damped")
defvjp(damped, lambda g, ans, f_z, z, tau: g * tau,
       lambda g, ans, f_z, z, tau: g * (1.0 - tau))


@dataclass(slots=True)
class _DampedStep:
    """One damped step on the packed ``(B, D)`` state, with tape ops."""

    func: Callable[..., Any]
    shapes: list[tuple[int, ...]]
    tau: float

    def __call__(self, z: Tensor) -> Tensor:
        f_z = pack_tensors(call_state_func(self.func, unpack_tensors(z, self.shapes)))
        return damped(f_z, z, tau=self.tau)


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
    if steps_k is None or not steps_k >= 1:
        raise ValueError(f"PhantomGrad needs k >= 1 unrolled steps, got {k!r}")
    k = steps_k
    tau = backend.check_real("tau", tau, 0.0, 1.0, low_open=True)
    check_phantom_memory(memory)
    steps = supervised_steps(k, sup_gap, sup_loc)
    arrays = raw_arrays(z_star)
    shapes = [tuple(a.shape) for a in arrays]
    step = _DampedStep(func, shapes, tau)
    z = Tensor(pack_states(arrays))
    if not is_grad_enabled():  # nothing may be recorded: the same k steps on plain values
        return _unrolled(step, z, steps, k, None, None)
    # Step 1 recorded once from the constant z* finds what f closes over.
    clock = tape_clock()
    with enable_grad():
        first = Recorded((z,), step(z))
    outside = outside_tensors((first.output,), (z,), clock)
    return _unrolled(step, z, steps, k, outside, first, memory == "store")


def _unrolled(step: _DampedStep, z: Tensor, steps: list[int], k: int,
              outside: list[Tensor] | None, first: Recorded | None,
              store: bool = False) -> list[tuple[Tensor, ...]]:
    """The k steps from ``z``, each one recompute node on ``outside`` (none: plain values),
    step 1's value taken from its recording ``first``; with ``store`` every node keeps its
    recording. Returns the supervised states, unpacked."""
    states = []
    for j in range(1, k + 1):
        recorded = first if j == 1 else (record(step, (z,)) if store and outside else None)
        if recorded is not None:
            value = recorded.output.data
        else:
            with no_grad():
                value = step(z).data
        if outside:
            z = rerun_in_backward(step, (z,), outside, value, recorded if store else None)
        else:
            z = Tensor(value)
        if j in steps:
            # A state that a later step reads again in the backward pass goes out as a copy,
            # so that writing into the returned array cannot change the gradients.
            out = z.clone() if j < k and outside else z
            states.append(unpack_tensors(out, step.shapes))
    return states


def check_phantom_memory(memory: Any) -> str:
    """Check PhantomGrad's ``memory`` choice (one of :data:`PHANTOM_MEMORY`).

    Raises:
        ValueError: naming the value and the choices.
    """
    if not isinstance(memory, str) or memory not in PHANTOM_MEMORY:
        raise ValueError(f"PhantomGrad memory must be one of {PHANTOM_MEMORY}, got {memory!r}")
    return memory

