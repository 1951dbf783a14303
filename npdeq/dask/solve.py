"""``npdeq.dask.fixed_point``: many independent fixed points, one solve per batch chunk.

The solvers are per sample (a sample's iterates depend on its own state and inputs only, and
a converged sample stops moving), so a batch chunked along axis 0 is solved chunk by chunk
with :func:`npdeq.fixed_point`, each chunk on its worker, with no round trip to the scheduler
per iteration.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from npdeq import backend
from npdeq.dask.graph import (check_batched, chunk_context, chunk_tasks, pick, require_dask,
                              shared)
from npdeq.grad.functional import fixed_point as _fixed_point
from npdeq.grad.state import as_state_tuple, raw_arrays
from npdeq.solver import get_solver

__all__ = ["fixed_point"]

_OWNER = "npdeq.dask.fixed_point"
# The per-sample statistics returned, in the order of a chunk's result after the states.
_STATS = ("nstep", "abs_lowest", "rel_lowest", "converged", "nonfinite")


@dataclass(frozen=True, slots=True)
class _SolveSpec:
    """Everything a chunk's solve needs besides its arrays; one graph key for all chunks."""
    func: Callable[..., Any]
    shared_names: tuple[str, ...]
    solver: str
    solver_kwargs: dict
    single: bool
    residual_dtype: Any


def _solve_chunk(spec: _SolveSpec, shared_values: list, index: int, bounds: tuple[int, int],
                 z_blocks: list, x_blocks: list) -> tuple:
    """Solve one chunk; returns ``(*z parts, nstep, abs, rel, converged, nonfinite, nfe)``."""
    xp = backend.array_namespace(*z_blocks)
    dev = backend.device(z_blocks[0])
    n = bounds[1] - bounds[0]
    if n == 0:  # an empty chunk: nothing to solve (a solver needs a sample)
        empty = [xp.zeros((0,), dtype=dt, device=dev)
                 for dt in (xp.int64, spec.residual_dtype, spec.residual_dtype, xp.bool,
                            xp.bool)]
        return (*z_blocks, *empty, xp.zeros((1,), dtype=xp.int64, device=dev))
    func, extra = spec.func, dict(zip(spec.shared_names, shared_values))

    def chunk_func(*zs):
        return func(*zs, *x_blocks, **extra)

    with chunk_context(_OWNER, "func", index, bounds):
        z, info = _fixed_point(chunk_func, z_blocks[0] if spec.single else tuple(z_blocks),
                               solver=spec.solver, grad=None, solver_kwargs=spec.solver_kwargs)
    stats = [info[k] for k in _STATS]
    # The declared dtypes of the outputs (set before any solve) hold whatever the solver did.
    stats[1:3] = [s if s.dtype == spec.residual_dtype else xp.astype(s, spec.residual_dtype)
                  for s in stats[1:3]]
    nfe = xp.full((1,), info["nfe"], dtype=xp.int64, device=dev)
    return (*raw_arrays(as_state_tuple(z)), *stats, nfe)


def _residual_dtype(xp: Any, metas: list) -> Any:
    """The dtype of the residual statistics: the states' common dtype, float16 solved (and
    reported) in float32."""
    dtype = xp.result_type(*(m.dtype for m in metas))
    return xp.float32 if dtype == xp.float16 else dtype


def _check_solver(solver: Any, solver_kwargs: Any) -> dict:
    """The solver's name and keyword arguments, checked before any graph is built."""
    if not isinstance(solver, str):
        raise TypeError(f"{_OWNER}: solver must be a registered solver's name (a str), got "
                        f"{type(solver).__name__}")
    solve = get_solver(solver)  # ValueError naming the registered solvers
    if solver_kwargs is None:
        return {}
    if not isinstance(solver_kwargs, dict):
        raise TypeError(f"{_OWNER}: solver_kwargs must be a dict or None, got "
                        f"{type(solver_kwargs).__name__}")
    params = inspect.signature(solve).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(solver_kwargs) - set(list(params)[2:]))
        if unknown:
            raise ValueError(f"{_OWNER}: solver {solver!r} takes no argument(s) {unknown}; "
                             f"it takes {list(params)[2:]}")
    return dict(solver_kwargs)


def fixed_point(func: Callable[..., Any], z0: Any, *batched: Any, solver: str = "anderson",
                solver_kwargs: dict | None = None, **kwargs: Any) -> tuple[Any, dict]:
    """Solve ``z = func(z, *batched)`` for every sample of Dask arrays, one chunk per task.

    Each chunk of the batch axis 0 is solved on its worker by :func:`npdeq.fixed_point`
    (nothing returns to the scheduler between iterations). The solvers are per sample (a
    sample depends only on its own state and inputs and stops moving once it has
    converged), so every sample's result and statistics are those of one solve of the whole
    batch (``nfe`` apart, which counts per solve): bit for bit where ``func`` computes each
    sample the same way whatever the batch size (elementwise ops, reductions within a
    sample), to rounding where it does not (a matrix product may take another BLAS kernel
    for another number of rows). With ``solver_kwargs={'per_sample': False}`` a chunk
    iterates until its own samples have all converged, so results then depend on the
    chunking within the tolerance. The results are lazy: nothing
    runs until you compute them, and computing several together (``dask.compute(z,
    info['converged'])``) solves each chunk once. Works with any scheduler (threads by
    default, or a ``distributed.Client``) and with NumPy or CuPy chunks.

    Args:
        func: the map, under :func:`npdeq.fixed_point`'s contract: it takes the state as
            Tensors and returns Tensors (write it with npdeq's ops). It is called as
            ``func(z, *xs, **kwargs)`` (``func(*zs, *xs, **kwargs)`` for a tuple state), where
            ``xs`` are the chunk's blocks of ``batched`` (plain arrays, same samples as
            ``z``) and ``kwargs`` the shared arguments below.
        z0: initial states: a Dask array ``(B, ...)`` chunked along axis 0 only, or a tuple
            of them (a tuple state) with the same batch chunks.
        *batched: per-sample inputs, Dask arrays ``(B, ...)`` chunked along axis 0 only;
            rechunked (lazily) to ``z0``'s batch chunks where they differ.
        solver: forward solver name (``'anderson'``, ``'broyden'``, ...).
        solver_kwargs: its arguments (``max_iter``, ``tol``, ``stop_mode``, ``m``, ...).
        **kwargs: shared (non-batched) keyword arguments of ``func``, such as weights. Each
            is one key of the graph, like ``func`` itself: held once for every chunk, and on
            a cluster sent once to each worker, not once per chunk. A ``dask.delayed`` value
            is used as it is.

    Returns:
        ``(z, info)``: ``z`` a Dask array with ``z0``'s chunks, meta and dtype (a tuple for a
        tuple state); ``info`` a dict of lazy Dask arrays: per sample (``(B,)``, ``z0``'s
        batch chunks) ``nstep``, ``abs_lowest``, ``rel_lowest``, ``converged``,
        ``nonfinite``; per chunk ``nfe`` (one entry each); and the summary
        ``converged_fraction`` and ``worst_residual`` (the largest ``abs_lowest``), 0-d.
        A sample that did not converge is flagged in ``converged``, never dropped (and the
        solver's ``ConvergenceWarning`` is raised where the chunk runs).

    Raises:
        TypeError: ``z0`` or an entry of ``batched`` is not a Dask array; ``solver`` or
            ``solver_kwargs`` of the wrong type.
        ValueError: an array chunked along a non-batch axis (the message says how to
            rechunk), batch lengths that differ, an unknown solver or solver argument.
            All raised here, before anything runs. At compute time, an exception from
            ``func`` (or a solver argument's value) fails the computation as it was raised,
            with a note naming the chunk and its samples.

    Example:
        >>> import dask.array as da, numpy as np, npdeq, npdeq.dask
        >>> x = da.from_array(np.linspace(0.0, 1.0, 10).reshape(10, 1), chunks=4)
        >>> z, info = npdeq.dask.fixed_point(lambda z, x: 0.5 * npdeq.cos(z) + x,
        ...                                  da.zeros((10, 1), chunks=4), x,
        ...                                  solver_kwargs={"tol": 1e-10, "max_iter": 100})
        >>> z.chunks, bool(info["converged_fraction"].compute() == 1.0)
        (((4, 4, 2), (1,)), True)
        >>> bool(np.allclose(z.compute(), 0.5 * np.cos(z.compute()) + x.compute()))
        True
    """
    da = require_dask()
    if not callable(func):
        raise TypeError(f"{_OWNER}: func must be callable, got {type(func).__name__}")
    solver_kwargs = _check_solver(solver, solver_kwargs)
    single = not isinstance(z0, (tuple, list))
    states = check_batched(_OWNER, "z0", list(as_state_tuple(z0)))
    if not states:
        raise ValueError(f"{_OWNER}: z0 is an empty tuple; it needs at least one state")
    batch_chunks = tuple(states[0].chunks[0])
    xs = check_batched(_OWNER, "batched", list(batched), batch_chunks) if batched else []
    metas = [s._meta for s in states]
    xp = backend.array_namespace(*metas)
    residual_dtype = _residual_dtype(xp, metas)
    spec = shared(_SolveSpec(func, tuple(kwargs), solver, solver_kwargs, single,
                             residual_dtype))
    # Each shared keyword argument is a key of its own, so it is held (and shipped) once.
    objs = [shared(v) for v in kwargs.values()]
    record = chunk_tasks("npdeq-fixed-point", _solve_chunk, spec, objs, [states, xs],
                         batch_chunks, meta=metas[0])
    zs = [pick(record, k, s.chunks, s._meta, "npdeq-z") for k, s in enumerate(states)]
    batch = (batch_chunks,)
    dev = backend.device(metas[0])
    dtypes = (xp.int64, residual_dtype, residual_dtype, xp.bool, xp.bool)
    info = {key: pick(record, len(states) + j, batch, xp.zeros((0,), dtype=dt, device=dev),
                      f"npdeq-{key}")
            for j, (key, dt) in enumerate(zip(_STATS, dtypes))}
    info["nfe"] = pick(record, len(states) + len(_STATS), ((1,) * len(batch_chunks),),
                       xp.zeros((0,), dtype=xp.int64, device=dev), "npdeq-nfe")
    info["converged_fraction"] = da.mean(info["converged"])
    info["worst_residual"] = da.max(info["abs_lowest"])
    return (zs[0] if single else tuple(zs)), info
