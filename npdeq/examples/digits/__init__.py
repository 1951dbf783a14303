"""``npdeq demo``: train a DEQ classifier on scikit-learn's 8x8 digits, end to end.

Defaults: an MLP-DEQ with weight norm, Anderson forward solver, IFT backward (implicit
gradients), AdamW with a cosine schedule. ``--model conv`` trains a small convolutional
DEQ, ``--model multiscale`` a multi-scale DEQ (:mod:`npdeq.models`); ``--grad phantom --k 5
--tau 0.8`` uses PhantomGrad instead of IFT; ``--device gpu`` runs on CuPy. Prints one line
per epoch (and, on a terminal, a progress bar during it) and a final table, and writes
``metrics.json``, ``training.png`` and the trained weights ``model.npz`` to ``--out``; its
last line names every file written. Every option is checked before any work starts:
a bad one exits with one line on stderr and status 2, never a traceback.

``mpiexec -n N npdeq demo`` (N > 1, found from the launcher's environment) trains
data-parallel over MPI
(:mod:`npdeq.distributed`): the same global ``--batch-size``, each rank ``batch-size / N``
of every batch, gradients averaged before each step; rank 0 alone prints and writes files,
and an error on any rank ends every rank with a message naming it. Needs the ``mpi`` extra.

Needs scikit-learn; tqdm (bars) and matplotlib (the figure) are optional (all three are the
``examples`` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

__all__ = ["main", "run", "deq_config", "parser"]

DEVICES = ("cpu", "gpu")
MODEL_NAMES = ("mlp", "conv", "multiscale")
OUTPUT_FILES = ("metrics.json", "training.png", "model.npz")
PHANTOM_DEFAULTS = {"k": 5, "tau": 0.8}


def _forward_solvers() -> list[str]:
    """The registered solvers that solve a nonlinear fixed point ('gmres' is for affine maps
    only, and every demo model is nonlinear)."""
    from npdeq.solver import registered_solvers
    return [name for name in registered_solvers() if name != "gmres"]


def parser() -> argparse.ArgumentParser:
    """The demo's options, each checked as it is parsed (:mod:`npdeq.examples.options`)."""
    from npdeq.examples import options
    from npdeq.examples.digits.data import TRAIN_IMAGES

    p = options.Parser(
        prog="npdeq demo",
        description="Train a DEQ classifier on scikit-learn's 8x8 digits (no download). "
                    "Prints one line per epoch (a progress bar too on a terminal) and a "
                    "final table; writes metrics.json, training.png (needs matplotlib) and "
                    "the trained weights model.npz to --out.")
    p.add_argument("--model", choices=MODEL_NAMES, default="mlp",
                   help="the classifier: an MLP-DEQ, a small convolutional DEQ or a "
                        "multi-scale DEQ")
    p.add_argument("--grad", choices=("ift", "phantom"), default="ift",
                   help="backward pass: implicit differentiation or PhantomGrad")
    p.add_argument("--k", type=options.POSITIVE_INT, default=None,
                   help=f"PhantomGrad steps, >= 1, only with --grad phantom (default: "
                        f"{PHANTOM_DEFAULTS['k']})")
    p.add_argument("--tau", type=options.real(0, 1, low_open=True), default=None,
                   help=f"PhantomGrad damping in (0, 1], only with --grad phantom (default: "
                        f"{PHANTOM_DEFAULTS['tau']})")
    p.add_argument("--f-solver", choices=_forward_solvers(), default="anderson",
                   metavar="SOLVER", help="forward solver")
    p.add_argument("--norm", choices=("weight_norm", "spectral_norm", "none"),
                   default="weight_norm", help="normalisation of the DEQ's weights")
    p.add_argument("--jac-reg", type=options.real(0), default=None, metavar="WEIGHT",
                   help="Jacobian regularisation weight >= 0: adds WEIGHT * ||df/dz||_F^2 / "
                        "numel at z* to the loss (default: 1.0 for --model conv, else 0)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="cpu runs on NumPy, gpu on CuPy")
    p.add_argument("--epochs", type=options.POSITIVE_INT, default=20, help="epochs, >= 1")
    p.add_argument("--batch-size", type=options.POSITIVE_INT, default=64,
                   help="training batch size, >= 1")
    p.add_argument("--lr", type=options.real(0, low_open=True), default=3e-3,
                   help="AdamW's learning rate, > 0, then a cosine schedule")
    options.add_seed(p, "the split, the initialisation and the batches")
    p.add_argument("--train-size", type=options.integer(10, TRAIN_IMAGES), default=None,
                   help=f"use only this many training images, in [10, {TRAIN_IMAGES}] "
                        f"(default: all {TRAIN_IMAGES})")
    p.add_argument("--float32", action="store_true", help="train in float32, not float64")
    p.add_argument("--out", type=_output_dir(options), default="npdeq-demo",
                   metavar="DIR",
                   help=f"directory for {', '.join(OUTPUT_FILES)}, created if needed")
    p.add_argument("--distributed", action="store_true",
                   help="train data-parallel over MPI (needs mpi4py: pip install "
                        "\"npdeq[mpi]\"); on by itself when mpiexec starts more than one "
                        "process")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars, even on a terminal; bars are never drawn into a "
                        "file, a pipe or CI's log, and the line per epoch is always printed")
    return p


def _output_dir(options: Any) -> Any:
    """``--out``'s check: probed by writing on rank 0 only, since the ranks of an MPI launch
    would otherwise create and remove the same directory under each other's feet."""
    from npdeq.distributed import launcher_rank

    if launcher_rank() in (None, 0):
        return options.output_dir(OUTPUT_FILES)
    return lambda text: text


def deq_config(args: argparse.Namespace) -> dict[str, Any]:
    """The DEQ core settings for the chosen gradient."""
    config: dict[str, Any] = dict(core="indexing", f_solver=args.f_solver, f_max_iter=30,
                                  f_tol=1e-4)
    jac_reg = args.jac_reg if args.jac_reg is not None else (1.0 if args.model == "conv" else 0.0)
    if jac_reg > 0:
        config.update(jac_loss_weight=jac_reg, jac_loss_freq=1.0)
    if args.grad == "ift":  # the backward solver's settings mean nothing to PhantomGrad
        config.update(ift=True, b_solver="anderson", b_max_iter=30, b_tol=1e-5)
    else:
        config.update(ift=False, grad=args.k, tau=args.tau)
    return config


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What one option alone cannot say: PhantomGrad's settings need ``--grad phantom``."""
    given = [f"--{name}" for name in PHANTOM_DEFAULTS if getattr(args, name) is not None]
    if given and args.grad != "phantom":
        p.error(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only with "
                f"--grad phantom (got --grad {args.grad}, which would ignore "
                f"{'them' if len(given) > 1 else 'it'})")
    for name, default in PHANTOM_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def run(args: argparse.Namespace, comm: Any = None) -> dict[str, Any]:
    """Build, train and report; return the metrics (also written to ``args.out``).

    With a communicator every rank trains its share and rank 0 alone prints and writes.
    """
    import npdeq
    from npdeq import backend
    from npdeq.examples.digits import data, report, training
    from npdeq.examples.digits.models import build_model

    main_rank = comm is None or comm.rank == 0
    say = print if main_rank else (lambda *a, **k: None)
    if comm is not None and args.device == "gpu":
        comm.use_device()  # one GPU per rank of a node: local_rank's
    xp, device = backend.resolve_target("gpu" if args.device == "gpu" else "cpu")
    dtype = np.float32 if args.float32 else np.float64
    digits = data.load(seed=args.seed, train_size=args.train_size, dtype=dtype)
    npdeq.nn.manual_seed(args.seed)
    model = build_model(args.model, deq_config(args), seed=args.seed)
    if args.norm != "none":
        # The head and the input injection are ordinary layers: only the DEQ map is normalised.
        npdeq.norm.apply_norm(model, args.norm, filter_out=["head", "injection"])
    model.to(xp if device is None else device, dtype="float32" if args.float32 else None)
    npdeq.reset_deq(model)
    ranks = "" if comm is None else f", {comm.size} ranks of {args.batch_size // comm.size}"
    say(f"npdeq demo: {args.model} DEQ, {args.f_solver} forward, {args.grad} backward, "
        f"{len(digits.y_train)} training / {len(digits.y_test)} test images, "
        f"{sum(p.size for p in model.parameters())} parameters, {args.device}{ranks}")
    if comm is not None:
        # Random draws after this point (variational-dropout masks) differ between ranks and
        # repeat from run to run.
        from npdeq.distributed import rank_seed
        npdeq.nn.manual_seed(rank_seed(args.seed, comm.rank))
    settings = training.Settings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 seed=args.seed, progress=main_rank and not args.no_progress)
    start = time.perf_counter()
    history = training.train(model, digits, settings, xp=xp, device=device, log=say, comm=comm)
    metrics = report.summary(history, {k: v for k, v in vars(args).items()})
    metrics["wall_seconds"] = time.perf_counter() - start
    if comm is not None:
        metrics["ranks"] = comm.size
    if not main_rank:
        return metrics
    report.table(metrics)
    os.makedirs(args.out, exist_ok=True)
    written = [os.path.join(args.out, "metrics.json")]
    report.write_json(metrics, written[-1])
    figure = os.path.join(args.out, "training.png")
    if report.write_figure(history, figure, title=f"npdeq demo: {args.model} DEQ on digits"):
        written.append(figure)
    # The trained weights, for npdeq.nn.load(path, into=a model built with the same options).
    written.append(os.path.join(args.out, "model.npz"))
    npdeq.nn.save(model, written[-1])
    note = "" if figure in written else " (no training.png: pip install matplotlib)"
    print(f"wrote {', '.join(written)}{note}")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo with command-line arguments ``argv``; return the exit status.

    Example:
        >>> main(["--epochs", "1", "--train-size", "100", "--no-progress"])  # doctest: +SKIP
        0
    """
    from npdeq.examples.options import one_line_error

    p = parser()
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    _check(p, args)
    if args.device == "gpu":
        from npdeq import backend
        if not backend.cupy_available():
            return one_line_error(p.prog, "--device gpu needs CuPy and a CUDA GPU, and none "
                                  "was found (pip install \"npdeq[cuda12]\" on a machine "
                                  "with a GPU)")
    try:
        import sklearn  # noqa: F401  (a one-line message instead of a traceback)
    except ImportError:
        return one_line_error(p.prog, "needs scikit-learn; install the examples extra: "
                              "pip install -e \".[examples]\"")
    from npdeq import distributed

    if not (args.distributed or (distributed.launcher_size() or 1) > 1):
        run(args)
        return 0
    if not distributed.mpi_available():
        return one_line_error(p.prog, "a launch by mpiexec needs mpi4py to train over MPI: "
                              "pip install \"npdeq[mpi]\"")
    comm = distributed.create_communicator()
    if args.batch_size % comm.size:
        # Every rank finds the same: all exit alike, rank 0 alone says why.
        message = (f"--batch-size {args.batch_size} must be a multiple of the {comm.size} "
                   "ranks (each rank takes batch-size / ranks samples per step)")
        return one_line_error(p.prog, message) if comm.rank == 0 else 2
    with distributed.abort_on_exception(comm):
        run(args, comm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
