"""How one flat buffer travels: the reduction and broadcast of a 1-D contiguous buffer, in
place, by the engine that suits where it lives.

- :class:`MPITransport`: NumPy buffers straight through mpi4py's buffer interface;
- :class:`CudaAwareMPITransport`: CuPy buffers straight through a CUDA-aware MPI;
- :class:`NCCLTransport`: CuPy buffers through NCCL (``cupy.cuda.nccl``), one NCCL
  communicator per MPI communicator, made on first use (its id broadcast over MPI);
- :class:`HostTransport`: anything else (``array_api_strict``, CuPy without NCCL or a
  CUDA-aware MPI): copied to the host, reduced by MPI, copied back.

Every rank must call with buffers of the same length and dtype, in the same order: that is
what the callers (:mod:`npdeq.distributed.communicator`) guarantee. mpi4py and CuPy are
imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from npdeq import backend
from npdeq.backend import Array

__all__ = ["MPITransport", "CudaAwareMPITransport", "NCCLTransport", "HostTransport", "OPS"]

OPS = ("sum", "max", "min")


def _mpi_op(MPI: Any, op: str) -> Any:
    return {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]


class MPITransport:
    """NumPy (host) buffers through MPI."""

    name = "mpi"

    def __init__(self, comm: Any) -> None:
        self.comm = comm  # an mpi4py communicator
        self.MPI = importlib.import_module("mpi4py.MPI")

    def allreduce(self, buffer: Array, op: str = "sum") -> Array:
        """Reduce ``buffer`` across ranks in place; return it."""
        if buffer.shape[0]:
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=_mpi_op(self.MPI, op))
        return buffer

    def bcast(self, buffer: Array, root: int) -> Array:
        """Overwrite ``buffer`` with ``root``'s in place; return it."""
        if buffer.shape[0]:
            self.comm.Bcast(buffer, root=root)
        return buffer


class CudaAwareMPITransport(MPITransport):
    """CuPy buffers through an MPI that reads device memory (``__cuda_array_interface__``).

    MPI does not know CuPy's streams: the current stream is synchronised first, so the
    buffer holds its final values when MPI reads it.
    """

    name = "cuda_aware_mpi"

    def allreduce(self, buffer: Array, op: str = "sum") -> Array:
        importlib.import_module("cupy").cuda.get_current_stream().synchronize()
        return super().allreduce(buffer, op)

    def bcast(self, buffer: Array, root: int) -> Array:
        importlib.import_module("cupy").cuda.get_current_stream().synchronize()
        return super().bcast(buffer, root)


class HostTransport(MPITransport):
    """Any buffer: copied to a NumPy array, through MPI, copied back to its namespace and
    device (the fallback that always works)."""

    name = "host"

    def _through_host(self, buffer: Array, run: Any) -> Array:
        xp = backend.array_namespace(buffer)
        host = backend.to_numpy(buffer)
        if backend.array_namespace(host) is xp:  # already on the host: to_numpy shares it
            host = host.copy()
        run(host)
        return backend.move_array(host, xp, backend.device(buffer))

    def allreduce(self, buffer: Array, op: str = "sum") -> Array:
        return self._through_host(buffer, lambda h: MPITransport.allreduce(self, h, op))

    def bcast(self, buffer: Array, root: int) -> Array:
        return self._through_host(buffer, lambda h: MPITransport.bcast(self, h, root))


class NCCLTransport:
    """CuPy buffers through NCCL on the current device and stream.

    The NCCL communicator spans the same processes as the MPI one; it is created on the
    first call (a collective: every rank reaches it at the same step), on the device
    current then, which should be ``local_rank``'s (:meth:`Communicator.use_device`).
    Complex buffers travel as twice as many real numbers (sum only).
    """

    name = "nccl"

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self._nccl_comm = None

    def _communicator(self) -> Any:
        if self._nccl_comm is None:
            nccl = importlib.import_module("cupy.cuda.nccl")
            uid = nccl.get_unique_id() if self.comm.Get_rank() == 0 else None
            uid = self.comm.bcast(uid, root=0)
            self._nccl_comm = nccl.NcclCommunicator(self.comm.Get_size(), uid,
                                                    self.comm.Get_rank())
        return self._nccl_comm

    def _typed(self, buffer: Array, op: str) -> tuple[Array, int, int]:
        """``(buffer or a real view of it, element count, NCCL dtype)``."""
        cupy = importlib.import_module("cupy")
        nccl = importlib.import_module("cupy.cuda.nccl")
        if buffer.dtype.kind == "c":
            if op != "sum":
                raise TypeError(f"op={op!r} is not defined on complex buffers")
            buffer = buffer.view(cupy.float32 if buffer.dtype == cupy.complex64
                                 else cupy.float64)
        types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                 "float64": nccl.NCCL_FLOAT64, "int8": nccl.NCCL_INT8,
                 "uint8": nccl.NCCL_UINT8, "int32": nccl.NCCL_INT32,
                 "uint32": nccl.NCCL_UINT32, "int64": nccl.NCCL_INT64,
                 "uint64": nccl.NCCL_UINT64}
        if buffer.dtype.name not in types:
            raise TypeError(f"NCCL cannot reduce {buffer.dtype} buffers")
        return buffer, buffer.size, types[buffer.dtype.name]

    def allreduce(self, buffer: Array, op: str = "sum") -> Array:
        """Reduce ``buffer`` across ranks in place, queued on the current stream."""
        if not buffer.shape[0]:
            return buffer
        nccl = importlib.import_module("cupy.cuda.nccl")
        cupy = importlib.import_module("cupy")
        view, count, dtype = self._typed(buffer, op)
        nccl_op = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}[op]
        stream = cupy.cuda.get_current_stream().ptr
        self._communicator().allReduce(view.data.ptr, view.data.ptr, count, dtype, nccl_op,
                                       stream)
        return buffer

    def bcast(self, buffer: Array, root: int) -> Array:
        """Overwrite ``buffer`` with ``root``'s in place, queued on the current stream."""
        if not buffer.shape[0]:
            return buffer
        cupy = importlib.import_module("cupy")
        view, count, dtype = self._typed(buffer, "sum")
        self._communicator().bcast(view.data.ptr, count, dtype, root,
                                   cupy.cuda.get_current_stream().ptr)
        return buffer
