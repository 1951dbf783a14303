"""The communicator in one process (``COMM_SELF``): results keep namespace, device, dtype
and shape; bad arguments are refused before any communication; the probes and the import
are lazy."""

import os
import subprocess
import sys

import numpy as np
import pytest

from npdeq import backend
from npdeq.distributed import environment


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_allreduce_keeps_arrays_where_they_are(comm, to_xp, check_array, op):
    x = to_xp(np.arange(6.0).reshape(2, 3), np.float32)
    out = comm.allreduce(x, op)
    check_array(out, shape=(2, 3), dtype=x.dtype)
    assert np.array_equal(backend.to_numpy(out), backend.to_numpy(x))
    assert out is not x


def test_list_reduction_mixed_dtypes(comm, to_xp, check_array):
    arrays = [to_xp(np.ones((2, 2))), to_xp(np.arange(3), np.int64), to_xp(np.asarray(2.0))]
    out = comm.allreduce_arrays(arrays, "sum")
    for a, b in zip(arrays, out):
        check_array(b, shape=a.shape, dtype=a.dtype)
    assert comm.allreduce_arrays([]) == []


def test_transports_by_namespace(comm):
    import array_api_strict
    assert comm.backend_for(np.ones(2)) == "mpi"
    assert comm.backend_for(array_api_strict.ones(2)) == "host"


def test_scalars_objects_and_control(comm):
    assert comm.allreduce(2) == 2 and comm.allreduce(3.0, "mean") == 3.0
    assert comm.bcast({"a": 1}) == {"a": 1}
    assert comm.bcast(np.ones(2)).tolist() == [1.0, 1.0]
    assert comm.allgather(5) == [5]
    comm.barrier()
    assert (comm.rank, comm.size, comm.local_rank, comm.local_size) == (0, 1, 0, 1)
    assert "size=1" in repr(comm)


def test_bad_arguments_are_refused_before_communicating(comm):
    with pytest.raises(ValueError, match="op must be one of"):
        comm.allreduce(np.ones(2), "prod")
    with pytest.raises(TypeError, match="floating-point"):
        comm.allreduce(np.ones(2, dtype=np.int64), "mean")
    with pytest.raises(ValueError, match="root must be a rank from 0 to 0, got 1"):
        comm.bcast(np.ones(2), root=1)
    for bad in (True, 0.0, -1):
        with pytest.raises(ValueError, match="root must be a rank from 0 to 0"):
            comm.bcast_arrays([np.ones(2)], root=bad)
    assert comm.bcast(np.ones(2), root=np.int64(0)).tolist() == [1.0, 1.0]  # NumPy ints too
    from npdeq.distributed import Communicator, create_communicator
    from mpi4py import MPI
    with pytest.raises(ValueError, match="backend must be"):
        create_communicator(MPI.COMM_SELF, backend="gloo")
    with pytest.raises(TypeError, match="mpi4py communicator"):
        Communicator(object())


def test_device_backend_probe_without_a_gpu(comm):
    if environment.nccl_available():
        pytest.skip("a GPU with NCCL is present")
    from mpi4py import MPI
    from npdeq.distributed import create_communicator
    assert comm.device_backend in ("cuda_aware_mpi", "host")
    forced = create_communicator(MPI.COMM_SELF, backend="nccl")
    with pytest.raises(RuntimeError, match="needs CuPy with NCCL"):
        forced.device_backend
    with pytest.raises(ValueError, match="backend must be"):
        environment.device_backend("gloo")


def test_environment_probes(monkeypatch):
    assert environment.mpi_available()
    assert environment.mpi_library_version()
    for name in environment._SIZE_VARIABLES + environment._RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert environment.launcher_size() is None and environment.launcher_rank() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "3")
    assert environment.launcher_size() == 4 and environment.launcher_rank() == 3


def test_importing_the_package_starts_no_mpi():
    code = ("import sys, npdeq, npdeq.distributed; "
            "print('mpi4py' in sys.modules, 'cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ})
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.gpu
def test_cupy_arrays_through_each_device_transport():
    """CuPy buffers through NCCL (or the forced transports) with one rank."""
    if not backend.cupy_available():
        pytest.skip("CuPy with a CUDA GPU is not available")
    import cupy
    from mpi4py import MPI
    from npdeq.distributed import create_communicator
    names = ["host"] + (["nccl"] if environment.nccl_available() else []) + \
        (["cuda_aware_mpi"] if environment.cuda_aware_mpi() else [])
    for name in names:
        comm = create_communicator(MPI.COMM_SELF, backend=name)
        arrays = [cupy.arange(4, dtype=cupy.float32), cupy.ones((2, 2)),
                  cupy.asarray([1 + 2j])]
        out = comm.allreduce_arrays(arrays, "mean")
        assert comm.backend_for(arrays[0]) == name
        for a, b in zip(arrays, out):
            assert isinstance(b, cupy.ndarray) and b.dtype == a.dtype and b.shape == a.shape
            assert bool((a == b).all())
        assert comm.bcast(cupy.ones(3)).sum().item() == 3.0
