"""A recorded graph's backward walk computed once and replayed per cotangent.

Loops that apply the VJP of the same graph many times (the IFT adjoint solve applies it at
every iteration) pay for the walk of :mod:`npdeq.autodiff.engine` (topological order, the
nodes on a path to the inputs, the parents that need a cotangent) once, in
:func:`vjp_program`; each call then only runs the rules, with the engine's summing down to
each input's shape and cast to its dtype. Imports the engine's walk.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq.autodiff.engine import (_as_tuple, _call_rules, _check_grad_output, _check_inputs,
                                   _freed_error, _grad_outputs_tuple, _unused_error,
                                   cast_to_input, unbroadcast)
from npdeq.autodiff.graph import needed, topological_order
from npdeq.autodiff.mode import _mode
from npdeq.autodiff.tensor import Tensor

__all__ = ["VJPProgram", "vjp_program"]


class VJPProgram:
    """The backward walk of one recorded graph, computed once and replayed per cotangent.

    Made by :func:`vjp_program`. Calling it with the outputs' cotangents returns the same
    arrays :func:`grad` (``retain_graph=True``) returns, without walking the graph again:
    the topological order, the nodes on a path to the inputs and the parents that need a
    cotangent were found when the program was made. The graph is retained; the pass is not
    recorded (rules run under ``no_grad``).
    """

    __slots__ = ("_outputs", "_out_slots", "_steps", "_n_slots", "_in_slots", "_keep")

    def __init__(self, outputs: tuple, inputs: tuple, allow_unused: bool) -> None:
        for i, out in enumerate(outputs):
            if not isinstance(out, Tensor):
                raise TypeError(f"output {i} is a {type(out).__name__}, not a Tensor")
            if not out.requires_grad:
                raise RuntimeError(f"output {i} does not require grad and has no graph")
        _check_inputs(inputs)
        order = topological_order(outputs)
        reaching = needed(order, {id(t) for t in inputs})
        slots: dict[int, int] = {}

        def slot(t):
            return slots.setdefault(id(t), len(slots))

        self._outputs = outputs
        self._out_slots = [slot(out) for out in outputs]
        self._steps = []
        for t in order:
            if id(t) not in reaching:
                continue
            node = t._node
            if node.freed:
                raise _freed_error(node)
            parents = [(argnum, p) for argnum, p in node.parents if id(p) in reaching]
            self._steps.append((slot(t), t, node, parents,
                                [(slot(p), tuple(p.data.shape), p) for _, p in parents]))
        self._in_slots = [slots.get(id(t)) for t in inputs]
        for i, (s, t) in enumerate(zip(self._in_slots, inputs)):
            if s is None and not allow_unused:
                raise _unused_error(i, t)
        self._keep = set(s for s in self._in_slots if s is not None)
        self._n_slots = len(slots)

    def __call__(self, grad_outputs: Any = None) -> tuple:
        """The cotangents of the inputs (a tuple, ``None`` for an unused input) for
        ``grad_outputs`` (arrays or Tensors, one per output; may be omitted for one-element
        outputs)."""
        cotangents: list = [None] * self._n_slots
        grad_outputs = _grad_outputs_tuple(grad_outputs, len(self._outputs))
        for i, (out, s, g) in enumerate(zip(self._outputs, self._out_slots, grad_outputs)):
            g = _check_grad_output(out, g, i)
            cotangents[s] = g if cotangents[s] is None else cotangents[s] + g
        keep = self._keep
        previous, _mode.enabled = _mode.enabled, False
        try:
            for s, t, node, parents, targets in self._steps:
                g = cotangents[s]
                if g is None:
                    continue
                if s not in keep:
                    cotangents[s] = None
                if node.freed:
                    raise _freed_error(node)
                for (ps, shape, parent), c in zip(targets, _call_rules(node, t, g, parents)):
                    if c is None:  # the rule hands this parent nothing (a zero)
                        continue
                    if not isinstance(c, Tensor):
                        c = Tensor(c)
                    if c.data.shape != shape:
                        c = unbroadcast(c, shape)
                    if c.data.dtype != parent.data.dtype:
                        c = cast_to_input(c, parent)
                    prev = cotangents[ps]
                    cotangents[ps] = c if prev is None else prev + c
        finally:
            _mode.enabled = previous
        return tuple(None if s is None else cotangents[s] for s in self._in_slots)


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
    return VJPProgram(_as_tuple(outputs)[0], _as_tuple(inputs)[0], allow_unused)
