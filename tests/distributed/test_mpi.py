"""Multi-process checks under ``mpiexec -n 2`` (few launches: each costs a second or more).

The checks themselves live in ``mpi_checks.py`` (equivalence with one process for IFT and
PhantomGrad with weight norm, dropout masks, mixed-dtype allreduce, missing gradients,
statistics and evaluation sums, buffer and optimizer-state broadcast, mismatched models)
and ``mpi_failure.py`` (a rank that raises ends the job).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("mpi4py", reason="the mpi extra (mpi4py) is not installed")

HERE = pathlib.Path(__file__).resolve().parent
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
if MPIEXEC is None:
    pytest.skip("no mpiexec found (pip install \"npdeq[mpi]\")", allow_module_level=True)


def mpirun(args, timeout=60):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.run([MPIEXEC, "-n", "2", sys.executable, *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=HERE.parents[1])


def test_two_ranks_match_one_process_and_reduce_correctly():
    result = mpirun([str(HERE / "mpi_checks.py")])
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("allreduce", "missing gradients", "statistics", "broadcast buffers",
                 "mismatch", "equivalence ift", "equivalence phantom", "dropout", "ALL"):
        assert f"ok {name}\n" in result.stdout, result.stdout + result.stderr


def test_a_failing_rank_aborts_the_job_with_its_rank_named():
    result = mpirun([str(HERE / "mpi_failure.py")], timeout=30)
    assert result.returncode != 0
    assert "rank 1 of 2 failed: ValueError: a bad batch on purpose" in result.stderr
    assert "was not aborted" not in result.stdout
