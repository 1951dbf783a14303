"""What this process can use for collectives, probed without starting anything needless:
whether mpi4py is installed, the MPI library's version, whether it is CUDA-aware, whether
CuPy has NCCL, which transport CuPy arrays get, and whether an MPI launcher started us.

mpi4py and CuPy are imported inside the functions that need them (importing ``mpi4py.MPI``
initialises MPI).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from npdeq import backend

__all__ = ["mpi_available", "mpi_library_version", "cuda_aware_mpi", "nccl_available",
           "device_backend", "check_backend", "launcher_size", "launcher_rank",
           "DEVICE_BACKENDS", "require_mpi"]

# Transports for device (CuPy) buffers, best first; 'auto' picks the first that works.
DEVICE_BACKENDS = ("nccl", "cuda_aware_mpi", "host")

# Variables MPI launchers set in every process they start: MPICH/Hydra and Slurm's PMI,
# Open MPI, PMIx, MVAPICH.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def mpi_available() -> bool:
    """Whether mpi4py is installed (found without importing it, so MPI is not started)."""
    return importlib.util.find_spec("mpi4py") is not None


def require_mpi() -> Any:
    """``mpi4py.MPI``, or an ImportError saying how to install it."""
    if not mpi_available():
        raise ImportError("npdeq.distributed needs mpi4py and an MPI library: "
                          "pip install \"npdeq[mpi]\"")
    return importlib.import_module("mpi4py.MPI")


def mpi_library_version() -> str | None:
    """The first line of the MPI library's version string (``'MPICH Version: 4.2.1'``), or
    ``None`` without mpi4py."""
    if not mpi_available():
        return None
    MPI = require_mpi()
    text = MPI.Get_library_version().strip()
    return " ".join(text.splitlines()[0].split()) if text else "unknown"


def cuda_aware_mpi() -> bool:
    """Whether the MPI library says it can read and write CUDA device memory
    (``MPIX_Query_cuda_support`` through mpi4py); ``False`` when it cannot say."""
    if not mpi_available():
        return False
    MPI = require_mpi()
    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:  # MPI libraries without the extension raise NotImplementedError
        return False


def nccl_available() -> bool:
    """Whether CuPy is installed with its NCCL bindings and sees a GPU."""
    if not backend.cupy_available():
        return False
    try:
        nccl = importlib.import_module("cupy.cuda.nccl")
    except Exception:  # no NCCL in this CuPy build: unavailable
        return False
    return bool(getattr(nccl, "available", True))


def check_backend(requested: Any) -> str:
    """``requested`` if it is ``'auto'`` or one of :data:`DEVICE_BACKENDS`.

    Raises:
        ValueError: anything else, naming the valid values.
    """
    if requested not in ("auto", *DEVICE_BACKENDS):
        raise ValueError(f"backend must be 'auto' or one of {', '.join(DEVICE_BACKENDS)}, "
                         f"got {requested!r}")
    return requested


def device_backend(requested: str = "auto") -> str:
    """The transport CuPy arrays get: ``'nccl'``, ``'cuda_aware_mpi'`` or ``'host'`` (copied to
    the host, reduced by MPI, copied back: slower, always works).

    Args:
        requested: ``'auto'`` (the first that works, in that order) or one of them.

    Raises:
        ValueError: an unknown name.
        RuntimeError: a forced transport this process cannot use.
    """
    if check_backend(requested) == "auto":
        if nccl_available():
            return "nccl"
        return "cuda_aware_mpi" if cuda_aware_mpi() else "host"
    if requested == "nccl" and not nccl_available():
        raise RuntimeError("backend='nccl' needs CuPy with NCCL and a GPU, and none was found")
    if requested == "cuda_aware_mpi" and not cuda_aware_mpi():
        raise RuntimeError("backend='cuda_aware_mpi': this MPI library does not report CUDA "
                           "support (MPIX_Query_cuda_support)")
    return requested


def _first_int(names: tuple[str, ...]) -> int | None:
    for name in names:
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            continue
    return None


def launcher_size() -> int | None:
    """The number of processes an MPI launcher (mpiexec, srun) started, read from the
    environment without starting MPI; ``None`` when no launcher started this process."""
    return _first_int(_SIZE_VARIABLES)


def launcher_rank() -> int | None:
    """This process's rank as the launcher's environment gives it, or ``None``."""
    return _first_int(_RANK_VARIABLES)
