"""The statistics every solver returns, and the per-sample bookkeeping that produces them.

:class:`SolveTracker` is shared by all solvers: it is told each evaluated iterate and its
image under ``f``, and keeps, per sample, the lowest-residual iterate, its residuals, the
residual traces, and whether the sample has converged or met a non-finite value. A sample
that has converged or gone non-finite is *frozen*: the solvers stop moving it (they feed
:attr:`SolveTracker.best` back for it) and its statistics are final. Everything is selected
with ``where`` (never masks multiplied into values: NaN * 0 is NaN) and the only host
synchronisation is :meth:`SolveTracker.observe`'s return value, once per iteration.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend import Array
from npdeq.backend.checks import check_bool, check_int, check_real
from npdeq.backend.counting import count_true
from npdeq.solver.entry import (STOP_MODES, SolverArgs, check_solver_args, check_stop_mode,
                                solver_entry)
from npdeq.solver.failure import warn_if_failed, warn_location
from npdeq.solver.state import pack_states, packed_map

__all__ = ["SolverStat", "SolveTracker", "SolverArgs", "residual_norms", "check_solver_args",
           "solver_stat_from_final_step", "start_solve",
           "check_int", "check_real", "check_bool", "solver_entry", "warn_location",
           "STOP_MODES"]

# The relative residual's guard against ||f(z)|| = 0, as TorchDEQ.
REL_EPS = 1e-8
# Packed states of at least this many values take the selection shortcuts of observe().
LARGE_STATE = 1 << 14
# Below this batch size the three per-iteration sample counts fit one int64 (base B + 1).
_PACKED_COUNTS_MAX_BATCH = 1 << 20
# The failure messages, after the solver's name (no numbers: see npdeq.solver.failure).
_NONFINITE = ("f returned non-finite values for some samples; they keep their best finite "
              "iterate (see info['nonfinite'])")
_NOT_CONVERGED = ("some samples did not reach tol within max_iter (see info['converged'] and "
                  "info['abs_lowest'])")


class SolverStat(dict):
    """The statistics of one solve: a dict of per-sample arrays in the input's namespace.

    Keys (``B`` the batch size, ``N`` the iterations run):

    - ``abs_lowest`` ``(B,)``: ``||f(z) - z||`` of the best iterate z, which is the returned
      one unless ``return_final=True`` (then the returned iterate's residuals are the last
      column of the traces).
    - ``rel_lowest`` ``(B,)``: ``||f(z) - z|| / (||f(z)|| + 1e-8)`` of the same iterate.
    - ``abs_trace``, ``rel_trace`` ``(B, N)``: the residuals of the iterate evaluated at each
      iteration (a frozen sample's iterate no longer moves, so its trace repeats).
    - ``nstep`` ``(B,)``: the iteration (1-based) at which the returned iterate was evaluated.
    - ``sradius`` ``(B,)``: spectral radius estimate (zeros unless a caller fills it).
    - ``converged`` ``(B,)`` bool: the sample reached ``tol`` in ``stop_mode``.
    - ``nonfinite`` ``(B,)`` bool: ``f`` returned NaN/inf for the sample; it keeps its best
      finite iterate and is never reported as converged.
    - ``nfe``: total function evaluations of the solve (a Python int, same for all samples).

    TorchDEQ's keys and shapes are kept; ``converged``, ``nonfinite`` and ``nfe`` are npdeq's.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SolverStat({', '.join(sorted(self))})"


def residual_norms(fx: Array, x: Array) -> tuple[Array, Array]:
    """Per-sample absolute and relative residuals of ``x`` given ``fx = f(x)``.

    Args:
        fx: ``(B, D)`` array.
        x: ``(B, D)`` array.

    Returns:
        ``(abs, rel)``, each ``(B,)``: ``||fx - x||`` and ``||fx - x|| / (||fx|| + 1e-8)``
        (L2 norms over the non-batch dimension, TorchDEQ's definitions).
    """
    xp = backend.array_namespace(fx, x)
    g = fx - x
    abs_res = xp.sqrt(xp.vecdot(g, g))
    return abs_res, relative_residual(xp, abs_res, xp.vecdot(fx, fx))


def relative_residual(xp: Any, abs_res: Array, image_sq: Array) -> Array:
    """``abs_res / (sqrt(image_sq) + 1e-8)``, NaN where ``image_sq`` (``||f(x)||^2``)
    overflowed: the quotient would be 0 there, a false convergence."""
    rel = abs_res / (xp.sqrt(image_sq) + REL_EPS)
    return xp.where(image_sq < math.inf, rel, math.nan)


def solver_stat_from_final_step(z: Any, fz: Any, nstep: int = 0, *, tol: float | None = None,
                                stop_mode: str = "abs") -> SolverStat:
    """The statistics of a solve known only by its last iterate, as TorchDEQ's function.

    For code that finds ``z`` some other way (an unrolled loop, a closed form) and wants the
    record a solver would return.

    Args:
        z: the final estimate, a ``(B, ...)`` array or a tuple of them (packed as the solvers
            pack states).
        fz: ``f(z)``, the same structure.
        nstep: the steps taken to reach ``z`` (reported per sample, and as ``nfe``).
        tol: if given, ``converged`` is ``residual <= tol`` in ``stop_mode`` (and finite);
            without it no sample is reported converged, since nothing says what was asked.
        stop_mode: ``'abs'`` or ``'rel'``, the residual ``tol`` applies to.

    Returns:
        A :class:`SolverStat` with traces of one column.

    Raises:
        ValueError, TypeError: ``nstep``, ``tol`` or ``stop_mode`` out of range; ``z`` and
            ``fz`` of different shapes or namespaces.

    Example:
        >>> import numpy as np
        >>> info = solver_stat_from_final_step(np.ones((2, 3)), np.zeros((2, 3)), nstep=5)
        >>> info["abs_lowest"].tolist(), info["nstep"].tolist(), info["converged"].tolist()
        ([1.7320508075688772, 1.7320508075688772], [5, 5], [False, False])
    """
    owner = "solver_stat_from_final_step"
    nstep = check_int("nstep", nstep, 0, owner=owner)
    tol = check_real("tol", tol, 0.0, owner=owner, none_ok=True)
    check_stop_mode(stop_mode, owner=owner)
    z, fz = pack_states(z), pack_states(fz)
    if z.shape != fz.shape:
        raise ValueError(f"{owner}: z and fz must have the same (packed) shape, got "
                         f"{tuple(z.shape)} and {tuple(fz.shape)}")
    xp = backend.array_namespace(z, fz)
    abs_res, rel_res = residual_norms(fz, z)
    batch, dev = z.shape[0], backend.device(z)
    nonfinite = ~xp.isfinite(abs_res)
    residual = abs_res if stop_mode == "abs" else rel_res
    converged = (xp.zeros((batch,), dtype=xp.bool, device=dev) if tol is None
                 else ~nonfinite & (residual <= tol))
    return SolverStat(
        abs_lowest=abs_res, rel_lowest=rel_res,
        abs_trace=abs_res[:, None], rel_trace=rel_res[:, None],
        nstep=xp.full((batch,), nstep, dtype=xp.int64, device=dev),
        sradius=xp.zeros((batch,), dtype=z.dtype, device=dev),
        converged=converged, nonfinite=nonfinite, nfe=nstep)


class SolveTracker:
    """Per-sample best iterate, residual traces, convergence and non-finite flags.

    The per-iteration work is kept to a handful of array ops: the residual of the best
    iterate, its step and the traces are recorded, and everything derivable (the relative
    trace under ``stop_mode='abs'``, the residuals of the best iterate, ``converged``) is
    computed once in :meth:`finish`. While every sample is pending (active, finite, not yet
    converged), the usual case, an iteration in which every sample improved selects nothing:
    the one host read of :meth:`observe` carries the counts that tell it apart.

    Args:
        x0: the packed ``(B, D)`` initial state.
        tol: the tolerance; a sample converges when its ``stop_mode`` residual is ``<= tol``
            (``None``: never, for solvers without a tolerance; ``0``: only at an exact zero,
            and not converging is no failure worth a warning).
        stop_mode: ``'abs'`` or ``'rel'``: which residual decides convergence and "best".
        indexing: iterations (1-based, any order, repeats allowed) whose state the
            trajectory returns.
        return_final: record (and return) the last evaluated iterate instead of the best.
        per_sample: freeze a sample once it has converged (``False``: TorchDEQ's batch-wise
            loop, every finite sample keeps moving until all have converged; ``active`` then
            means "not non-finite" and the stop test reads the unconverged ones).
    """

    def __init__(self, x0: Array, tol: float | None, stop_mode: str, indexing: Sequence[int],
                 return_final: bool = False, per_sample: bool = True) -> None:
        xp = backend.array_namespace(x0)
        self.xp = xp
        batch = x0.shape[0]
        dev = backend.device(x0)
        self.tol = tol
        self.use_abs = stop_mode == "abs"
        self.indexing = list(indexing)
        self.return_final = return_final
        self.per_sample = per_sample
        self.best = x0
        self.last = x0
        self.lowest = xp.full((batch,), float("inf"), dtype=x0.dtype, device=dev)
        self._nstep: Any = None
        self._nstep_all: int | None = 0  # when set, every sample's nstep (see nstep)
        self._device = dev
        self.nonfinite = xp.zeros((batch,), dtype=xp.bool, device=dev)
        self.active = ~self.nonfinite
        self.abs_trace: list[Any] = []
        self.image_sq_trace: list[Any] = []  # ||f(x)||^2 per iteration, for the rel residual
        self.trajectory: dict[int, Any] = {}  # iteration -> state recorded there
        self.iterations = 0
        self.nfe = 0
        self.residual = None  # f(x) - x of the last observation, for the solvers to reuse
        self.residual_sq = None  # its squared norms (B,), ditto
        # Known (from the last host read) to have every sample active; see observe().
        self.all_active = False
        # Known to have every sample pending (active, finite and not converged), as long as
        # ``active`` and ``nonfinite`` are still these very arrays (a solver that freezes
        # samples itself replaces them); see _observe_pending().
        self._pending_arrays = (self.active, self.nonfinite)
        # Known (from the last host read) to have every sample converged (and finite).
        self._all_converged = False
        self.batch = batch
        self.large = batch * x0.shape[1] >= LARGE_STATE

    @property
    def nstep(self) -> Array:
        """``(B,)`` int64: the iteration (1-based) at which each sample's best iterate was
        evaluated (0 before any)."""
        if self._nstep_all is not None:
            xp = self.xp
            self._nstep = xp.full((self.batch,), self._nstep_all, dtype=xp.int64,
                                  device=self._device)
            self._nstep_all = None
        return self._nstep

    @nstep.setter
    def nstep(self, value: Array) -> None:
        self._nstep = value
        self._nstep_all = None

    def observe(self, x: Array, fx: Array, sync: bool = True, residual: Array = None) -> bool:
        """Record iterate ``x`` (``(B, D)``) with ``fx = f(x)``; return whether any sample is
        still active (the one host synchronisation of an iteration; ``sync=False`` skips it
        and returns True). ``residual``: ``fx - x`` if the caller has computed it already.
        Sets :attr:`residual` and :attr:`residual_sq` (its squared norms) for the solver."""
        xp = self.xp
        self.iterations += 1
        g = fx - x if residual is None else residual
        self.residual = g
        self.residual_sq = residual_sq = xp.vecdot(g, g)
        abs_res = xp.sqrt(residual_sq)
        image_sq = xp.vecdot(fx, fx)
        self.abs_trace.append(abs_res)
        self.image_sq_trace.append(image_sq)
        res = abs_res if self.use_abs else relative_residual(xp, abs_res, image_sq)
        if sync and self._pending_arrays[0] is self.active and \
                self._pending_arrays[1] is self.nonfinite:
            any_active = self._observe_pending(x, abs_res, res)
        else:
            any_active = self._observe_general(x, abs_res, res, sync)
        if self.return_final:
            # The evaluated iterate, except where it produced non-finite values.
            self.last = x if self.all_active else backend.select_rows(self.nonfinite, self.best,
                                                            x)
        if self.iterations in self.indexing:
            self.trajectory[self.iterations] = self.last if self.return_final else self.best
        return any_active

    def _observe_pending(self, x: Array, abs_res: Array, res: Array) -> bool:
        """:meth:`observe` when every sample was pending (active, finite, not converged)
        before this iteration, as in most iterations of most solves.

        Then a sample is still pending iff its residual is finite and above ``tol`` (a
        residual at or below ``tol`` is an improvement, since ``lowest > tol``), and the
        usual iteration, every sample improved and none converged, needs no selection at
        all: ``lowest`` is ``res``, ``best`` is ``x``, every ``nstep`` is this iteration
        (recorded lazily). One host read tells that case apart; the others take the general
        updates, which give the same values.
        """
        xp = self.xp
        batch = self.batch
        improved = res < self.lowest  # False for NaN
        finite = xp.isfinite(abs_res)
        if self.tol is None:
            happy, pending = improved, finite
        else:
            above = res > self.tol
            happy, pending = improved & above, finite & above
        all_happy, any_pending, all_pending, all_improved = _read_pending_flags(
            xp, batch, happy, pending, improved)
        if all_improved:  # the usual case, and always so where a sample converges
            self.lowest = res
            self._nstep_all = self.iterations
            self.best = x
        else:
            self.lowest = xp.where(improved, res, self.lowest)
            self.nstep = xp.where(improved, self.iterations, self.nstep)
            self.best = backend.select_rows(improved, x, self.best)
        if all_happy:  # none converged either: every sample stays pending and active
            self.all_active = True
            return True
        # Every sample improved to a finite residual and none is pending: all converged.
        self._all_converged = all_improved and not any_pending
        # The general updates of _observe_general, specialised to "every sample active".
        self.nonfinite = ~finite
        self.active = pending if self.per_sample else finite
        # Still every sample pending: the next iteration may take this path again.
        self.all_active = all_pending
        if all_pending:
            self._pending_arrays = (self.active, self.nonfinite)
        return any_pending

    def _observe_general(self, x: Array, abs_res: Array, res: Array, sync: bool) -> bool:
        """:meth:`observe`'s updates for any state of the samples."""
        xp = self.xp
        self._all_converged = False
        active = self.active
        improved = active & (res < self.lowest)  # False for NaN
        self.lowest = xp.where(improved, res, self.lowest)
        self.nstep = xp.where(improved, self.iterations, self.nstep)
        # NaN or inf anywhere in f(x) (or x) makes the residual non-finite.
        nonfinite = self.nonfinite | (active & ~xp.isfinite(abs_res))
        self.nonfinite = nonfinite
        pending = ~nonfinite if self.tol is None else ~(nonfinite | (self.lowest <= self.tol))
        self.active = pending if self.per_sample else ~nonfinite
        any_active = True
        if sync and self.large:
            # On large states a (B, D) selection costs more than reading more flags in the
            # same host transfer; usually every sample improved and is still active.
            any_active, every_improved = self._read_flags(pending, improved)
            self.best = x if every_improved else backend.select_rows(improved, x, self.best)
        else:
            self.all_active = False
            self.best = backend.select_rows(improved, x, self.best)
            if sync:
                any_active = backend.to_scalar(backend.any_true(pending))
        return any_active

    def _read_flags(self, pending: Any, improved: Any) -> tuple[bool, bool]:
        """``(any pending, every improved)`` in one host read; sets :attr:`all_active`.

        The counts of pending, improved (and, batch-wise, active) samples come from
        :func:`~npdeq.backend.counting.count_true`: small reductions and one transfer, where
        reading three booleans costs several times more on small ``(B,)`` masks.
        """
        xp = self.xp
        batch = self.batch
        if batch >= _PACKED_COUNTS_MAX_BATCH:  # the packed counts could overflow int64
            any_pending, every_improved, self.all_active = backend.host_flags(
                xp.any(pending), xp.all(improved), xp.all(self.active))
            return any_pending, every_improved
        if self.per_sample:
            n_pending, n_improved = count_true(pending, improved)
            n_active = n_pending
        else:  # active (finite) differs from pending (unconverged)
            n_pending, n_improved, n_active = count_true(pending, improved, self.active)
        self.all_active = n_active == batch
        return n_pending > 0, n_improved == batch

    def next_iterate(self, proposal: Array) -> Array:
        """``proposal`` for active samples, the frozen best iterate for the others."""
        if self.all_active:
            return proposal
        return backend.select_rows(self.active, proposal, self.best)

    def finish(self, restore: Any, solver_name: str, warn: bool = True) -> tuple[Any, list,
                                                                                   SolverStat]:
        """Build the solver's return value ``(z, trajectory, info)``.

        ``restore`` turns packed arrays back into the caller's structure. The trajectory has
        one state per ``indexing`` entry, in its order; an iteration the solve never reached
        (it stopped early) gives the returned state. Warns with
        :class:`~npdeq.exceptions.ConvergenceWarning` when a sample did not converge (solvers
        with a tolerance) or went non-finite.
        """
        xp = self.xp
        z = self.last if self.return_final else self.best
        trajectory = [self.trajectory.get(i, z) for i in self.indexing]
        lowest = self.lowest
        if self.abs_trace:
            abs_trace = _columns(xp, self.abs_trace)
            rel_trace = relative_residual(xp, abs_trace, _columns(xp, self.image_sq_trace))
            # ``lowest`` is the best iterate's stop_mode residual (inf where there is none);
            # the other one is read from its column of the traces.
            other = rel_trace if self.use_abs else abs_trace
            if len(self.abs_trace) == 1:  # one column: no selection to make
                picked = xp.where(lowest < math.inf, other[:, 0], math.inf)
            elif self._nstep_all:
                # Every sample's best iterate is that of one iteration, which improved
                # every sample (so ``lowest`` is finite): its column, as the selection below
                # would give it.
                picked = other[:, self._nstep_all - 1]
            else:
                column = (xp.arange(1, abs_trace.shape[1] + 1, device=backend.device(z))[None, :]
                          == self.nstep[:, None])
                picked = xp.sum(xp.where(column, other, 0.0), axis=1)
                picked = xp.where(lowest < math.inf, picked, math.inf)
            abs_lowest, rel_lowest = (lowest, picked) if self.use_abs else (picked, lowest)
        else:
            abs_trace = rel_trace = xp.zeros((z.shape[0], 0), dtype=z.dtype,
                                             device=backend.device(z))
            abs_lowest = rel_lowest = lowest
        nonfinite = self.nonfinite
        if self.tol is None:
            converged = xp.zeros_like(nonfinite)
        elif self._all_converged:  # nonfinite is all False, lowest all <= tol
            converged = ~nonfinite
        else:
            converged = ~nonfinite & (lowest <= self.tol)
        info = SolverStat(
            abs_lowest=abs_lowest,
            rel_lowest=rel_lowest,
            abs_trace=abs_trace,
            rel_trace=rel_trace,
            nstep=self.nstep,
            sradius=xp.zeros_like(lowest),
            converged=converged,
            nonfinite=nonfinite,
            nfe=self.nfe,
        )
        if warn and self.iterations > 0 and not self._all_converged:
            # tol = 0 asks for max_iter iterations: running them all is not a failure.
            warn_if_failed(info, _NONFINITE, _NOT_CONVERGED if self.tol else None,
                           who=solver_name)
        return restore(z), [restore(t) for t in trajectory], info


def start_solve(func: Callable[..., Any], x0: Any, tol: float | None, stop_mode: str,
                indexing: Sequence[int], return_final: Any = False, per_sample: Any = True
                ) -> tuple[Callable[[Any], Any], Any, Callable[[Any], Any], SolveTracker]:
    """Check the flags every solver takes, pack the state and start the solve's tracker.

    Args:
        func: the caller's map, on its state structure.
        x0: the initial state, an array or a tuple/list of arrays.
        tol, stop_mode, indexing: as checked by :func:`check_solver_args`.
        return_final, per_sample: the solver's flags (see :class:`SolveTracker`).

    Returns:
        ``(f, x, restore, tracker)``: ``func`` on packed ``(B, D)`` states, the packed
        ``x0``, the function that gives results back the caller's structure, and the
        :class:`SolveTracker` of the solve.

    Raises:
        TypeError: ``return_final`` or ``per_sample`` is not a bool.
    """
    # Plain bools pass without the general checks: this runs at every solve.
    if type(return_final) is not bool or type(per_sample) is not bool:
        check_bool("return_final", return_final)
        check_bool("per_sample", per_sample)
    f, x, restore = packed_map(func, x0)
    return f, x, restore, SolveTracker(x, tol, stop_mode, indexing, return_final, per_sample)


def _read_pending_flags(xp: Any, batch: int, happy: Any, pending: Any,
                        improved: Any) -> tuple[bool, bool, bool, bool]:
    """``(all happy, any pending, all pending, all improved)`` of ``(B,)`` masks in one host
    read (their counts, packed into one integer)."""
    if batch >= _PACKED_COUNTS_MAX_BATCH:  # the packed counts could overflow int64
        return backend.host_flags(xp.all(happy), xp.any(pending), xp.all(pending),
                                  xp.all(improved))
    n_happy, n_pending, n_improved = count_true(happy, pending, improved)
    return n_happy == batch, n_pending > 0, n_pending == batch, n_improved == batch


def _columns(xp: Any, vectors: list) -> Any:
    """``(B,)`` arrays as the columns of a ``(B, N)`` array: one concatenation and a
    transposed view (NumPy's ``stack`` costs several times more in Python)."""
    return xp.reshape(xp.concat(vectors), (len(vectors), vectors[0].shape[0])).T
