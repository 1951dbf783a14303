"""Data-parallel DEQ training over MPI, the way ChainerMN and Horovod do it on a NumPy/CuPy
stack: one process per device, the same model on every rank, each rank a shard of every
batch, gradients averaged by an allreduce before each optimizer step.

- :mod:`~npdeq.distributed.communicator`: :func:`create_communicator` (ranks, local rank,
  allreduce/broadcast of arrays and objects; NumPy arrays through MPI, CuPy arrays through
  NCCL, a CUDA-aware MPI or the host);
- :mod:`~npdeq.distributed.optimizer`: :class:`DistributedOptimizer`,
  :func:`broadcast_parameters`, :func:`broadcast_optimizer_state`;
- :mod:`~npdeq.distributed.sampler`: :class:`DistributedSampler` (a seeded per-epoch
  permutation shared by all ranks), :func:`rank_seed` (per-rank dropout seeds);
- :mod:`~npdeq.distributed.statistics`: :func:`reduce_scalars`, :class:`SolverStatistics`;
- :mod:`~npdeq.distributed.failure`: :func:`abort_on_exception`, :func:`install_excepthook`;
- :mod:`~npdeq.distributed.signature`: ranks that disagree on the model get
  :class:`ModelMismatchError`;
- :mod:`~npdeq.distributed.packing`, :mod:`~npdeq.distributed.transport`,
  :mod:`~npdeq.distributed.environment`: flat buffers, the transports, what is installed.

A training script (run with ``mpiexec -n 2 python train.py``)::

    from npdeq import optim
    from npdeq.distributed import (DistributedOptimizer, DistributedSampler,
                                   abort_on_exception, broadcast_parameters,
                                   create_communicator)

    comm = create_communicator()
    with abort_on_exception(comm):
        model = build_model()
        broadcast_parameters(model, comm)
        opt = DistributedOptimizer(optim.AdamW(model.parameters(), lr=1e-3), comm)
        sampler = DistributedSampler(len(y), comm=comm, seed=0)
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for index in sampler.batches(batch_size // comm.size):
                ...  # forward, mean loss over the rank's batch, backward
                opt.step()

mpi4py (the ``mpi`` extra) and CuPy are imported only when a communicator is made or a
probe runs: importing this package imports neither.
"""

from npdeq.distributed.communicator import REDUCE_OPS, Communicator, create_communicator
from npdeq.distributed.environment import (cuda_aware_mpi, device_backend, launcher_rank,
                                           launcher_size, mpi_available, mpi_library_version,
                                           nccl_available)
from npdeq.distributed.failure import abort_on_exception, failure_message, install_excepthook
from npdeq.distributed.optimizer import (DistributedOptimizer, broadcast_optimizer_state,
                                         broadcast_parameters)
from npdeq.distributed.sampler import DistributedSampler, mix_seed, rank_seed
from npdeq.distributed.signature import ModelMismatchError, check_same
from npdeq.distributed.statistics import SolverStatistics, reduce_scalars

__all__ = [
    "Communicator", "create_communicator", "REDUCE_OPS",
    "DistributedOptimizer", "broadcast_parameters", "broadcast_optimizer_state",
    "DistributedSampler", "rank_seed", "mix_seed",
    "SolverStatistics", "reduce_scalars",
    "abort_on_exception", "install_excepthook", "failure_message",
    "ModelMismatchError", "check_same",
    "mpi_available", "mpi_library_version", "cuda_aware_mpi", "nccl_available",
    "device_backend", "launcher_size", "launcher_rank",
]
