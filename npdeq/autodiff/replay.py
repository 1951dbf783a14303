"""A VJP program's rules traced once into a list of raw array calls, replayed without them.

A :class:`~npdeq.autodiff.program.VJPProgram` runs the same rules on every cotangent. The
rules are Python around npdeq ops; on small states that Python (argument checks, Tensor
wrappers, unbroadcasting) costs far more than the arithmetic. A :class:`CallTrace` watches
one walk of the rules and keeps every primitive call that depends on the seed cotangents:
the primitive's raw function, its constant arguments and where its other arguments come from
(the seeds or earlier calls). What the rules compute from the saved forward values alone
(relu's mask, tanh's ``1 - y**2``) is such a constant: computed once, by the walk, and kept
for the program's life. :class:`Replay` runs the kept raw calls in the walk's order, without
the rules' Python.

A walk is traced only where every rule it runs is one of npdeq's own: they compute their
cotangents with npdeq ops and never branch in Python on the cotangent's values, which a
replay could not follow. A rule of any other module, a rule that hands on a cotangent made
outside npdeq's ops, or a rule that runs another program fails the trace, and the program
walks at every call. A program also checks one replay against a walk, at cotangents that
are nonzero everywhere, before it trusts the trace, and does not use a replay that would keep
constants larger than a few times the cotangents.
"""

from __future__ import annotations

import functools
import math
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

from npdeq import backend
from npdeq.autodiff.mode import call_tracing
from npdeq.autodiff.tensor import Tensor

__all__ = ["CallTrace", "Replay", "tracing", "agree"]

_LIBRARY = "npdeq."


class CallTrace:
    """The primitive calls of one walk, from its seed cotangents.

    Made with the seeds (fresh Tensors, the walk's starting cotangents); installed with
    :func:`tracing`, it is told of every primitive call on this thread (:meth:`record`) and
    of every rule the walk runs (:meth:`check_rule`). ``failure`` says why the walk cannot
    be replayed, if it cannot.
    """

    def __init__(self, seeds: list[Tensor]) -> None:
        # The slot of each Tensor a recorded call made, by id, while it lives: the walk
        # drops cotangents as it goes, and a freed Tensor's id may be reused by another.
        self.slots: dict[int, int] = {}
        self.size = 0
        self._refs: list = []
        self.calls: list[tuple] = []
        self.failure: str | None = None
        for s in seeds:
            self._slot(s)

    def _slot(self, t: Tensor) -> int:
        key = id(t)
        self.slots[key] = slot = self.size
        self.size += 1
        # On t's death the callback runs slots.pop(key, ref): the id is free again.
        self._refs.append(weakref.ref(t, functools.partial(self.slots.pop, key)))
        return slot

    def record(self, prim: Any, args: tuple, kwargs: dict, result: Tensor) -> None:
        """One primitive call: kept if it depends on the seeds, a constant otherwise (it is
        not run again: a primitive may give its value once, as ``mem_gc``'s recomputation
        does)."""
        if self.failure is not None:
            return
        slots = self.slots
        if any(_holds_traced(v, slots) for v in kwargs.values()) or any(
                isinstance(a, (list, tuple)) and _holds_traced(a, slots) for a in args):
            self.failure = (f"'{prim.name}' takes a traced Tensor in a keyword argument or "
                            "a sequence")
            return
        sources = [(i, slots[id(a)]) for i, a in enumerate(args)
                   if isinstance(a, Tensor) and id(a) in slots]
        if not sources:
            return
        template = [a.data if isinstance(a, Tensor) else a for a in args]
        for i, _ in sources:
            template[i] = None  # filled at each replay; the value is not kept
        self.calls.append((prim.fun, template, sources, kwargs, self._slot(result)))

    def check_rule(self, prim: Any, cotangents: Any) -> None:
        """A rule the walk ran: one of npdeq's own, handing on recorded cotangents (or
        none)."""
        if self.failure is not None:
            return
        rules = list(prim.vjps.values()) + [prim.vjp_argnums]
        # Read now, not cached: a rule may be replaced (defvjp again) between two traces.
        if not all(isinstance(getattr(r, "__module__", None), str)
                   and r.__module__.startswith(_LIBRARY) for r in rules if r):
            self.failure = f"the rule of '{prim.name}' is not one of npdeq's"
            return
        for c in cotangents:
            if c is not None and not (isinstance(c, Tensor) and id(c) in self.slots):
                self.failure = (f"the rule of '{prim.name}' computes its cotangent outside "
                                "npdeq's ops")

    def replay(self, results: list[Tensor | None]) -> "Replay | None":
        """The :class:`Replay` giving ``results`` (the walk's outputs, ``None`` for an input
        the walk did not reach), or ``None`` if the walk cannot be replayed."""
        if self.failure is not None:
            return None
        outputs = []
        for r in results:
            if r is not None and id(r) not in self.slots:
                self.failure = "an output of the walk is not computed from the cotangents"
                return None
            outputs.append(None if r is None else self.slots[id(r)])
        return Replay(self.size, self.calls, outputs)


def _holds_traced(value: Any, slots: dict) -> bool:
    if isinstance(value, Tensor):
        return id(value) in slots
    if isinstance(value, (list, tuple, dict)):
        items = value.values() if isinstance(value, dict) else value
        return any(_holds_traced(v, slots) for v in items)
    return False


class Replay:
    """Raw array calls that map seed cotangents to a walk's outputs (see :class:`CallTrace`).

    Only the calls that lead to an output are kept, and each value is dropped after its
    last use, as the walk drops a node's cotangent once its rule has run.
    """

    __slots__ = ("_size", "_calls", "_outputs")

    def __init__(self, size: int, calls: list[tuple], outputs: list[int | None]) -> None:
        needed = {s for s in outputs if s is not None}
        kept = []
        for call in reversed(calls):
            if call[4] in needed:
                kept.append(call)
                needed.update(s for _, s in call[2])
        kept.reverse()
        last_use = {s: len(kept) for s in outputs if s is not None}  # outputs stay
        for k, (_, _, sources, _, _) in enumerate(kept):
            for _, s in sources:
                last_use[s] = max(last_use.get(s, k), k)
        frees: list[list[int]] = [[] for _ in kept]
        for s, k in last_use.items():
            if k < len(kept):
                frees[k].append(s)
        self._size = size
        self._calls = [(fun, template, sources, kwargs, out, tuple(free))
                       for (fun, template, sources, kwargs, out), free in zip(kept, frees)]
        self._outputs = outputs

    def kept_size(self, held: set) -> int:
        """How many elements the constants of the kept calls hold, beyond the arrays whose
        ids are in ``held`` (each counted once) and views (NumPy's and CuPy's ``base``) of
        other arrays, which hold no memory of their own."""
        seen, size = set(held), 0
        for _, template, _, _, _, _ in self._calls:
            for a in template:
                if hasattr(a, "shape") and id(a) not in seen:
                    seen.add(id(a))
                    if getattr(a, "base", None) is None:
                        size += math.prod(a.shape)
        return size

    def __call__(self, seeds: list[Any]) -> list[Any]:
        """The outputs' raw arrays (``None`` where the walk gave none) for raw ``seeds``."""
        values: list[Any] = [None] * self._size
        values[:len(seeds)] = seeds
        for fun, template, sources, kwargs, out, free in self._calls:
            args = template.copy()
            for i, s in sources:
                args[i] = values[s]
            values[out] = fun(*args, **kwargs)
            for s in free:
                values[s] = None
        return [None if s is None else values[s] for s in self._outputs]


@contextmanager
def tracing(trace: CallTrace | None) -> Iterator[CallTrace | None]:
    """Tell ``trace`` of this thread's primitive calls and rules while the block runs;
    ``None`` hides the thread's trace instead (what the block computes is then a constant
    of that trace: a value a rule keeps across replays, say)."""
    outer = call_tracing.trace
    call_tracing.trace = trace
    try:
        yield trace
    finally:
        call_tracing.trace = outer


def agree(walked: Any, replayed: Any) -> bool | None:
    """Whether a replay's raw output equals the walk's: exactly, since both make the same
    calls on the same arrays. ``None`` when it cannot tell (non-finite values)."""
    if walked is None or replayed is None:
        return walked is replayed
    if walked.shape != replayed.shape or walked.dtype != replayed.dtype:
        return False
    xp = backend.array_namespace(walked)
    if not bool(xp.all(xp.isfinite(walked))):
        return None
    return bool(xp.all(walked == replayed))
