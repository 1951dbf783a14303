"""A VJP program's rules traced once into a list of raw array calls, replayed without them.

A :class:`~npdeq.autodiff.program.VJPProgram` replays the same rules on every cotangent. The
rules are Python around npdeq ops; on small states that Python (argument checks, Tensor
wrappers, unbroadcasting) costs far more than the arithmetic. A :class:`CallTrace` watches
one walk of the rules and keeps, for every primitive call that depends on the cotangent, the
primitive's raw function, its arguments (constants: the saved forward values and whatever
the rules computed from them alone) and where the cotangent-dependent arguments come from.
:class:`Replay` then runs only those raw calls.

This is sound for rules that compute their cotangents with npdeq ops and do not branch on
the cotangent's values (every rule of the library). A rule that works on raw arrays taken
from its cotangent hands on a result the trace did not see, and the trace fails; one that
rewraps such an array and mixes it back in would freeze it as a constant, so the program
checks a replay against a walk on the first cotangent that differs from the traced one before
it trusts the replay (see :func:`agree`).
"""

from __future__ import annotations

import functools
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

from npdeq import backend
from npdeq.autodiff.mode import call_tracing
from npdeq.autodiff.tensor import Tensor

__all__ = ["CallTrace", "Replay", "tracing", "agree"]


class CallTrace:
    """The primitive calls of one walk that depend on the seed cotangents.

    Made with the seeds (the Tensors the walk starts from); installed with :func:`tracing`,
    it is told of every primitive call on this thread (:meth:`record`) and of every rule's
    cotangents (:meth:`check_rule`). ``failure`` says why the walk cannot be replayed, if it
    cannot.
    """

    def __init__(self, seeds: list[Tensor]) -> None:
        # The slot of each traced Tensor by id, while it lives: the walk drops cotangents
        # as it goes (memory stays as without the trace), and a freed Tensor's id may be
        # reused by an untraced one.
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
        # On t's death the callback runs slots.pop(key, ref): the id is no longer traced.
        self._refs.append(weakref.ref(t, functools.partial(self.slots.pop, key)))
        return slot

    def record(self, prim: Any, args: tuple, kwargs: dict, result: Tensor) -> None:
        """One primitive call: kept if an argument is traced, a constant otherwise."""
        if self.failure is not None:
            return
        slots = self.slots
        sources = [(i, slots[id(a)]) for i, a in enumerate(args)
                   if isinstance(a, Tensor) and id(a) in slots]
        if not sources:
            return
        if any(isinstance(v, Tensor) and id(v) in slots for v in kwargs.values()):
            self.failure = f"'{prim.name}' takes a traced Tensor as a keyword argument"
            return
        template = [a.data if isinstance(a, Tensor) else a for a in args]
        for i, _ in sources:
            template[i] = None  # filled at each replay; the traced value is not kept
        self.calls.append((prim.fun, template, sources, kwargs, self._slot(result)))

    def check_rule(self, prim: Any, g: Tensor, cotangents: Any) -> None:
        """A rule given a traced cotangent must hand on traced cotangents (or none)."""
        if id(g) not in self.slots:
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


class Replay:
    """Raw array calls that map seed cotangents to a walk's outputs (see :class:`CallTrace`).

    Each value is dropped after its last use, as the walk drops a node's cotangent once its
    rule has run.
    """

    __slots__ = ("_size", "_calls", "_outputs")

    def __init__(self, size: int, calls: list[tuple], outputs: list[int | None]) -> None:
        last_use = {s: len(calls) for s in outputs if s is not None}  # outputs stay
        for k, (_, _, sources, _, _) in enumerate(calls):
            for _, s in sources:
                last_use[s] = max(last_use.get(s, k), k)
        frees: list[list[int]] = [[] for _ in calls]
        for s, k in last_use.items():
            if k < len(calls):
                frees[k].append(s)
        self._size = size
        self._calls = [(fun, template, sources, kwargs, out, tuple(free))
                       for (fun, template, sources, kwargs, out), free in zip(calls, frees)]
        self._outputs = outputs

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
def tracing(trace: CallTrace) -> Iterator[CallTrace]:
    """Tell ``trace`` of this thread's primitive calls and rules while the block runs (an
    inner trace hides the outer one, whose walk then fails: it cannot see the calls)."""
    outer = call_tracing.trace
    call_tracing.trace = trace
    try:
        yield trace
    finally:
        call_tracing.trace = outer
        if outer is not None:
            outer.failure = "a traced rule runs a program of its own"


def agree(walked: Any, replayed: Any) -> bool | None:
    """Whether a replay's raw output equals the walk's, to rounding (a frozen constant makes
    them differ by the cotangent's own size); ``None`` when it cannot tell (non-finite
    values)."""
    if walked is None or replayed is None:
        return walked is replayed
    if walked.shape != replayed.shape or walked.dtype != replayed.dtype:
        return False
    xp = backend.array_namespace(walked)
    if not bool(xp.all(xp.isfinite(walked))):
        return None
    if not xp.isdtype(walked.dtype, ("real floating", "complex floating")):
        return bool(xp.all(walked == replayed))
    scale = float(xp.max(xp.abs(walked))) if walked.size else 0.0
    error = float(xp.max(xp.abs(walked - replayed))) if walked.size else 0.0
    return error <= float(xp.finfo(walked.dtype).eps) ** 0.5 * scale
