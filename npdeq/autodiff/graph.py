"""The recorded graph: its nodes, the tape's clock, and the walks over them.

The graph is the parent pointers of the Tensors' nodes. Everything that walks it (the
engine's backward order, the search for the tensors a function closed over) goes through
:func:`walk`; code outside the tape reads the graph through these functions only.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Sequence

from npdeq.autodiff.tensor import Tensor

__all__ = ["Node", "tape_clock", "parents", "recorded_since", "walk", "topological_order",
           "needed", "plan"]

_clock = itertools.count()


def tape_clock() -> int:
    """A counter that grows with every recorded node: nodes made after a reading have a
    larger ``clock``. Gradient rules use it to tell the tensors a function made from the
    ones it closed over."""
    return next(_clock)


class Node:
    """One recorded call: the primitive, its arguments, and the parents that need gradients.

    ``parents`` is a tuple of ``(argnum, Tensor)`` pairs; ``clock`` the tape clock at
    recording; ``saved`` the arrays the op saw (its arguments' and output's ``.data``), for
    :meth:`check_saved`. A backward pass without ``retain_graph`` frees the node: it drops its
    arguments (so their arrays can be collected) and a second backward through it raises.
    """

    __slots__ = ("primitive", "args", "kwargs", "parents", "freed", "clock", "saved")

    def __init__(self, primitive: Any, args: tuple, kwargs: dict,
                 parents: tuple, saved: tuple = ()) -> None:
        self.primitive = primitive
        self.args = args
        self.kwargs = kwargs
        self.parents = parents
        self.freed = False
        self.clock = next(_clock)
        self.saved = saved

    def free(self) -> None:
        self.args = None
        self.kwargs = None
        self.parents = ()
        self.saved = ()
        self.freed = True

    def check_live(self) -> None:
        """Raise ``RuntimeError`` if a backward pass has freed this node."""
        if self.freed:
            raise RuntimeError(
                f"trying to backward through the graph a second time (at "
                f"'{self.primitive.name}'), but its saved values were freed by the first "
                "backward: pass retain_graph=True to the first backward/grad call")

    def check_saved(self, ans: Tensor) -> None:
        """Raise ``RuntimeError`` if a Tensor this op used (or its output ``ans``) had its
        ``.data`` replaced since it was recorded: the rules read the arrays at backward time,
        so the gradient would belong to other values (PyTorch's version-counter check)."""
        if not self.saved:
            return
        *inputs, out = self.saved
        if ans.data is not out:
            changed = "its output"
        else:
            changed = next((f"argument {i}" for i, (a, d) in enumerate(zip(self.args, inputs))
                            if isinstance(a, Tensor) and a.data is not d), None)
            if changed is None:
                return
        raise RuntimeError(
            f"{changed} of '{self.primitive.name}' had its .data replaced after the operation "
            "was recorded, so the gradient would be computed from other values: assign .data "
            "(e.g. an optimizer step) only after backward(), or record the forward again")


def parents(t: Tensor) -> tuple[Tensor, ...]:
    """The tensors the op that made ``t`` was recorded with and that need a gradient (none
    for a leaf), in argument order.

    Example:
        >>> import npdeq
        >>> x = npdeq.tensor([1.0], requires_grad=True)
        >>> parents(x * 2.0) == (x,), parents(x)
        (True, ())
    """
    return () if t._node is None else tuple(p for _, p in t._node.parents)


def recorded_since(t: Tensor, since: int) -> bool:
    """Whether ``t`` was made by an op recorded after :func:`tape_clock`
    read ``since`` (False for a leaf)."""
    return t._node is not None and t._node.clock >= since


def walk(roots: Iterable[Tensor], expand: Callable[[Tensor], bool]) -> list[Tensor]:
    """Every tensor reachable from ``roots``, each once, in depth-first order; the walk goes on
    to the parents of ``t`` only where ``expand(t)``. Iterative: unrolled solvers make graphs
    deeper than Python's recursion limit."""
    order, seen = [], set()
    stack = list(roots)
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        order.append(t)
        if t._node is not None and expand(t):
            stack.extend(p for _, p in t._node.parents)
    return order


def topological_order(roots: Sequence[Tensor], stop: set | None = None) -> list[Tensor]:
    """The recorded (non-leaf) tensors reachable from ``roots``, each before all of its
    parents (a child-count walk); the walk does not go past tensors whose id is in ``stop``."""
    def expand(t: Tensor) -> bool:
        return stop is None or id(t) not in stop

    children: dict[int, int] = {}
    for t in walk(roots, expand):
        if t._node is not None and expand(t):
            for _, p in t._node.parents:
                if p._node is not None:
                    children[id(p)] = children.get(id(p), 0) + 1
    # Each tensor becomes ready once: a root without children, or when its last child is done.
    ready = list({id(r): r for r in roots if r._node is not None and id(r) not in children}
                 .values())
    order = []
    while ready:
        t = ready.pop()
        order.append(t)
        if expand(t):
            for _, p in t._node.parents:
                if p._node is not None:
                    children[id(p)] -= 1
                    if children[id(p)] == 0:
                        ready.append(p)
    return order


def needed(order: list[Tensor], wanted: set) -> set:
    """The ids of ``wanted`` and of the tensors of ``order`` (a :func:`topological_order`)
    through whose parents one of ``wanted`` is reachable; a freed node counts as reaching
    (so that the backward raises there instead of silently dropping a gradient)."""
    found = set(wanted)
    for t in reversed(order):
        if t._node.freed or any(id(p) in found for _, p in t._node.parents):
            found.add(id(t))
    return found


def plan(outputs: Sequence[Tensor], inputs: Sequence[Tensor] | None = None,
         stop_at_inputs: bool = False) -> tuple[list[Tensor], list[tuple]]:
    """The backward walk of ``outputs``' graph, found once (the engine runs the rules on it).

    Returns:
        ``(order, steps)``: the :func:`topological_order` (not past ``inputs`` with
        ``stop_at_inputs``), and for each of its tensors through which an input is reached
        (all, without ``inputs``) ``(tensor, node, parents)``, ``parents`` the node's
        ``(argnum, Tensor)`` pairs that lead on.

    Raises:
        RuntimeError: the walk needs a node freed by an earlier backward.
    """
    wanted = None if inputs is None else {id(t) for t in inputs}
    order = topological_order(outputs, wanted if stop_at_inputs else None)
    keep = None if wanted is None else needed(order, wanted)
    steps = []
    for t in order:
        if keep is None or id(t) in keep:
            t._node.check_live()
            steps.append((t, t._node, t._node.parents if keep is None else
                          [(a, p) for a, p in t._node.parents if id(p) in keep]))
    return order, steps
