"""Fitting one reaction model to its steady states at many sites, on Dask.

Each site i has its own supply rates s_i of three species and reaches a steady state c_i of

    dc/dt = s_i + A h(c) - k * c,    h(c) = c^2 / (1 + c^2)    (elementwise),

(linear decay k, cross-activation A >= 0 through a saturating Hill term), i.e. the fixed
point c = (s_i + A h(c)) / k, a contraction when 0.65 ||A|| < min(k). The rates k and the
interaction matrix A are shared by all sites and unknown; the steady states are observed
with noise at every site. The sites' data are Dask arrays chunked along the site axis, so
the fit scales to millions of sites on a cluster: the loss (the mean squared error over all
sites) and its IFT gradient come from :func:`npdeq.dask.value_and_grad`, each chunk's
steady states solved and differentiated on its worker, and SciPy's L-BFGS-B takes the steps.
The fitted model's steady states and their convergence flags come from
:func:`npdeq.dask.fixed_point`.

Run ``npdeq example dask-sites [--sites 20000] [--chunk 2000] [--steps 30]
[--scheduler threads|cluster]`` (``--help`` for the options). Needs the dask extra and
SciPy.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from typing import Any, Sequence

import numpy as np

import npdeq
from npdeq.autodiff import Tensor
from npdeq.backend import Array
from npdeq.backend.checks import check_int, check_real
from npdeq.examples import options

__all__ = ["main", "run", "steady_state_map", "TRUE_LOG_K", "TRUE_A"]

TRUE_LOG_K = np.log([1.0, 1.5, 2.0])
TRUE_A = np.array([[0.0, 0.4, 0.1], [0.3, 0.0, 0.5], [0.2, 0.2, 0.0]])
SOLVE = {"tol": 1e-10, "max_iter": 200, "m": 5}
BACKWARD = {"tol": 1e-10, "max_iter": 200}


def steady_state_map(c: Tensor, s: Array, log_k: Tensor, A: Tensor) -> Tensor:
    """One sweep ``c -> (s + A h(c)) / k`` for ``(B, 3)`` states ``c`` and supplies ``s``."""
    c2 = c * c
    return (s + (c2 / (1.0 + c2)) @ npdeq.transpose(A)) / npdeq.exp(log_k)


def site_loss(params: Sequence[Tensor], s: Array, y: Array) -> Tensor:
    """The summed squared error of one chunk of sites (what each Dask task computes)."""
    log_k, A = params
    c, _ = npdeq.fixed_point(lambda c: steady_state_map(c, s, log_k, A), s * 0.0,
                             solver_kwargs=SOLVE, b_solver_kwargs=BACKWARD)
    return ((c - y) ** 2).sum()


def _observations(sites: int, chunk: int, noise: float, seed: int) -> tuple[Any, Any]:
    import dask.array as da

    import npdeq.dask

    rng = np.random.default_rng(seed)
    s = da.from_array(rng.uniform(0.2, 2.0, (sites, 3)), chunks=(chunk, 3))
    c, _ = npdeq.dask.fixed_point(
        lambda c, s, log_k=None, A=None: steady_state_map(c, s, log_k, A), da.zeros_like(s),
        s, log_k=npdeq.tensor(TRUE_LOG_K), A=npdeq.tensor(TRUE_A), solver_kwargs=SOLVE)
    noise_field = da.from_array(rng.normal(0.0, noise, (sites, 3)), chunks=(chunk, 3))
    return s, (c + noise_field).persist()  # computed once, kept for every evaluation


def run(sites: int = 20000, chunk: int = 2000, steps: int = 30, noise: float = 0.01,
        seed: int = 0, log: Any = print) -> dict:
    """Simulate noisy observations at ``sites`` sites and fit ``log_k`` and ``A`` to them.

    Args:
        sites: number of sites (independent steady-state problems).
        chunk: sites per Dask chunk (per task).
        steps: L-BFGS-B iterations at most.
        noise: standard deviation of the observation noise.
        seed: seed of the supplies and the noise.
        log: where progress lines go.

    Returns:
        A dict: ``log_k``, ``A`` (fitted), ``losses`` (one per evaluation), ``converged``
        (fraction of sites whose fitted steady state converged), ``seconds``.

    Raises:
        ValueError: ``sites``, ``chunk`` or ``steps`` not an int >= 1, ``seed`` not an
            int >= 0, or ``noise`` not a finite number >= 0 (before any work).
    """
    sites, chunk, steps = (check_int(name, value, 1) for name, value in
                           (("sites", sites), ("chunk", chunk), ("steps", steps)))
    seed, noise = check_int("seed", seed, 0), check_real("noise", noise, 0)
    import dask
    import dask.array as da
    from scipy.optimize import minimize

    import npdeq.dask

    s, y = _observations(sites, chunk, noise, seed)
    losses = []

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = [theta[:3].copy(), theta[3:].reshape(3, 3).copy()]
        value, grads = dask.compute(*npdeq.dask.value_and_grad(site_loss, params, s, y,
                                                               reduction="mean"))
        losses.append(float(value))
        return float(value), np.concatenate([g.ravel() for g in grads])

    theta0 = np.concatenate([np.zeros(3), np.zeros(9)])  # k = 1, no interactions
    bounds = [(-2.0, 2.0)] * 3 + [(0.0, 0.6)] * 9  # A >= 0 and small keeps the map contractive
    start = time.perf_counter()
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": steps})
    seconds = time.perf_counter() - start
    log_k, A = result.x[:3], result.x[3:].reshape(3, 3)
    _, info = npdeq.dask.fixed_point(
        lambda c, s, log_k=None, A=None: steady_state_map(c, s, log_k, A), da.zeros_like(s),
        s, log_k=npdeq.tensor(log_k), A=npdeq.tensor(A), solver_kwargs=SOLVE)
    converged = float(info["converged_fraction"].compute())
    log(f"{sites} sites in chunks of {chunk}: {len(losses)} loss+gradient evaluations in "
        f"{seconds:.1f} s; loss {losses[0]:.4g} -> {losses[-1]:.4g} (noise floor "
        f"{3 * noise ** 2:.2g})")
    log(f"k fitted {np.round(np.exp(log_k), 3).tolist()}, true "
        f"{np.round(np.exp(TRUE_LOG_K), 3).tolist()}; largest error in A "
        f"{np.abs(A - TRUE_A).max():.3g}; converged sites {converged:.3f}")
    return {"log_k": log_k, "A": A, "losses": losses, "converged": converged,
            "seconds": seconds}


def parser() -> argparse.ArgumentParser:
    """The example's options, each checked by its type (one line and status 2 when bad)."""
    p = options.Parser(prog="npdeq example dask-sites",
                       description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=options.POSITIVE_INT, default=20000,
                   help="number of sites, >= 1")
    p.add_argument("--chunk", type=options.POSITIVE_INT, default=2000,
                   help="sites per chunk, >= 1")
    p.add_argument("--steps", type=options.POSITIVE_INT, default=30,
                   help="L-BFGS-B iterations, >= 1")
    options.add_noise_and_seed(p, "observation noise", "the sites and the noise")
    p.add_argument("--scheduler", choices=("threads", "cluster"), default="threads",
                   help="Dask's threaded scheduler, or a LocalCluster of 2 worker processes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``npdeq example dask-sites``); see :func:`run`.

    Every option is checked before any work starts: a bad one exits with one line on stderr
    and status 2, as does a missing dask extra or SciPy.
    """
    p = parser()
    args = p.parse_args(argv)
    for module, extra in (("dask.array", "the dask extra: pip install \"npdeq[dask]\""),
                          ("scipy", "SciPy: pip install scipy")):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return options.one_line_error(p.prog, f"needs {extra}")
    kwargs = dict(sites=args.sites, chunk=args.chunk, steps=args.steps, noise=args.noise,
                  seed=args.seed)
    if args.scheduler == "threads":
        run(**kwargs)
        return 0
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster):
        run(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
