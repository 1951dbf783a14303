"""The demo's data-parallel half (``mpiexec -n N npdeq demo``): what :func:`train` does
differently on each rank of a communicator.

- Before training: rank 0's parameters and buffers are broadcast, and the optimizer is
  wrapped so gradients are averaged across ranks before each step.
- Each epoch: every rank draws the same seeded permutation and takes its share
  (:class:`~npdeq.distributed.DistributedSampler`, padded so that every rank runs the same
  number of steps); each rank's batch is ``batch_size // size``, so the global batch is the
  single-process one, and the mean losses' averaged gradients are the global mean loss's.
- After each epoch: the figures are reduced over all ranks (one gathering of a few numbers):
  mean loss and per-batch solver statistics, accuracy and converged fraction over every
  sample seen, the largest residual, the slowest rank's time.

mpi4py is imported when the communicator is made (``npdeq.distributed``).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

import npdeq
from npdeq.distributed import (DistributedOptimizer, DistributedSampler, broadcast_parameters,
                               reduce_scalars)

__all__ = ["Shards"]


class Shards:
    """One rank's view of data-parallel training.

    Args:
        model: the classifier (already built identically on every rank; rank 0's values win).
        optimizer: the optimizer to wrap.
        comm: the communicator.
        n: training samples.
        batch_size: the global batch size (a multiple of ``comm.size``).
        seed: the permutations' seed.

    Raises:
        ValueError: ``batch_size`` is not a multiple of the number of ranks.
    """

    def __init__(self, model: npdeq.nn.Module, optimizer: Any, comm: Any, n: int,
                 batch_size: int, seed: int) -> None:
        if batch_size % comm.size:
            raise ValueError(f"batch_size {batch_size} must be a multiple of the {comm.size} "
                             "ranks (each rank takes batch_size / ranks samples per step)")
        self.comm = comm
        broadcast_parameters(model, comm)
        self.optimizer = DistributedOptimizer(optimizer, comm,
                                              named_parameters=model.named_parameters())
        self.sampler = DistributedSampler(n, comm=comm, seed=seed)
        self.per_rank = batch_size // comm.size
        self.steps = -(-len(self.sampler) // self.per_rank)

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        """This rank's index batches for ``epoch`` (host integer arrays)."""
        self.sampler.set_epoch(epoch)
        for index in self.sampler.batches(self.per_rank):
            yield np.asarray(index)

    def reduce_epoch(self, tally: Any, seconds: float) -> dict[str, float]:
        """The epoch's figures over all ranks (the same on every rank), from each rank's
        :class:`~npdeq.examples.digits.training.EpochTally`."""
        sums = reduce_scalars(self.comm, {
            "loss": float(np.sum(tally.losses)), "batches": len(tally.losses),
            "correct": tally.correct, "seen": tally.seen,
            "forward": float(np.sum(tally.forward)), "backward": float(np.sum(tally.backward)),
            "backward_batches": len(tally.backward), "residual": float(np.sum(tally.residual)),
            "converged": tally.converged})
        peaks = reduce_scalars(self.comm, {"largest": tally.largest, "seconds": seconds}, "max")
        nan = float("nan")
        batches, backward_batches = sums["batches"], sums["backward_batches"]
        return dict(loss=sums["loss"] / batches if batches else nan,
                    accuracy=sums["correct"] / sums["seen"],
                    seconds=peaks["seconds"],
                    forward=sums["forward"] / batches if batches else nan,
                    backward=sums["backward"] / backward_batches if backward_batches else nan,
                    residual=sums["residual"] / batches if batches else nan,
                    converged=sums["converged"] / sums["seen"],
                    largest=peaks["largest"])
