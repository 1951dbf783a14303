"""The recorded graph, read: a Tensor's parents and the walks over them.

The graph is the parent pointers of the Tensors' nodes. Everything that walks it (the
engine's backward order, the search for the tensors a function closed over) goes through
:func:`walk`, and code outside the tape reads the graph through these functions only.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from npdeq.autodiff.tensor import Tensor

__all__ = ["parents", "recorded_since", "walk", "topological_order", "needed"]


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
    """Whether ``t`` was made by an op recorded after :func:`~npdeq.autodiff.primitive.tape_clock`
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
    order = []
    ready = [r for r in roots if r._node is not None and id(r) not in children]
    done = set()
    while ready:
        t = ready.pop()
        if id(t) in done:
            continue
        done.add(id(t))
        order.append(t)
        if not expand(t):
            continue
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
