"""Recompute in backward: a value kept as one node whose VJP runs its computation again.

Gradient checkpointing (:func:`npdeq.utils.mem_gc`) and PhantomGrad's unrolled steps
(:func:`~npdeq.grad.phantom.phantom_grad`, k chained nodes) keep no inner graph between the
forward and the backward pass. :func:`rerun_in_backward` records a value computed by
``fn(*inputs)`` as one node on the inputs that require grad and the tensors from outside
``fn`` it depends on. In the backward pass the node records ``fn`` again from detached
copies of its inputs (or takes the graph the caller recorded in the forward, to trade
memory for time) and pulls the cotangent back through it, stopping at the node's parents;
the engine carries the inputs' cotangents on. Under ``create_graph=True`` ``fn`` is
recorded from the inputs themselves, so the recorded backward depends on them and can be
differentiated again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from npdeq.autodiff import (Tensor, defvjp_argnums, enable_grad, is_grad_enabled, primitive,
                            zeros_like)
from npdeq.autodiff.engine import partial_grad
from npdeq.backend import Array

__all__ = ["rerun_in_backward", "record", "Recorded"]


@dataclass(slots=True)
class Recorded:
    """One recording of ``fn``: the Tensors it started from (one per input: a detached leaf
    for an input that requires grad, the input itself otherwise) and what it returned."""

    leaves: tuple[Any, ...]
    output: Any


@dataclass(slots=True)
class _Rerun:
    """What one node keeps: ``fn``, its inputs as given, the forward's value (handed to the
    node once) and, optionally, the forward's recording."""

    fn: Callable[..., Tensor]
    inputs: tuple[Any, ...]
    value: Array | None
    recorded: Recorded | None

    def take_value(self) -> Array:
        value, self.value = self.value, None
        return value


def record(fn: Callable[..., Any], inputs: Sequence[Any]) -> Recorded:
    """``fn`` recorded from detached copies of the ``inputs`` that require grad (one leaf
    per distinct Tensor; other inputs are passed as they are).

    Example:
        >>> import numpy as np, npdeq
        >>> z = npdeq.tensor(np.ones(2), requires_grad=True)
        >>> rec = record(lambda a: a * 3.0, (z,))
        >>> rec.leaves[0] is z, rec.output.requires_grad
        (False, True)
    """
    leaf_of: dict[int, Tensor] = {}
    for a in inputs:
        if isinstance(a, Tensor) and a.requires_grad and id(a) not in leaf_of:
            leaf_of[id(a)] = Tensor(a.data, requires_grad=True)
    leaves = tuple(leaf_of.get(id(a), a) if isinstance(a, Tensor) else a for a in inputs)
    with enable_grad():
        return Recorded(leaves, fn(*leaves))


def rerun_in_backward(fn: Callable[..., Tensor], inputs: Sequence[Any],
                      outside: Sequence[Tensor], value: Array,
                      recorded: Recorded | None = None) -> Tensor:
    """``value`` (``fn(*inputs)``'s array) as a Tensor whose gradient is ``fn``'s,
    recorded as one node; ``fn`` runs again in the backward pass.

    Args:
        fn: a function of Tensors returning one Tensor; it must compute the same thing when
            called again (no fresh randomness, no state changed in between).
        inputs: its arguments (Tensors, arrays or anything else ``fn`` takes).
        outside: the tensors from outside ``fn`` that its result depends on and that should
            get gradients (parameters, an injection computed upstream; see
            :func:`~npdeq.grad.externals.outside_tensors`).
        value: ``fn(*inputs)``'s array, computed by the caller.
        recorded: ``record(fn, inputs)`` from the forward, kept to back-propagate through
            instead of recording ``fn`` again (more memory, less time).

    Returns:
        A Tensor holding ``value``; detached when neither an input nor ``outside`` requires
        grad.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(np.eye(2), requires_grad=True)
        >>> z = npdeq.tensor(np.ones((1, 2)), requires_grad=True)
        >>> fn = lambda z: npdeq.tanh(z @ W)
        >>> with npdeq.no_grad():
        ...     value = fn(z).data
        >>> out = rerun_in_backward(fn, (z,), (W,), value)
        >>> out.sum().backward()
        >>> W.grad.shape, z.grad.shape
        ((2, 2), (1, 2))
    """
    parents, seen = [], set()
    for t in [a for a in inputs if isinstance(a, Tensor) and a.requires_grad] + list(outside):
        if id(t) not in seen:
            seen.add(id(t))
            parents.append(t)
    if not parents:
        return Tensor(value)
    return _rerun(*parents, run=_Rerun(fn, tuple(inputs), value, recorded))


_rerun = primitive(lambda *parents, run: run.take_value(), name="rerun_in_backward")


def _rerun_vjp(argnums, g, ans, *parents, run):
    # The engine runs rules with grad mode = create_graph.
    create_graph = is_grad_enabled()
    if create_graph:
        with enable_grad():
            rec = Recorded(run.inputs, run.fn(*run.inputs))
    elif run.recorded is not None:
        rec = run.recorded
    else:
        rec = record(run.fn, run.inputs)
    wanted = [parents[i] for i in argnums]
    if not rec.output.requires_grad:
        return tuple(zeros_like(w) for w in wanted)
    # An input reaches the recording through its leaf, and also directly where fn closes
    # over it too: its gradient is the sum of both. Stop at the parents: one may be computed
    # from another (an injection from a weight), and the engine adds that path itself.
    leaf_of = {id(a): leaf for a, leaf in zip(run.inputs, rec.leaves) if leaf is not a}
    extra = [(k, leaf_of[id(w)]) for k, w in enumerate(wanted) if id(w) in leaf_of]
    grads = partial_grad(rec.output, wanted + [leaf for _, leaf in extra], g,
                         create_graph=create_graph)
    total = grads[:len(wanted)]
    for (k, _), gl in zip(extra, grads[len(wanted):]):
        if gl is not None:
            total[k] = gl if total[k] is None else total[k] + gl
    return tuple(zeros_like(w) if gw is None else gw for gw, w in zip(total, wanted))


defvjp_argnums(_rerun, _rerun_vjp)
