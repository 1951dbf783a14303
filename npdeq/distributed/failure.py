"""A failing rank must not leave the others waiting forever in their next collective
(ChainerMN's best-known pitfall): :func:`abort_on_exception` and :func:`install_excepthook`
print which rank failed and why, then end every rank with ``MPI_Abort``.

With one process there is nothing to hang: the exception propagates as usual.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from typing import Any, Callable, Iterator

__all__ = ["abort_on_exception", "install_excepthook", "failure_message"]


def failure_message(rank: int, size: int, exc: BaseException) -> str:
    """The line printed before aborting.

    Example:
        >>> print(failure_message(1, 2, ValueError("bad batch")))
        npdeq.distributed: rank 1 of 2 failed: ValueError: bad batch; aborting all 2 ranks
        (MPI_Abort)
    """
    return (f"npdeq.distributed: rank {rank} of {size} failed: {type(exc).__name__}: {exc}; "
            f"aborting all {size} ranks (MPI_Abort)")


# How long to let the launcher forward the message before MPI_Abort kills the processes
# (mpiexec drops output still in flight when it tears the job down).
FORWARD_SECONDS = 0.5


def _abort(comm: Any, exc: BaseException, code: int) -> None:
    line = failure_message(comm.rank, comm.size, exc)
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # One write, the line first: whatever part reaches the terminal names the rank.
    sys.stdout.flush()
    sys.stderr.write(f"{line}\n{trace}{line}\n")
    sys.stderr.flush()
    if comm.size > 1:
        time.sleep(FORWARD_SECONDS)
    comm.abort(code)


@contextlib.contextmanager
def abort_on_exception(comm: Any, code: int = 1) -> Iterator[Any]:
    """Run a block; if it raises on some rank (an exception, or a ``SystemExit`` with a
    nonzero status), print the traceback and the failing rank, then abort every rank.

    Args:
        comm: the :class:`~npdeq.distributed.Communicator` (its ``rank``, ``size``, ``abort``).
        code: the exit status of the aborted job.

    Example:
        >>> from mpi4py import MPI
        >>> from npdeq.distributed import create_communicator
        >>> comm = create_communicator(MPI.COMM_SELF)
        >>> with abort_on_exception(comm):
        ...     total = comm.allreduce(1)
        >>> total
        1
    """
    try:
        yield comm
    except SystemExit as exc:
        if comm.size > 1 and exc.code not in (None, 0):
            _abort(comm, exc, exc.code if isinstance(exc.code, int) else code)
        raise
    except BaseException as exc:  # KeyboardInterrupt too: the other ranks would still wait
        if comm.size > 1:
            _abort(comm, exc, code)
        raise


def install_excepthook(comm: Any, code: int = 1) -> Callable[[], None]:
    """Make an uncaught exception anywhere in this process abort every rank (with
    :func:`failure_message` on stderr); return a function that restores the previous hook.

    Example:
        >>> from mpi4py import MPI
        >>> from npdeq.distributed import create_communicator
        >>> restore = install_excepthook(create_communicator(MPI.COMM_SELF)); restore()
    """
    previous = sys.excepthook

    def hook(kind: type, exc: BaseException, tb: Any) -> None:
        if comm.size > 1:
            _abort(comm, exc.with_traceback(tb), code)
        previous(kind, exc, tb)

    sys.excepthook = hook

    def restore() -> None:
        sys.excepthook = previous

    return restore
