"""A recorded graph's backward walk found once and replayed per cotangent.

Loops that apply the VJP of the same graph many times (the IFT adjoint solve, at every
iteration) pay for the engine's walk (the topological order, the nodes on a path to the
inputs, the parents that need a cotangent) once, in :func:`vjp_program`; each call then runs
only the rules, through the engine's :func:`~npdeq.autodiff.engine.propagate`.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq.autodiff.engine import (OUTPUTS, as_tuple, check_tensors, propagate, seed,
                                   unused_error)
from npdeq.autodiff.graph import plan
from npdeq.autodiff.mode import set_grad_enabled
from npdeq.autodiff.tensor import Tensor

__all__ = ["VJPProgram", "vjp_program"]


class VJPProgram:
    """The backward walk of one recorded graph, found once and replayed per cotangent.

    Made by :func:`vjp_program`. Calling it with the outputs' cotangents returns what
    :func:`~npdeq.autodiff.engine.grad` (``retain_graph=True``) returns, without walking the
    graph again. The graph is retained; the pass is not recorded (rules run under
    ``no_grad``).
    """

    __slots__ = ("_outputs", "_inputs", "_steps", "_wanted")

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

    def __call__(self, grad_outputs: Any = None) -> tuple:
        """The cotangents of the inputs (a tuple, ``None`` for an unused input) for
        ``grad_outputs`` (arrays or Tensors, one per output; may be omitted for one-element
        outputs)."""
        cotangents = seed(self._outputs, grad_outputs)
        with set_grad_enabled(False):
            grads = propagate(self._steps, cotangents, self._wanted)
        return tuple(grads.get(id(t)) for t in self._inputs)
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
