"""Fixtures for npdeq.distributed's in-process tests: a size-1 MPI communicator
(``COMM_SELF``) and a fake communicator that plays several ranks' answers."""

from __future__ import annotations

import pytest


class FakeComm:
    """``rank``/``size`` and an ``allgather`` that returns what the other ranks would send.

    ``others`` maps a rank to the object it gathers (by call number, a list per rank); this
    rank's own object is inserted at its position. ``abort`` records its code.
    """

    def __init__(self, rank=0, size=2, others=None):
        self.rank, self.size = rank, size
        self.others = others or {}
        self.calls = 0
        self.aborted = None

    def allgather(self, obj):
        out = []
        for r in range(self.size):
            out.append(obj if r == self.rank else self.others[r][self.calls])
        self.calls += 1
        return out

    def allreduce_arrays(self, arrays, op="mean"):
        raise AssertionError("the fake communicator moves no arrays")

    bcast_arrays = allreduce_arrays

    def abort(self, code=1):
        self.aborted = code


@pytest.fixture
def fake_comm():
    return FakeComm


@pytest.fixture
def comm():
    mpi4py = pytest.importorskip("mpi4py", reason="the mpi extra (mpi4py) is not installed")
    del mpi4py
    from mpi4py import MPI

    from npdeq.distributed import create_communicator
    return create_communicator(MPI.COMM_SELF)
