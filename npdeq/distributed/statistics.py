"""Numbers for logging, reduced across ranks: sums, means, maxima of per-rank scalars, and
the DEQ solver's statistics over the global batch (mean forward and backward iterations,
converged fraction, largest residual).

Each reduction gathers every rank's small dict and combines it in rank order, so every rank
gets bit-identical results (decisions taken from them, such as early stopping, agree).
"""

from __future__ import annotations

from typing import Any, Mapping

from npdeq import backend

__all__ = ["reduce_scalars", "SolverStatistics"]

_COMBINE = {"sum": sum, "max": max, "min": min}


def reduce_scalars(comm: Any, values: Mapping[str, float], op: str = "sum") -> dict[str, float]:
    """Reduce a dict of Python numbers across ranks (a collective; the same keys everywhere).

    Args:
        comm: the :class:`~npdeq.distributed.Communicator`.
        values: name -> number on this rank.
        op: ``'sum'``, ``'mean'`` (over ranks), ``'max'`` or ``'min'``.

    Returns:
        name -> reduced number, identical on every rank.

    Raises:
        ValueError: an unknown ``op``, or ranks that passed different keys.

    Example:
        >>> from mpi4py import MPI
        >>> from npdeq.distributed import create_communicator
        >>> reduce_scalars(create_communicator(MPI.COMM_SELF), {"correct": 3}, "sum")
        {'correct': 3}
    """
    if op not in ("sum", "mean", "max", "min"):
        raise ValueError(f"op must be 'sum', 'mean', 'max' or 'min', got {op!r}")
    gathered = comm.allgather(dict(values))
    keys = list(gathered[0])
    for rank, entry in enumerate(gathered):
        if sorted(entry) != sorted(keys):
            raise ValueError(f"reduce_scalars: rank {rank} passed keys {sorted(entry)}, "
                             f"rank 0 {sorted(keys)}")
    combine = _COMBINE["sum" if op == "mean" else op]
    out = {key: combine(entry[key] for entry in gathered) for key in keys}
    return {k: v / len(gathered) for k, v in out.items()} if op == "mean" else out


def _host(a: Any) -> Any:
    return backend.to_numpy(a)


class SolverStatistics:
    """Per-sample DEQ solver statistics accumulated over steps, then reduced across ranks.

    :meth:`add` takes the ``info`` dict a DEQ core returns (``nstep``, ``converged``,
    ``abs_lowest``, and ``backward['nstep']`` with IFT); :meth:`reduce` gives the figures over
    every sample of every rank since the last :meth:`reset`.

    Example:
        >>> import numpy as np
        >>> from mpi4py import MPI
        >>> from npdeq.distributed import create_communicator
        >>> stats = SolverStatistics()
        >>> stats.add({"nstep": np.array([3, 5]), "converged": np.array([True, False]),
        ...            "abs_lowest": np.array([1e-5, 2e-3])})
        >>> stats.reduce(create_communicator(MPI.COMM_SELF))["forward_iterations"]
        4.0
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything added."""
        self.sums = {"samples": 0.0, "forward": 0.0, "converged": 0.0, "residual": 0.0,
                     "backward_samples": 0.0, "backward": 0.0}
        self.largest = 0.0

    def add(self, info: Mapping[str, Any]) -> None:
        """Add one solve's ``info`` (one host read of each per-sample array)."""
        nstep = _host(info["nstep"]).reshape(-1)
        residual = _host(info["abs_lowest"]).reshape(-1)
        self.sums["samples"] += nstep.shape[0]
        self.sums["forward"] += float(nstep.sum())
        self.sums["converged"] += float(_host(info["converged"]).sum())
        self.sums["residual"] += float(residual.sum())
        if residual.shape[0]:
            self.largest = max(self.largest, float(residual.max()))
        back = info.get("backward")
        if back is not None and back.get("nstep") is not None:
            steps = _host(back["nstep"]).reshape(-1)
            self.sums["backward_samples"] += steps.shape[0]
            self.sums["backward"] += float(steps.sum())

    def reduce(self, comm: Any) -> dict[str, float]:
        """The figures over all ranks (a collective): ``forward_iterations``,
        ``backward_iterations`` (NaN without IFT), ``converged_fraction``, ``mean_residual``,
        ``largest_residual``, ``samples``."""
        sums = reduce_scalars(comm, self.sums, "sum")
        largest = reduce_scalars(comm, {"largest": self.largest}, "max")["largest"]
        n, nb = sums["samples"], sums["backward_samples"]
        nan = float("nan")
        return {"forward_iterations": sums["forward"] / n if n else nan,
                "backward_iterations": sums["backward"] / nb if nb else nan,
                "converged_fraction": sums["converged"] / n if n else nan,
                "mean_residual": sums["residual"] / n if n else nan,
                "largest_residual": largest, "samples": n}
