"""A recorded graph's backward walk found once and replayed per cotangent.

Loops that apply the VJP of the same graph many times (the IFT adjoint solve, at every
iteration) pay for the engine's walk (the topological order, the nodes on a path to the
inputs, the parents that need a cotangent) once, in :func:`vjp_program`. The first call runs
the rules through the engine's :func:`~npdeq.autodiff.engine.propagate` and traces their
primitive calls (:mod:`npdeq.autodiff.replay`), then walks again at a probe cotangent,
nonzero everywhere, and checks the trace's replay against that walk; from then on a call
runs only the traced raw array calls. A walk that cannot be traced (a rule that is not
npdeq's, or works outside npdeq's ops), a replay that disagrees, one that would keep much
more memory than the walk, or cotangents of another kind leave the program walking.

A rule whose work splits into a part that depends on the cotangent and a part that does not
(a normalisation's statistics of its input) asks :func:`replay_memo` for the latter: while a
program replays, the program keeps it, so it is computed at the first replay only; anywhere
else it is computed each time.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff.engine import (OUTPUTS, as_tuple, check_tensors, propagate, seed,
                                   unused_error)
from npdeq.autodiff.graph import plan
from npdeq.autodiff.mode import call_tracing, set_grad_enabled
from npdeq.autodiff.replay import CallTrace, agree, tracing
from npdeq.autodiff.tensor import Tensor

__all__ = ["VJPProgram", "vjp_program", "replay_memo", "KEPT_LIMIT", "KEPT_FLOOR"]

# A replay may keep, beside the graph's own arrays, constants of at most this many times the
# cotangents' size (the walk computes them anew at each call and lets them go), or of
# KEPT_FLOOR elements, whichever is more.
KEPT_LIMIT = 4
KEPT_FLOOR = 2 ** 16

# The programs replaying on this thread, innermost last (a rule may replay another program).
_replaying = threading.local()


class VJPProgram:
    """The backward walk of one recorded graph, found once and replayed per cotangent.

    Made by :func:`vjp_program`. Calling it with the outputs' cotangents returns what
    :func:`~npdeq.autodiff.engine.grad` (``retain_graph=True``) returns, without walking the
    graph again. The graph is retained; the pass is not recorded (rules run under
    ``no_grad``).
    """

    __slots__ = ("_outputs", "_inputs", "_steps", "_wanted", "_memo", "_state", "_lock")

    def __init__(self, outputs: tuple, inputs: tuple, allow_unused: bool) -> None:
        check_tensors(outputs, OUTPUTS)
        check_tensors(inputs)
        _, self._steps = plan(outputs, inputs)
        reached = {id(t) for t in outputs}
        for t, _, parents in self._steps:
            reached.update(id(p) for _, p in parents)
        for i, t in enumerate(inputs):
            if id(t) not in reached and not allow_unused:
                raise unused_error(i, t)
        self._outputs, self._inputs = outputs, inputs
        self._wanted = {id(t) for t in inputs}
        # What replay_memo keeps, by the id of a node's output; the program holds the graph,
        # so those outputs live (and their ids stay theirs) as long as the memo does.
        self._memo: dict[int, Any] = {id(t): {} for t, _, _ in self._steps}
        # None before the first call; False where no trace can be used; else
        # (replay, the _kinds of the traced cotangents; only floating ones are traced).
        self._state: Any = None
        self._lock = threading.Lock()

    def __call__(self, grad_outputs: Any = None) -> tuple:
        """The cotangents of the inputs (a tuple, ``None`` for an unused input) for
        ``grad_outputs`` (arrays or Tensors, one per output; may be omitted for one-element
        outputs)."""
        cotangents = seed(self._outputs, grad_outputs)
        seeds = [g.data for g in cotangents.values()]
        outer = call_tracing.trace
        if outer is not None:  # a rule traced elsewhere runs this program: not traceable
            outer.failure = "a traced rule runs a VJP program"
        state = self._state
        if state is None and outer is None:
            return self._trace(cotangents, seeds)
        # Cotangents of other kinds than the traced ones take other casts: walk.
        if state and _kinds(seeds) == state[1]:
            for t, node, _ in self._steps:  # the walk's checks, without the walk
                node.check_live()
                node.check_saved(t)
            return tuple(None if r is None else Tensor(r) for r in state[0](seeds))
        return self._walk(cotangents)

    def _trace(self, cotangents: dict, seeds: list) -> tuple:
        """The first call: a traced walk, and the replay checked against a walk at cotangents
        that are nonzero everywhere (a path that got a zero cotangent in the traced walk
        gets one there). The trace's seeds are fresh Tensors, so that none is also a value
        of the graph or given for two outputs."""
        cotangents = {key: Tensor(g.data) for key, g in cotangents.items()}
        trace = CallTrace(list(cotangents.values()))
        with tracing(trace):
            grads = self._walk(dict(cotangents))
        replay = trace.replay(list(grads))
        kinds = _kinds(seeds)
        usable = (replay is not None and all(
            backend.array_namespace(a).isdtype(a.dtype, ("real floating", "complex floating"))
            for a in seeds)
                  and replay.kept_size(self._graph_arrays()) <= max(
                      KEPT_LIMIT * sum(math.prod(a.shape) for a in seeds), KEPT_FLOOR))
        if usable:
            probes = [_probe(a) for a in seeds]
            walked = self._walk({key: Tensor(p) for key, p in zip(cotangents, probes)})
            # Exactly the walk's values, or never used (non-finite values cannot tell).
            usable = all(agree(None if w is None else w.data, r)
                         for w, r in zip(walked, replay(probes)))
        with self._lock:
            if self._state is None:
                self._state = (replay, kinds) if usable else False
        return grads

    def _graph_arrays(self) -> set:
        """The ids of the arrays the recorded graph holds anyway (a replay that keeps them
        costs no memory)."""
        held = set()
        for t, node, _ in self._steps:
            held.add(id(t.data))
            held.update(id(d) for d in node.saved)
            held.update(id(a.data) for a in node.args if isinstance(a, Tensor))
        return held

    def _walk(self, cotangents: dict) -> tuple:
        stack = _programs()
        stack.append(self)
        try:
            with set_grad_enabled(False):
                grads = propagate(self._steps, cotangents, self._wanted)
        finally:
            stack.pop()
        return tuple(grads.get(id(t)) for t in self._inputs)


def _kinds(seeds: list) -> list:
    """Per cotangent: array type, dtype and device (the engine's casts depend on them)."""
    return [(type(a), a.dtype, backend.device(a)) for a in seeds]


def _probe(like: Any) -> Any:
    """Deterministic cotangent values of ``like``'s shape, dtype and device, none zero and
    no two neighbours alike (the golden ratio's fractional multiples, in [0.5, 1.5))."""
    xp = backend.array_namespace(like)
    n = math.prod(like.shape)
    steps = xp.arange(n, dtype=xp.float64, device=backend.device(like))
    values = (steps * 0.6180339887498949) % 1.0 + 0.5
    return xp.reshape(xp.astype(values, like.dtype), like.shape)


def _programs() -> list:
    stack = getattr(_replaying, "stack", None)
    if stack is None:
        stack = _replaying.stack = []
    return stack


def replay_memo(ans: Tensor, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept for later replays when a :class:`VJPProgram` runs the rule of the
    node whose output is ``ans``.

    For a VJP rule's work that does not depend on the cotangent (it must depend only on the
    node's own arguments). What is kept lives as long as the program and must not be
    modified in place by the rule. Like every retained graph, a program assumes that the
    arrays it recorded are not written to between replays: a replaced ``.data`` raises, but
    a write into an array is not seen, and a kept value would then mix the old input with
    the new.

    Args:
        ans: the node's output Tensor (the rule's ``ans``).
        key: names the value among those the rule keeps.
        compute: makes the value.

    Returns:
        The value: computed now, or kept from an earlier replay of the same program.

    Example:
        >>> import npdeq
        >>> calls = []
        >>> def work():
        ...     calls.append(1)
        ...     return 2.0
        >>> x = npdeq.tensor([1.0, 2.0], requires_grad=True)
        >>> y = x * 3.0
        >>> replay_memo(y, 'k', work), replay_memo(y, 'k', work), len(calls)  # no program
        (2.0, 2.0, 2)
    """
    stack = getattr(_replaying, "stack", None)
    memo = stack[-1]._memo.get(id(ans)) if stack else None
    if memo is None:
        return compute()
    if key not in memo:
        with tracing(None):  # a constant of the program, kept, never replayed
            memo[key] = compute()
    return memo[key]
def vjp_program(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
                allow_unused: bool = False) -> VJPProgram:
    """Prepare the VJP of a recorded graph, for loops that apply it to many cotangents.

    ``vjp_program(outputs, inputs)(g)`` equals ``grad(outputs, inputs, g,
    retain_graph=True, allow_unused=allow_unused)`` (always as a tuple), but the graph is
    walked once, here: each call only runs the rules. An adjoint solve applies the same VJP
    at every iteration.

    Args:
        outputs: Tensor or sequence of Tensors with a graph.
        inputs: Tensor or sequence of Tensors (leaves or intermediate results).
        allow_unused: give ``None`` for an input the outputs do not depend on instead of
            raising.

    Returns:
        A :class:`VJPProgram`: ``program(grad_outputs) -> tuple`` of cotangents.

    Raises:
        RuntimeError: an input not in the graph (without ``allow_unused``), an output or
            input that does not require grad, or a graph already freed.
        TypeError: an output or input that is not a Tensor.

    Example:
        >>> import npdeq
        >>> x = npdeq.tensor([1.0, 2.0], requires_grad=True)
        >>> program = vjp_program(x * x, x)
        >>> program(npdeq.tensor([1.0, 1.0]))[0].data, program(npdeq.tensor([0.0, 3.0]))[0].data
        (array([2., 4.]), array([ 0., 12.]))
    """
    return VJPProgram(as_tuple(outputs)[0], as_tuple(inputs)[0], allow_unused)
