"""Aborting on a failing rank (played by a fake communicator) and reductions of logging
figures."""

import math
import sys

import numpy as np
import pytest

from npdeq.distributed import (SolverStatistics, abort_on_exception, failure,
                               install_excepthook, reduce_scalars)


@pytest.fixture(autouse=True)
def no_forwarding_pause(monkeypatch):
    monkeypatch.setattr(failure, "FORWARD_SECONDS", 0.0)


def test_an_exception_aborts_every_rank_naming_this_one(fake_comm, capsys):
    comm = fake_comm(rank=1, size=2)
    with pytest.raises(ValueError):
        with abort_on_exception(comm, code=3):
            raise ValueError("boom")
    assert comm.aborted == 3
    err = capsys.readouterr().err
    line = ("npdeq.distributed: rank 1 of 2 failed: ValueError: boom; aborting all 2 ranks "
            "(MPI_Abort)")
    assert err.startswith(line) and err.rstrip().endswith(line) and "Traceback" in err


def test_nonzero_exit_aborts_zero_exit_and_one_rank_do_not(fake_comm):
    comm = fake_comm(rank=0, size=2)
    with pytest.raises(SystemExit):
        with abort_on_exception(comm):
            sys.exit(2)
    assert comm.aborted == 2
    for size, exit_code in ((2, 0), (1, 2)):
        comm = fake_comm(rank=0, size=size)
        with pytest.raises(SystemExit):
            with abort_on_exception(comm):
                sys.exit(exit_code)
        assert comm.aborted is None
    comm = fake_comm(rank=0, size=1)
    with pytest.raises(KeyError):
        with abort_on_exception(comm):
            raise KeyError("x")
    assert comm.aborted is None


def test_excepthook_aborts_and_restores(fake_comm, capsys):
    comm = fake_comm(rank=1, size=4)
    previous = sys.excepthook
    restore = install_excepthook(comm)
    try:
        sys.excepthook(RuntimeError, RuntimeError("late"), None)
    finally:
        restore()
    assert sys.excepthook is previous and comm.aborted == 1
    assert "rank 1 of 4 failed: RuntimeError: late" in capsys.readouterr().err


def test_reduce_scalars(fake_comm):
    others = {1: [{"a": 3, "b": 1.0}] * 4}
    assert reduce_scalars(fake_comm(others=others), {"a": 1, "b": 2.0}) == {"a": 4, "b": 3.0}
    assert reduce_scalars(fake_comm(others=others), {"a": 1, "b": 2.0}, "max") == {"a": 3,
                                                                                   "b": 2.0}
    assert reduce_scalars(fake_comm(others=others), {"a": 1, "b": 2.0}, "mean")["a"] == 2.0
    with pytest.raises(ValueError, match="rank 1 passed keys"):
        reduce_scalars(fake_comm(others={1: [{"c": 1}]}), {"a": 1})
    with pytest.raises(ValueError, match="op must be"):
        reduce_scalars(fake_comm(others=others), {"a": 1}, "prod")


def test_solver_statistics_over_ranks(fake_comm, comm):
    stats = SolverStatistics()
    stats.add({"nstep": np.array([3, 5]), "converged": np.array([True, False]),
               "abs_lowest": np.array([1e-5, 2e-3])})
    out = stats.reduce(comm)
    assert out["forward_iterations"] == 4.0 and out["converged_fraction"] == 0.5
    assert out["largest_residual"] == 2e-3 and math.isnan(out["backward_iterations"])
    other = {"samples": 2.0, "forward": 10.0, "converged": 2.0, "residual": 0.0,
             "backward_samples": 0.0, "backward": 0.0}
    out = stats.reduce(fake_comm(others={1: [other, {"largest": 1.0}]}))
    assert out["forward_iterations"] == 4.5 and out["largest_residual"] == 1.0
    stats.reset()
    assert math.isnan(stats.reduce(comm)["forward_iterations"])
