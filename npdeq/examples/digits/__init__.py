"""``npdeq demo``: train a DEQ classifier on scikit-learn's 8x8 digits, end to end.

Defaults: an MLP-DEQ with weight norm, Anderson forward solver, IFT backward (implicit
gradients), AdamW with a cosine schedule. ``--model conv`` trains a small convolutional
DEQ, ``--model multiscale`` a multi-scale DEQ (:mod:`npdeq.models`); ``--grad phantom --k 5
--tau 0.8`` uses PhantomGrad instead of IFT; ``--device gpu`` runs on CuPy. Prints a
progress bar per epoch and a final table, and writes ``metrics.json``, ``training.png`` and
the trained weights ``model.npz`` to ``--out``. Bad options exit with a one-line message and status 2.

Needs the ``examples`` extra (scikit-learn, tqdm, matplotlib). May import anything.
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


class _Parser(argparse.ArgumentParser):
    """An argument parser whose error for an unknown option lists the valid ones."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments"):
            options = sorted(o for action in self._actions for o in action.option_strings
                             if o.startswith("--"))
            message += f" (valid options: {', '.join(options)})"
        super().error(message)


def parser() -> argparse.ArgumentParser:
    """The demo's options."""
    p = _Parser(
        prog="npdeq demo",
        description="Train a DEQ classifier on scikit-learn's 8x8 digits (no download).")
    p.add_argument("--model", choices=MODEL_NAMES, default="mlp",
                   help="mlp (default), conv or multiscale")
    p.add_argument("--grad", choices=("ift", "phantom"), default="ift",
                   help="backward: implicit differentiation (default) or PhantomGrad")
    p.add_argument("--k", type=int, default=5, help="PhantomGrad steps (with --grad phantom)")
    p.add_argument("--tau", type=float, default=0.8, help="PhantomGrad damping")
    p.add_argument("--f-solver", default="anderson", help="forward solver (default anderson)")
    p.add_argument("--norm", choices=("weight_norm", "spectral_norm", "none"),
                   default="weight_norm", help="normalisation of the DEQ's weights")
    p.add_argument("--jac-reg", type=float, default=None, metavar="WEIGHT",
                   help="Jacobian regularisation weight (default 0, and 1.0 for --model conv): "
                        "adds WEIGHT * ||df/dz||_F^2 / numel at z* to the loss")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="cpu (NumPy) or gpu (CuPy)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None,
                   help="use only this many training images (quick runs)")
    p.add_argument("--float32", action="store_true", help="train in float32 (default float64)")
    p.add_argument("--out", default="npdeq-demo", help="directory for metrics.json, training.png and model.npz")
    p.add_argument("--no-progress", action="store_true", help="one line per epoch, no bars")
    return p


def deq_config(args: argparse.Namespace) -> dict[str, Any]:
    """The DEQ core settings for the chosen gradient."""
    config: dict[str, Any] = dict(core="indexing", f_solver=args.f_solver, f_max_iter=30,
                                  f_tol=1e-4, b_solver="anderson", b_max_iter=30, b_tol=1e-5)
    jac_reg = args.jac_reg if args.jac_reg is not None else (1.0 if args.model == "conv" else 0.0)
    if jac_reg > 0:
        config.update(jac_loss_weight=jac_reg, jac_loss_freq=1.0)
    if args.grad == "ift":
        config.update(ift=True)
    else:
        config.update(ift=False, grad=args.k, tau=args.tau)
    return config


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("epochs", "batch_size", "k"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.train_size is not None and args.train_size < 10:
        p.error(f"--train-size must be >= 10, got {args.train_size}")
    if not 0 < args.tau <= 1:
        p.error(f"--tau must be in (0, 1], got {args.tau}")
    if args.jac_reg is not None and not args.jac_reg >= 0:
        p.error(f"--jac-reg must be >= 0, got {args.jac_reg}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    from npdeq.solver import registered_solvers
    if args.f_solver not in registered_solvers():
        p.error(f"unknown --f-solver {args.f_solver!r}; choose from "
                f"{', '.join(registered_solvers())}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, train and report; return the metrics (also written to ``args.out``)."""
    import npdeq
    from npdeq import backend
    from npdeq.examples.digits import data, report, training
    from npdeq.examples.digits.models import build_model

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
    print(f"npdeq demo: {args.model} DEQ, {args.f_solver} forward, {args.grad} backward, "
          f"{len(digits.y_train)} training / {len(digits.y_test)} test images, "
          f"{sum(p.size for p in model.parameters())} parameters, {args.device}")
    settings = training.Settings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 seed=args.seed, progress=not args.no_progress)
    start = time.perf_counter()
    history = training.train(model, digits, settings, xp=xp, device=device)
    metrics = report.summary(history, {k: v for k, v in vars(args).items()})
    metrics["wall_seconds"] = time.perf_counter() - start
    report.table(metrics)
    os.makedirs(args.out, exist_ok=True)
    report.write_json(metrics, os.path.join(args.out, "metrics.json"))
    # The trained weights, for npdeq.nn.load(path, into=a model built with the same options).
    npdeq.nn.save(model, os.path.join(args.out, "model.npz"))
    figure = os.path.join(args.out, "training.png")
    if report.write_figure(history, figure, title=f"npdeq demo: {args.model} DEQ on digits"):
        print(f"wrote {os.path.join(args.out, 'metrics.json')} and {figure}")
    else:
        print(f"wrote {os.path.join(args.out, 'metrics.json')} (install matplotlib for the figure)")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo with command-line arguments ``argv``; return the exit status.

    Example:
        >>> main(["--epochs", "1", "--train-size", "100", "--no-progress"])  # doctest: +SKIP
        0
    """
    p = parser()
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    _check(p, args)
    if args.device == "gpu":
        from npdeq import backend
        if not backend.cupy_available():
            print("npdeq demo: --device gpu needs CuPy and a CUDA GPU, and none was found "
                  "(pip install \"npdeq[cuda12]\" on a machine with a GPU)", file=sys.stderr)
            return 2
    try:
        import sklearn  # noqa: F401  (a one-line message instead of a traceback)
    except ImportError:
        print("npdeq demo: needs scikit-learn; install the examples extra: "
              "pip install -e \".[examples]\"", file=sys.stderr)
        return 2
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
