"""Calibrating a reaction-diffusion model from its observed steady state, with IFT gradients.

A concentration field u on an N x N grid (zero boundary values) obeys

    du/dt = D * lap(u) - k * u + a * u^2 / (1 + u^2) + s(x, y)

(diffusion D, linear decay k, autocatalytic production a with a Hill-type saturation, a
known source s). Solving ``rhs(u) = 0`` for the centre value of every five-point stencil
gives the steady state as the fixed point of a nonlinear Jacobi sweep

    u <- (D * (sum of the 4 neighbours of u) + a * u^2 / (1 + u^2) + s) / (4 D + k),

written in plain npdeq ops and solved with Anderson acceleration. Its Lipschitz constant is
at most ``(4 D + 0.65 a) / (4 D + k)`` (0.65 bounds the slope of the Hill term), so it is a
contraction whenever ``k > 0.65 a``. Two experiments (two source patterns) are observed
with noise; the three parameters are fitted in log space by gradient descent
(BFGS-preconditioned, with a line search), each gradient an implicit (IFT) one through
:func:`npdeq.grad.fixed_point`: no solver iteration is ever back-propagated. The gradient
is checked against finite differences first.

Run ``python -m npdeq.examples.steady_state [--grid 64] [--steps 40] [--device gpu]`` (or
``npdeq example steady-state``; ``--help`` lists the options and their valid values).
``--sensitivities`` adds the forward sensitivities dz*/dp of the fitted steady state and
``--newton-cg`` a Newton-CG fit beside gradient descent, both from second-order derivatives
through the fixed point (:mod:`npdeq.examples.steady_state_analysis`). The figure needs
matplotlib (optional).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

import npdeq
from npdeq import backend
from npdeq.autodiff import Tensor, enable_grad, exp, pad
from npdeq.autodiff import grad as tape_grad
from npdeq.backend import Array
from npdeq.backend.checks import as_count, check_int, check_real
from npdeq.grad import fixed_point
from npdeq.testing import check_fixed_point_grads

__all__ = ["main", "run", "parser", "FitResult", "TRUE_PARAMS", "steady_state_map"]

TRUE_PARAMS = {"D": 1.0, "k": 1.0, "a": 0.6}
INITIAL_GUESS = {"D": 0.5, "k": 1.5, "a": 0.2}
NAMES = ("D", "k", "a")
FORWARD = {"tol": 1e-9, "max_iter": 400, "m": 6, "stop_mode": "abs"}
BACKWARD = {"tol": 1e-9, "max_iter": 400, "m": 6, "stop_mode": "abs"}


@dataclasses.dataclass(slots=True)
class FitResult:
    """The outcome of :func:`run`.

    Attributes:
        true: the parameters that generated the observation.
        initial: the starting guess.
        fitted: the fitted parameters.
        losses: the loss at every gradient step.
        report: the gradient check run before fitting.
        observed: ``(2, N, N)`` noisy observed steady states (NumPy).
        fitted_field: ``(2, N, N)`` steady states of the fitted model (NumPy).
        seconds: wall time of the fit.
        source: ``(2, N, N)`` sources, in the namespace the fit ran in.
    """

    true: dict
    initial: dict
    fitted: dict
    losses: list
    report: Any
    observed: np.ndarray
    fitted_field: np.ndarray
    seconds: float
    source: Array | None = None


def _neighbour_sum(u: Tensor) -> Tensor:
    """Sum of the four neighbours of every cell of a ``(B, N, N)`` field (zero outside)."""
    p = pad(u, ((0, 0), (1, 1), (1, 1)))
    return p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]


def steady_state_map(u: Tensor, log_D: Tensor, log_k: Tensor, log_a: Tensor,
                     source: Array) -> Tensor:
    """One nonlinear Jacobi sweep for the steady state (a contraction when k > 0.65 a).

    Args:
        u: ``(B, N, N)`` field.
        log_D: 0-d log diffusion; log_k: 0-d log decay; log_a: 0-d log production rate.
        source: ``(B, N, N)`` source array.

    Returns:
        ``(B, N, N)``: the field whose every cell balances its neighbours' diffusion,
        decay, production and source.
    """
    D, k, a = exp(log_D), exp(log_k), exp(log_a)
    u2 = u * u
    return (D * _neighbour_sum(u) + a * u2 / (1.0 + u2) + source) / (4.0 * D + k)


def _sources(grid: int, rng: np.random.Generator) -> np.ndarray:
    """Two experiments: Gaussian blobs of random position, width and strength."""
    y, x = np.meshgrid(np.linspace(0, 1, grid), np.linspace(0, 1, grid), indexing="ij")
    out = np.zeros((2, grid, grid))
    for e in range(2):
        for _ in range(4):
            cx, cy = rng.uniform(0.15, 0.85, 2)
            width = rng.uniform(0.03, 0.08)
            out[e] += rng.uniform(1.0, 2.5) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2)
                                                     / (2 * width ** 2))
    return out


def _log_params(values: dict, xp: Any, like: Array) -> dict:
    return {f"log_{n}": xp.asarray(math.log(values[n]), dtype=xp.float64,
                                   device=backend.device(like)) for n in NAMES}


def solve(params: dict, source: Array, z0: Array, grad: Any = "ift",
          backward: dict = BACKWARD) -> tuple[Tensor, dict]:
    """The steady state for log-parameters ``params`` (``log_D``, ``log_k``, ``log_a``) by
    Anderson from ``z0``, differentiable by ``grad`` (IFT by default; ``None``: no gradient)
    with ``backward`` the adjoint solver's settings."""
    return fixed_point(lambda u: steady_state_map(u, **params, source=source), z0,
                       grad=grad, solver_kwargs=FORWARD, b_solver="anderson",
                       b_solver_kwargs=backward)


class Objective:
    """Loss and IFT gradient in log-parameter space, warm-starting every solve from the
    last solution."""

    def __init__(self, source: Array, observed: Array, z0: Array,
                 backward: dict = BACKWARD) -> None:
        self.source, self.observed, self.warm = source, observed, z0
        self.solves, self.backward = 0, backward

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray, dict, Array]:
        xp = backend.array_namespace(self.source)
        dev = backend.device(self.source)
        leaves = [Tensor(xp.asarray(float(t), device=dev), requires_grad=True) for t in theta]
        with enable_grad():
            u, info = solve(dict(zip(("log_D", "log_k", "log_a"), leaves)), self.source,
                             self.warm, backward=self.backward)
            loss = ((u - self.observed) ** 2).mean()
            grads = tape_grad(loss, leaves)
        self.solves += 1
        return (loss.item(), np.array([backend.to_scalar(g.data) for g in grads]), info,
                u.data)


def _bfgs_step(objective: Objective, theta: np.ndarray, loss: float, g: np.ndarray,
               h_inv: np.ndarray) -> tuple:
    """One quasi-Newton step: direction ``-H g`` from the gradients seen so far, length by
    backtracking until the loss decreases enough (Armijo)."""
    direction = -h_inv @ g
    slope = float(g @ direction)
    if slope >= 0:  # H lost positive definiteness to rounding: restart from the gradient
        h_inv, direction, slope = np.eye(len(g)), -g, -float(g @ g)
    t = 1.0
    for _ in range(20):
        trial = theta + t * direction
        new_loss, new_g, info, u = objective(trial)
        if np.isfinite(new_loss) and new_loss <= loss + 1e-4 * t * slope:
            break
        t *= 0.5
    s, y = trial - theta, new_g - g
    sy = float(s @ y)
    if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
        rho = 1.0 / sy
        eye = np.eye(len(g))
        h_inv = (eye - rho * np.outer(s, y)) @ h_inv @ (eye - rho * np.outer(y, s)) \
            + rho * np.outer(s, s)
    return trial, new_loss, new_g, h_inv, info, u


def run(grid: int = 64, steps: int = 40, noise: float = 0.01, seed: int = 0,
        xp: Any = None, log: Any = print) -> FitResult:
    """Generate a noisy observation, check the IFT gradient, and fit D, k and a.

    The fit is gradient descent in log-parameter space preconditioned by BFGS (an inverse
    Hessian estimate built from the IFT gradients alone), with a backtracking line search:
    the problem is ill-conditioned (D and a trade off against k), which plain gradient
    descent crosses only in hundreds of steps.

    Args:
        grid: grid side N (the field is ``(2, N, N)``: two experiments).
        steps: gradient steps.
        noise: observation noise, relative to the largest value of the true field.
        seed: seed of the sources and the noise.
        xp: array namespace (default NumPy; CuPy's runs on the GPU).
        log: where progress lines go (``print`` by default; ``lambda *a: None`` silences).

    Returns:
        A :class:`FitResult`.

    Raises:
        TypeError: ``grid``, ``steps`` or ``seed`` is not an int, ``noise`` not a real number.
        ValueError: ``grid < 4``, ``steps < 0``, ``seed < 0``, or ``noise`` is negative or
            not finite.
    """
    # A value of the wrong type is a TypeError here, one out of range a ValueError.
    counts = []
    for name, value, low in (("grid", grid, 4), ("steps", steps, 0), ("seed", seed, 0)):
        if as_count(value) is None:
            raise TypeError(f"{name} must be an int, got {value!r}")
        counts.append(check_int(name, value, low))
    grid, steps, seed = counts  # as Python ints (a 0-d integer array is read as its value)
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)):
        raise TypeError(f"noise must be a real number, got {noise!r}")
    check_real("noise", noise, 0)
    xp = backend.default_namespace() if xp is None else xp
    rng = np.random.default_rng(seed)
    source = xp.asarray(_sources(grid, rng))
    z0 = xp.zeros(source.shape, dtype=source.dtype, device=backend.device(source))
    u_true, _ = solve(_log_params(TRUE_PARAMS, xp, source), source, z0, grad=None)
    clean = backend.to_numpy(u_true.data)
    observed_np = clean + noise * float(np.max(np.abs(clean))) * rng.standard_normal(clean.shape)
    observed = xp.asarray(observed_np, device=backend.device(source))

    report = check_fixed_point_grads(
        lambda u, **p: steady_state_map(u, **p, source=source), z0,
        _log_params(INITIAL_GUESS, xp, source), solver_kwargs={"m": 6},
        b_solver="anderson", b_solver_kwargs={"m": 6}, seed=seed)
    log("Gradient check at the initial guess (IFT vs finite differences):")
    log(str(report))
    log("")

    tic = time.perf_counter()
    objective = Objective(source, observed, z0)
    theta = np.array([math.log(INITIAL_GUESS[n]) for n in NAMES])
    loss, g, info, objective.warm = objective(theta)
    # A first step of at most 0.5 in log space: the gradient's scale says nothing about it.
    h_inv = np.eye(3) * min(1.0, 0.5 / (float(np.linalg.norm(g)) + 1e-300))
    losses = [loss]
    log(f"{'step':>5}{'loss':>14}{'D':>9}{'k':>9}{'a':>9}{'fwd it':>8}{'bwd it':>8}")
    _log_step(log, 0, loss, theta, info)
    for step in range(1, steps + 1):
        theta, loss, g, h_inv, info, objective.warm = _bfgs_step(objective, theta, loss, g,
                                                                 h_inv)
        losses.append(loss)
        _log_step(log, step, loss, theta, info)
    seconds = time.perf_counter() - tic
    fitted = dict(zip(NAMES, (float(v) for v in np.exp(theta))))
    return FitResult(dict(TRUE_PARAMS), dict(INITIAL_GUESS), fitted, losses, report,
                     observed_np, backend.to_numpy(objective.warm), seconds, source)


def _log_step(log: Any, step: int, loss: float, theta: np.ndarray, info: dict) -> None:
    D, k, a = np.exp(theta)
    backward = info["backward"]
    log(f"{step:>5}{loss:>14.6e}{D:>9.4f}{k:>9.4f}{a:>9.4f}"
        f"{int(np.max(backend.to_numpy(info['nstep']))):>8}"
        f"{int(np.max(backend.to_numpy(backward['nstep']))) if backward else 0:>8}")


def _print_summary(result: FitResult, log: Any = print) -> None:
    log("")
    log(f"{'parameter':<10}{'true':>10}{'initial':>10}{'fitted':>10}{'rel err':>10}")
    for n in NAMES:
        t, f = result.true[n], result.fitted[n]
        log(f"{n:<10}{t:>10.4f}{result.initial[n]:>10.4f}{f:>10.4f}{abs(f - t) / t:>10.2%}")
    log(f"loss {result.losses[0]:.3e} -> {result.losses[-1]:.3e} in {len(result.losses) - 1} "
        f"steps, {result.seconds:.1f} s")
    log("loss curve: " + _sparkline(result.losses))


def _sparkline(values: Sequence[float]) -> str:
    """The loss curve in log scale as one line of block characters."""
    bars = "▁▂▃▄▅▆▇█"
    logs = np.log10(np.maximum(np.asarray(values, dtype=float), 1e-300))
    lo, hi = float(np.min(logs)), float(np.max(logs))
    span = hi - lo if hi > lo else 1.0
    return "".join(bars[int(round((v - lo) / span * (len(bars) - 1)))] for v in logs)


def save_figure(result: FitResult, path: str) -> bool:
    """Save observed vs fitted fields (and their difference) as a PNG.

    Returns:
        ``False`` (with nothing written) when matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 3, figsize=(11, 7), constrained_layout=True)
    for e in range(2):
        panels = [("observed", result.observed[e]), ("fitted steady state",
                                                      result.fitted_field[e]),
                  ("observed - fitted", result.observed[e] - result.fitted_field[e])]
        for ax, (title, field) in zip(axes[e], panels):
            im = ax.imshow(field, cmap="viridis" if "-" not in title else "coolwarm")
            ax.set_title(f"experiment {e + 1}: {title}")
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("reaction-diffusion steady state: " + ", ".join(
        f"{n} {result.true[n]:.3f} -> fitted {result.fitted[n]:.3f}" for n in NAMES))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


GRID_MAX = 2048  # (2, N, N) fields and Anderson's history: a few GB at this size already
DEFAULT_FIGURE = "steady_state.png"


def parser() -> argparse.ArgumentParser:
    """The example's options, each checked as it is parsed (:mod:`npdeq.examples.options`)."""
    from npdeq.examples import options

    p = options.Parser(
        prog="npdeq example steady-state",
        description="Fit diffusion, decay and production rates of a reaction-diffusion "
                    "model to a noisy observed steady state, with IFT gradients.")
    p.add_argument("--grid", type=options.integer(4, GRID_MAX), default=64,
                   help=f"grid side N, in [4, {GRID_MAX}]")
    p.add_argument("--steps", type=options.NON_NEGATIVE_INT, default=40,
                   help="gradient steps, >= 0")
    options.add_noise_and_seed(p, "observation noise relative to the field's maximum",
                               "the sources and the noise")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu runs on NumPy, gpu on CuPy")
    # No default here: argparse would check it even with --no-plot (main checks it then).
    p.add_argument("--out", type=options.output_file(".png"), default=None, metavar="PNG",
                   help=f"PNG path for the figure (default: {DEFAULT_FIGURE})")
    p.add_argument("--no-plot", action="store_true", help="do not save the figure")
    p.add_argument("--sensitivities", action="store_true",
                   help="print dz*/dp of the fitted steady state (forward mode through it)")
    p.add_argument("--newton-cg", action="store_true",
                   help="also fit by Newton-CG (Hessian-vector products through the fixed "
                        "point) and by gradient descent, and compare their iterations")
    p.add_argument("--gd-steps", type=options.NON_NEGATIVE_INT, default=200,
                   help="gradient descent's iteration limit with --newton-cg, >= 0")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m npdeq.examples.steady_state``).

    Every option is checked before any work starts: a bad one exits with one line on stderr
    and status 2.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 when ``--device gpu`` has no CuPy/GPU.
    """
    from npdeq.examples import options

    p = parser()
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.no_plot and args.out is not None:
        p.error("--out has no effect with --no-plot (which saves no figure)")
    if not args.no_plot and args.out is None:
        try:
            args.out = options.output_file(".png")(DEFAULT_FIGURE)
        except argparse.ArgumentTypeError as exc:
            p.error(f"argument --out (default): {exc}")
    if args.device == "gpu" and not backend.cupy_available():
        return options.one_line_error(p.prog, "--device gpu needs CuPy and a CUDA GPU, and "
                                      "none is available")
    xp, _ = backend.resolve_target(args.device)  # the current GPU's namespace, or NumPy
    print(f"npdeq {npdeq.__version__}: steady state of a reaction-diffusion model on a "
          f"{args.grid}x{args.grid} grid ({backend.namespace_name(xp)}), 2 experiments")
    result = run(args.grid, args.steps, args.noise, args.seed, xp)
    _print_summary(result)
    if args.sensitivities or args.newton_cg:
        from npdeq.examples.steady_state_analysis import report
        report(result, args.sensitivities, args.newton_cg, args.gd_steps)
    if not args.no_plot:
        if save_figure(result, args.out):
            print(f"wrote {args.out}")
        else:
            print("matplotlib is not installed: no figure (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
