"""``npdeq demo`` data-parallel: under ``mpiexec -n 2`` rank 0 alone prints and writes, and
the figures cover both ranks; the same path runs in one process with a size-1 communicator;
``npdeq info`` names the MPI library and the CuPy transport."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("mpi4py", reason="the mpi extra (mpi4py) is not installed")
pytest.importorskip("sklearn")

from npdeq import cli  # noqa: E402

TINY = ["--epochs", "1", "--train-size", "120", "--batch-size", "40", "--no-progress"]


def test_info_names_the_mpi_library_and_the_cupy_transport(capsys):
    assert cli.main(["info"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("MPI: mpi4py ") and "CuPy arrays would use " in line, line


def test_the_distributed_path_in_one_process_trains_and_writes(tmp_path, capsys):
    from mpi4py import MPI

    from npdeq.distributed import create_communicator
    from npdeq.examples import digits
    args = digits.parser().parse_args([*TINY, "--out", str(tmp_path)])
    digits._check(digits.parser(), args)
    metrics = digits.run(args, create_communicator(MPI.COMM_SELF))
    out = capsys.readouterr().out
    assert "1 ranks of 40" in out and out.count("epoch 1/1:") == 1
    with open(tmp_path / "metrics.json", encoding="utf-8") as handle:
        assert json.load(handle)["ranks"] == metrics["ranks"] == 1
    assert len(metrics["history"]["largest_residual"]) == 1


def test_two_ranks_print_and_write_once(tmp_path):
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if mpiexec is None:
        pytest.skip("no mpiexec next to this Python (pip install \"npdeq[mpi]\")")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out_dir = tmp_path / "run"
    done = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "npdeq", "demo", *TINY,
                           "--out", str(out_dir)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 ranks of 20" in done.stdout
    assert done.stdout.count("epoch 1/1:") == 1 and done.stdout.count("\nwrote ") == 1
    assert sorted(os.listdir(out_dir)) == ["metrics.json", "model.npz", "training.png"]
    with open(out_dir / "metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)
    assert metrics["ranks"] == 2 and metrics["test_accuracy"] > 0.3
    # a global batch that does not split over the ranks: one line, status 2, no training
    bad = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "npdeq", "demo", *TINY,
                          "--batch-size", "41", "--out", str(out_dir)], capture_output=True,
                         text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "epoch" not in bad.stdout
    assert bad.stderr.count("must be a multiple of the 2 ranks") == 1, bad.stderr
