"""Forward solvers side by side: npdeq (fixed-point iteration, Anderson, Broyden,
Newton-Krylov, the ODE steady state), SciPy's ``optimize.anderson`` and TorchDEQ's solvers on
the same data, to the same tolerance.

Run from the repository root:

    python benchmarks/solvers.py [--repeat 5] [--workloads mlp,slow,small] [--tol 1e-4]
                                 [--device cpu|gpu] [--solvers anderson,...]

Workloads (fixed seeds): ``mlp`` f(z) = tanh(z W^T + x U^T + b), d=512, B=256, float32, W at
spectral norm 0.9; ``slow``, the same with spectral norm 0.99 and inputs scaled down by 100
(tanh stays near its linear part, so the contraction stays near 0.99); ``small``, d=8, B=1,
float64. Columns: function evaluations to reach ``tol`` (every sample's absolute residual
``||f(z) - z|| <= tol``; SciPy is given the same per-sample norm), the best wall time of
``--repeat`` solves, the time per evaluation (setup included), the marginal time of one more
evaluation (µs, from two solves of 10 and 30 iterations with an unreachable tolerance, divided
by the difference of their evaluation counts: Newton-Krylov and the ODE solver spend several
evaluations per iteration), the overhead ratio
``solve time / (evaluations x time of one f call)``, and the largest final residual. The
TorchDEQ rows appear when ``torch`` and ``torchdeq`` are importable. With ``--device gpu``
npdeq runs on CuPy and TorchDEQ on CUDA (SciPy has no GPU rows); every timed solve ends with
a device synchronisation.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
import warnings

import numpy as np

MAX_ITER = {"mlp": 200, "slow": 2000, "small": 200}


def make_workload(name: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    d, batch, dtype = (8, 1, np.float64) if name == "small" else (512, 256, np.float32)
    W = rng.standard_normal((d, d))
    W *= (0.99 if name == "slow" else 0.9) / np.linalg.norm(W, 2)
    U = rng.standard_normal((d, d)) / np.sqrt(d)
    b = 0.1 * rng.standard_normal(d)
    x = rng.standard_normal((batch, d)) * (0.01 if name == "slow" else 1.0)
    injection = x @ U.T + b
    return {"W": W.astype(dtype), "injection": injection.astype(dtype),
            "z0": np.zeros((batch, d), dtype), "max_iter": MAX_ITER[name]}


class Counted:
    """``f`` with a call counter: evaluations are counted the same way for every library."""

    def __init__(self, f):
        self.f = f
        self.calls = 0

    def __call__(self, z):
        self.calls += 1
        return self.f(z)


def best_time(fn, repeat: int) -> tuple[float, object]:
    result = fn()  # warm-up, and the result whose statistics are reported
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


# --- npdeq (NumPy or CuPy arrays) and SciPy ----------------------------------------------------

DEVICE = {"name": "cpu"}


def array_module():
    if DEVICE["name"] == "gpu":
        import cupy

        return cupy
    return np


def synchronize():
    if DEVICE["name"] == "gpu":
        import cupy

        cupy.cuda.Device().synchronize()
        if have_torch_cuda():
            import torch

            torch.cuda.synchronize()


def have_torch_cuda():
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def host(z):
    return z.get() if hasattr(z, "get") else np.asarray(z)


def numpy_map(data):
    lib = array_module()
    W_T = lib.asarray(np.ascontiguousarray(data["W"].T))
    injection = lib.asarray(data["injection"])
    return lambda z: lib.tanh(z @ W_T + injection)


def npdeq_run(data, solver, tol, max_iter=None):
    from npdeq.solver import get_solver

    f = Counted(numpy_map(data))
    z0 = array_module().asarray(data["z0"])
    z, _, info = get_solver(solver)(f, z0, max_iter=max_iter or data["max_iter"], tol=tol,
                                    stop_mode="abs")
    synchronize()
    return f.calls, z, f.f


def scipy_run(data, solver, tol, max_iter=None):
    import scipy.optimize

    f = Counted(numpy_map(data))
    shape = data["z0"].shape

    def residual(flat):
        z = flat.reshape(shape)
        return (f(z) - z).reshape(-1)

    def per_sample_norm(r):  # SciPy's stopping test with npdeq's per-sample L2 criterion
        return float(np.max(np.linalg.norm(r.reshape(shape[0], -1), axis=1)))

    try:
        flat = scipy.optimize.anderson(residual, data["z0"].reshape(-1), M=6, f_tol=tol,
                                       tol_norm=per_sample_norm,
                                       maxiter=max_iter or data["max_iter"])
    except scipy.optimize.NoConvergence as exc:
        flat = exc.args[0]
    return f.calls, flat.reshape(shape), f.f


# --- TorchDEQ ------------------------------------------------------------------------------------

def torchdeq_run(data, solver, tol, max_iter=None):
    import torch
    from torchdeq.solver import get_solver

    device = "cuda" if DEVICE["name"] == "gpu" else "cpu"
    W_T = torch.tensor(np.ascontiguousarray(data["W"].T), device=device)
    injection = torch.tensor(data["injection"], device=device)
    base = lambda z: torch.tanh(z @ W_T + injection)  # noqa: E731
    f = Counted(base)
    with torch.no_grad():
        z, _, _ = get_solver(solver)(f, torch.tensor(data["z0"], device=device),
                                     max_iter=max_iter or data["max_iter"], tol=tol,
                                     stop_mode="abs")
    synchronize()
    return f.calls, z.cpu().numpy(), lambda z: base(torch.tensor(z, device=device)).cpu().numpy()


def f_call_time(data, library, repeat):
    z = np.random.default_rng(1).standard_normal(data["z0"].shape).astype(data["z0"].dtype)
    if library == "torchdeq":
        import torch

        device = "cuda" if DEVICE["name"] == "gpu" else "cpu"
        W_T = torch.tensor(np.ascontiguousarray(data["W"].T), device=device)
        injection = torch.tensor(data["injection"], device=device)
        zt = torch.tensor(z, device=device)
        f = lambda: torch.tanh(zt @ W_T + injection)  # noqa: E731
    else:
        g = numpy_map(data)
        za = array_module().asarray(z)
        f = lambda: g(za)  # noqa: E731
    calls = 200 if z.size < 1000 else 20

    def run():
        for _ in range(calls):
            f()
        synchronize()

    seconds, _ = best_time(run, repeat)
    return seconds / calls


RUNS = [("npdeq", "fixed_point_iter", npdeq_run), ("npdeq", "anderson", npdeq_run),
        ("npdeq", "broyden", npdeq_run), ("npdeq", "newton_krylov", npdeq_run),
        ("npdeq", "ode", npdeq_run), ("scipy", "anderson", scipy_run),
        ("torchdeq", "fixed_point_iter", torchdeq_run), ("torchdeq", "anderson", torchdeq_run),
        ("torchdeq", "broyden", torchdeq_run)]
SOLVERS = {solver for _, solver, _ in RUNS}


def marginal_evaluation_time(run, data, solver, repeat, short=10, long=30):
    """Seconds one more evaluation of f costs, solver work included, without the per-solve
    setup: the difference of two solves that cannot converge (``tol`` out of reach), of
    ``short`` and ``long`` iterations, over the difference of their evaluation counts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_short, (evals_short, _, _) = best_time(lambda: run(data, solver, 1e-300, short),
                                                 repeat)
        t_long, (evals_long, _, _) = best_time(lambda: run(data, solver, 1e-300, long), repeat)
    return (t_long - t_short) / max(evals_long - evals_short, 1)


def measure(workload: str, library: str, repeat: int, tol: float,
            solvers: tuple[str, ...] | None = None) -> list[str]:
    """The rows of one library on one workload (run in a child process, so that one
    library's thread pools do not slow down the next one's timings); ``solvers``: only
    these solvers' rows (default all)."""
    data = make_workload(workload)
    f_seconds = f_call_time(data, library, repeat)
    rows = []
    for lib, solver, run in RUNS:
        if lib != library or (solvers is not None and solver not in solvers):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, (evals, z, f) = best_time(lambda: run(data, solver, tol), repeat)
        residual = float(np.max(np.linalg.norm(host(f(z) - z).reshape(z.shape[0], -1),
                                               axis=1)))
        overhead = seconds / (evals * f_seconds)
        marginal = marginal_evaluation_time(run, data, solver, repeat)
        rows.append(f"{workload:<8} {library:<9} {solver:<17} {evals:>6} {1e3 * seconds:>9.2f} "
                    f"{1e6 * seconds / evals:>9.1f} {1e6 * marginal:>9.1f} {overhead:>9.2f} "
                    f"{residual:>13.2e}")
    rows.append(f"{workload:<8} {library:<9} one f call: {1e6 * f_seconds:.1f} us")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workloads", default="mlp,slow,small")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--solvers", default=None,
                        help="comma-separated subset of: " + ", ".join(sorted(SOLVERS))
                        + " (default all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    DEVICE["name"] = args.device
    solvers = None if args.solvers is None else tuple(args.solvers.split(","))
    if solvers is not None and not set(solvers) <= SOLVERS:
        parser.error(f"--solvers: unknown {sorted(set(solvers) - SOLVERS)}; expected names "
                     f"from {sorted(SOLVERS)}")
    if args.child:
        workload, library = args.child.split(":")
        print("\n".join(measure(workload, library, args.repeat, args.tol, solvers)))
        return
    have = {"npdeq": True,
            "scipy": args.device == "cpu" and importlib.util.find_spec("scipy") is not None,
            "torchdeq": all(importlib.util.find_spec(m) is not None
                            for m in ("torch", "torchdeq"))
            and (args.device == "cpu" or have_torch_cuda())}
    print(f"{'workload':<8} {'library':<9} {'solver':<17} {'evals':>6} {'time ms':>9} "
          f"{'us/eval':>9} {'marginal':>9} {'overhead':>9} {'max residual':>13}")
    for workload in args.workloads.split(","):
        for library in (lib for lib in have if have[lib]):
            # Tiny solves are cheap to repeat and noisy: take the best of more of them.
            repeat = args.repeat * 20 if workload == "small" else args.repeat
            if solvers is not None and not any(lib == library and solver in solvers
                                               for lib, solver, _ in RUNS):
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--child", f"{workload}:{library}", "--repeat",
                 str(repeat), "--tol", str(args.tol), "--device", args.device]
                + ([] if solvers is None else ["--solvers", args.solvers]),
                capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            print(out.stdout.rstrip(), flush=True)


if __name__ == "__main__":
    main()
