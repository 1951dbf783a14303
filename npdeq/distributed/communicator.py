"""The communicator: ranks, collectives on arrays and Python objects, and the transport
each array gets (:mod:`npdeq.distributed.transport`).

A :class:`Communicator` wraps an mpi4py communicator. Arrays are reduced in their own
namespace and on their device: NumPy arrays through MPI directly, CuPy arrays through NCCL,
a CUDA-aware MPI or the host (``backend=``), other namespaces through the host. A list of
arrays is reduced through one flat buffer per dtype (:mod:`npdeq.distributed.packing`), so a
training step costs one collective per dtype, whatever the number of parameters.

Every collective must be called by every rank of the communicator, in the same order, with
arrays of the same shapes and dtypes (the optimizer and broadcast check the model's layout
once, :mod:`npdeq.distributed.signature`). mpi4py is imported when a communicator is made.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.backend import Array
from npdeq.backend.checks import as_count
from npdeq.distributed import environment, packing
from npdeq.distributed.transport import (CudaAwareMPITransport, HostTransport, MPITransport,
                                         NCCLTransport)

__all__ = ["Communicator", "create_communicator", "REDUCE_OPS"]

REDUCE_OPS = ("sum", "mean", "max", "min")
_TRANSPORTS = {"nccl": NCCLTransport, "cuda_aware_mpi": CudaAwareMPITransport,
               "host": HostTransport}


def _check_op(op: Any, arrays: Sequence[Array] = ()) -> str:
    if op not in REDUCE_OPS:
        raise ValueError(f"op must be one of {', '.join(REDUCE_OPS)}, got {op!r}")
    for a in arrays:
        xp = backend.array_namespace(a)
        if op == "mean" and not xp.isdtype(a.dtype, ("real floating", "complex floating")):
            raise TypeError(f"op='mean' needs floating-point arrays, got {a.dtype} (its mean "
                            "would not be an integer); reduce with op='sum' and divide")
    return op


class Communicator:
    """Collectives over an mpi4py communicator (made by :func:`create_communicator`).

    Attributes:
        mpi_comm: the mpi4py communicator.
        rank, size: this process's rank and the number of processes.
        local_rank, local_size: the rank among the processes on this node and their number
            (``Split_type(COMM_TYPE_SHARED)``): pick the GPU with ``local_rank``.
        requested_backend: the ``backend`` asked for (``'auto'`` or a name).
    """

    def __init__(self, mpi_comm: Any, backend: str = "auto") -> None:
        MPI = environment.require_mpi()
        if not isinstance(mpi_comm, MPI.Comm):
            raise TypeError(f"mpi_comm must be an mpi4py communicator (mpi4py.MPI.Comm), got "
                            f"{type(mpi_comm).__name__}")
        environment.check_backend(backend)
        self.mpi_comm = mpi_comm
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.requested_backend = backend
        self._mpi = MPITransport(mpi_comm)
        self._device: Any = None  # the CuPy transport, chosen on first use
        self._host: Any = None

    def __repr__(self) -> str:
        return (f"Communicator(rank={self.rank}, size={self.size}, local_rank="
                f"{self.local_rank}, backend={self.requested_backend!r})")

    # -- transports ----------------------------------------------------------------------

    @property
    def device_backend(self) -> str:
        """The transport CuPy arrays get: ``'nccl'``, ``'cuda_aware_mpi'`` or ``'host'``."""
        if self._device is None:
            name = environment.device_backend(self.requested_backend)
            self._device = _TRANSPORTS[name](self.mpi_comm)
        return self._device.name

    def _transport(self, xp: Any) -> Any:
        if backend.is_numpy(xp):
            return self._mpi
        if backend.is_cupy(xp):
            self.device_backend  # noqa: B018  (chooses it once)
            return self._device
        if self._host is None:
            self._host = HostTransport(self.mpi_comm)
        return self._host

    def backend_for(self, array: Array) -> str:
        """The transport ``array`` would travel by (``'mpi'`` for NumPy arrays)."""
        return self._transport(backend.array_namespace(array)).name

    def use_device(self) -> Any:
        """Make GPU ``local_rank % GPUs on this node`` CuPy's current device; return it.

        Call it before creating arrays on the GPU, so that each process of a node has its own.

        Raises:
            RuntimeError: no CuPy or no GPU.
        """
        if not backend.cupy_available():
            raise RuntimeError("use_device needs CuPy and a CUDA GPU, and none was found")
        import cupy
        device = cupy.cuda.Device(self.local_rank % cupy.cuda.runtime.getDeviceCount())
        device.use()
        return device

    # -- arrays --------------------------------------------------------------------------

    def allreduce(self, x: Any, op: str = "sum") -> Any:
        """Reduce an array or a Python number across ranks.

        Args:
            x: an array (any namespace; it is not modified) or an int/float.
            op: ``'sum'``, ``'mean'`` (floating arrays, or numbers), ``'max'`` or ``'min'``.

        Returns:
            A new array of ``x``'s shape, dtype, namespace and device, or a number.

        Example:
            >>> import numpy as np
            >>> from mpi4py import MPI
            >>> comm = create_communicator(MPI.COMM_SELF)
            >>> comm.allreduce(np.ones(2), op="mean"), comm.allreduce(3, op="max")
            (array([1., 1.]), 3)
        """
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            _check_op(op)
            MPI = environment.require_mpi()
            mpi_op = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]
            total = self.mpi_comm.allreduce(x, op=mpi_op)
            return total / self.size if op == "mean" else total
        return self.allreduce_arrays([x], op)[0]

    def allreduce_arrays(self, arrays: Sequence[Array], op: str = "mean") -> list[Array]:
        """Reduce a list of arrays (mixed shapes and dtypes) through one buffer per dtype.

        Args:
            arrays: arrays of one namespace and device; every rank passes the same shapes and
                dtypes in the same order. An empty list returns ``[]`` with no collective.
            op: as :meth:`allreduce` (``'mean'`` divides the sum by :attr:`size`).

        Returns:
            New arrays, in order, of the inputs' shapes, dtypes, namespace and device.

        Raises:
            ValueError: an unknown ``op``. TypeError: ``'mean'`` of integer arrays, or
                arrays of several namespaces (both before any communication).
        """
        arrays = list(arrays)
        op = _check_op(op, arrays)
        buckets = packing.pack(arrays)
        if not buckets:
            return []
        transport = self._transport(backend.array_namespace(buckets[0].buffer))
        for bucket in buckets:
            reduced = transport.allreduce(bucket.buffer, "sum" if op == "mean" else op)
            if op == "mean":
                reduced /= self.size  # the buffer is a fresh one of ours: divide in place
            bucket.buffer = reduced
        return packing.unpack(buckets, len(arrays))

    def bcast_arrays(self, arrays: Sequence[Array], root: int = 0) -> list[Array]:
        """``root``'s arrays on every rank (each rank passes arrays of the same shapes and
        dtypes, which are not modified); new arrays in each rank's namespace and device."""
        root = self._check_root(root)
        arrays = list(arrays)
        buckets = packing.pack(arrays)
        if not buckets:
            return []
        transport = self._transport(backend.array_namespace(buckets[0].buffer))
        for bucket in buckets:
            bucket.buffer = transport.bcast(bucket.buffer, root)
        return packing.unpack(buckets, len(arrays))

    # -- Python objects and control --------------------------------------------------------

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """``root``'s ``obj`` on every rank: an array through :meth:`bcast_arrays` (every rank
        passes one of the same shape and dtype), anything else pickled."""
        root = self._check_root(root)
        try:
            backend.array_namespace(obj)
        except TypeError:
            return self.mpi_comm.bcast(obj, root=root)
        return self.bcast_arrays([obj], root)[0]

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's (small, picklable) ``obj``, in rank order, on every rank."""
        return self.mpi_comm.allgather(obj)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        self.mpi_comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every process of the communicator (``MPI_Abort``) with exit status ``code``."""
        self.mpi_comm.Abort(code)

    def _check_root(self, root: Any) -> int:
        rank = as_count(root)
        if rank is None or not 0 <= rank < self.size:
            raise ValueError(f"root must be a rank from 0 to {self.size - 1}, got {root!r}")
        return rank


def create_communicator(mpi_comm: Any = None, backend: str = "auto") -> Communicator:
    """A :class:`Communicator` over ``mpi_comm`` (default ``MPI.COMM_WORLD``).

    Args:
        mpi_comm: an mpi4py communicator, or ``None`` for ``COMM_WORLD``.
        backend: the transport for CuPy arrays: ``'auto'`` (NCCL if CuPy has it, else a
            CUDA-aware MPI if the library reports one, else the host), ``'nccl'``,
            ``'cuda_aware_mpi'`` or ``'host'``. NumPy arrays always go through MPI directly.
            Chosen at the first CuPy collective (or :attr:`Communicator.device_backend`);
            a forced transport this process cannot use is a RuntimeError then.

    Raises:
        ImportError: mpi4py is not installed (``pip install "npdeq[mpi]"``).
        TypeError, ValueError: a bad ``mpi_comm`` or ``backend``.

    Example:
        >>> from mpi4py import MPI
        >>> from npdeq.distributed import create_communicator
        >>> comm = create_communicator(MPI.COMM_SELF)
        >>> comm.rank, comm.size, comm.local_rank
        (0, 1, 0)
    """
    MPI = environment.require_mpi()
    return Communicator(MPI.COMM_WORLD if mpi_comm is None else mpi_comm, backend)
