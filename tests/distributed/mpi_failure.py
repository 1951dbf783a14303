"""Run under ``mpiexec -n 2``: rank 1 raises while rank 0 waits in a collective; the job must
end (MPI_Abort) with a message naming rank 1 instead of hanging."""

from mpi4py import MPI  # noqa: F401  (initialises MPI before npdeq's communicator)

from npdeq.distributed import abort_on_exception, create_communicator

comm = create_communicator()
with abort_on_exception(comm):
    if comm.rank == 1:
        raise ValueError("a bad batch on purpose")
    comm.allreduce(1.0)  # would wait forever for rank 1
print("rank", comm.rank, "was not aborted", flush=True)
