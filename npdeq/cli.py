"""The ``npdeq`` command line: ``npdeq demo``, ``npdeq info`` and ``npdeq example NAME``.

``npdeq demo`` trains a DEQ classifier on the 8x8 digits (:mod:`npdeq.examples.digits`; its
options follow ``demo``). Every option of every command is checked before any work starts
(:mod:`npdeq.examples.options`): bad input exits with status 2 and one line on stderr
(``npdeq ...: error: ...``), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import sys
from typing import Callable, Sequence

__all__ = ["main", "EXAMPLES"]

# Example name -> module with a ``main(argv) -> int``; imported only when run.
EXAMPLES: dict[str, str] = {
    "steady-state": "npdeq.examples.steady_state",
    "dask-sites": "npdeq.examples.dask_sites",
}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def info(out: Callable[[str], None] = print) -> int:
    """Print versions, the available array backends and whether a GPU is usable.

    Args:
        out: where lines go (default ``print``).

    Returns:
        0.
    """
    from npdeq import __version__, backend

    out(f"npdeq {__version__} on Python {platform.python_version()} ({platform.machine()})")
    for dist in ("numpy", "array-api-compat", "array-api-strict", "autograd", "scipy",
                 "hypothesis", "scikit-learn", "tqdm", "matplotlib"):
        out(f"  {dist:<17} {_version(dist)}")
    cupy = [_version(d) for d in ("cupy-cuda12x", "cupy-cuda13x", "cupy")]
    cupy_version = next((v for v in cupy if v != "not installed"), "not installed")
    out(f"  {'cupy':<17} {cupy_version}")
    gpu = backend.cupy_available()
    out(f"backends: numpy{', cupy' if gpu else ''}; array_api_strict for testing")
    out(f"GPU: {'available (CuPy sees a CUDA device)' if gpu else 'not available'}")
    out(_mpi_line(gpu))
    return 0


def _mpi_line(gpu: bool) -> str:
    """Whether data-parallel training over MPI works here (:mod:`npdeq.distributed`): the
    MPI library and the transport CuPy arrays would take."""
    from npdeq import distributed

    if not distributed.mpi_available():
        return "MPI: not available (pip install \"npdeq[mpi]\" for mpiexec -n N npdeq demo)"
    try:
        library = distributed.mpi_library_version()
    except Exception as exc:  # an mpi4py whose MPI library cannot load or start
        return f"MPI: mpi4py {_version('mpi4py')} installed, but MPI does not start ({exc})"
    names = {"nccl": "NCCL", "cuda_aware_mpi": "CUDA-aware MPI",
             "host": "host staging through MPI"}
    cupy = names[distributed.device_backend()] + ("" if gpu else " (no GPU here)")
    return f"MPI: mpi4py {_version('mpi4py')}, {library}; CuPy arrays would use {cupy}"


def _parser() -> argparse.ArgumentParser:
    from npdeq.examples.options import Parser

    parser = Parser(prog="npdeq", description="Deep Equilibrium models on NumPy and CuPy.",
                    epilog="'npdeq COMMAND --help' gives a command's options, their valid "
                           "values and their defaults.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="train a DEQ classifier on the 8x8 digits "
                        "(npdeq demo --help for its options)", add_help=False)
    commands.add_parser("info", help="versions, array backends, GPU presence, MPI",
                        description="Print the versions of npdeq and its dependencies, the "
                                    "array backends, whether CuPy sees a GPU, and the MPI "
                                    "library and transport for distributed training.")
    example = commands.add_parser(
        "example", help="run an example (its own options follow its name)",
        description="Run one of npdeq's examples; options after the name go to the example.")
    example.add_argument("name", choices=sorted(EXAMPLES), metavar="NAME",
                         help=f"one of: {', '.join(sorted(EXAMPLES))}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``npdeq`` command.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on bad input (a one-line message on stderr; bad
        options make argparse exit with ``SystemExit(2)`` instead of returning).

    Example:
        >>> main(["info"])  # doctest: +SKIP
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv[:1] == ["demo"]:
        from npdeq.examples.digits import main as demo
        return int(demo(argv[1:]) or 0)
    # An example's own options are not npdeq's: split them off after its name.
    example_args: list[str] = []
    if argv[:1] == ["example"] and len(argv) > 1:
        argv, example_args = argv[:2], argv[2:]
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    if args.command == "example":
        module = importlib.import_module(EXAMPLES[args.name])
        return int(module.main(example_args) or 0)
    from npdeq.examples.options import one_line_error

    parser.print_help()
    return one_line_error(parser.prog, "a command is required: demo, info or example NAME")


if __name__ == "__main__":
    sys.exit(main())
