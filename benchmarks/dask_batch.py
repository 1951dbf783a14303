"""Many small independent fixed points: one process against npdeq.dask on threads and on a
LocalCluster of worker processes.

Run from the repository root (needs the dask extra: ``pip install -e ".[dask]"``):

    python benchmarks/dask_batch.py [--batch 100000] [--chunk 10000] [--dim 8] [--repeat 3]
                                    [--workers 2] [--modes single,sync,threads,cluster]
                                    [--grad] [--device cpu|gpu] [--malloc-trim BYTES]

Workload (fixed seed, float64): ``batch`` independent problems z_i = tanh(W z_i + U x_i + b)
with a state of ``dim`` values, a per-sample input x_i of 4 values and shared W (spectral
norm 0.9), U, b; Anderson (m=6) to ``tol=1e-8``. ``single`` solves the whole batch with one
:func:`npdeq.fixed_point` call; ``sync`` runs :func:`npdeq.dask.fixed_point` over ``batch /
chunk`` chunks one after the other in this thread (Dask's synchronous scheduler: the effect
of chunking alone); ``threads`` on Dask's threaded scheduler with ``workers`` threads;
``cluster`` on a ``distributed.LocalCluster`` of ``workers`` processes with one thread each
(started before the timing; its start-up time is printed apart; ``--malloc-trim`` sets the
workers' ``MALLOC_TRIM_THRESHOLD_``, which distributed sets to 64 KiB: glibc then unmaps
every freed block above 128 KiB, and a chunk's work arrays pay page faults on every
allocation). With ``--grad`` each mode
also times the loss ``sum_i ||z_i||^2`` and its IFT gradient w.r.t. (W, U, b): one
``npdeq.grad`` call in one process, :func:`npdeq.dask.value_and_grad` otherwise. Columns:
best wall time of ``--repeat`` runs (graph building and the transfer of the results
included), samples per second, the largest difference from the single-process result, and
the fraction of converged samples.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

import npdeq

SOLVE = {"tol": 1e-8, "max_iter": 100, "m": 6}


def make_problem(batch: int, dim: int, xp=np, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((dim, dim))
    W *= 0.9 / np.linalg.norm(W, 2)
    U = rng.standard_normal((dim, 4)) / 2
    b = 0.1 * rng.standard_normal(dim)
    x = rng.standard_normal((batch, 4))
    return {"params": [xp.asarray(W), xp.asarray(U), xp.asarray(b)], "x": xp.asarray(x)}


def func(z, x, W=None, U=None, b=None):
    return npdeq.tanh(z @ W.T + (x @ U.T + b))


def loss_fn(params, x):
    W, U, b = params
    inj = x @ U.T + b
    z0 = npdeq.zeros((x.shape[0], W.shape[0]), xp=npdeq.backend.array_namespace(x))
    z, _ = npdeq.fixed_point(lambda z: npdeq.tanh(z @ W.T + inj), z0, solver_kwargs=SOLVE,
                             b_solver_kwargs={"tol": 1e-8, "max_iter": 100})
    return (z * z).sum()


def single(problem: dict, grad: bool):
    W, U, b = problem["params"]
    x = problem["x"]
    if grad:
        leaves = [npdeq.tensor(p, requires_grad=True) for p in problem["params"]]
        loss = loss_fn(leaves, x)
        return loss.data, [g.data for g in npdeq.grad(loss, leaves)], None
    z, info = npdeq.fixed_point(lambda z: func(z, x, W=W, U=U, b=b),
                                npdeq.zeros((x.shape[0], W.shape[0]),
                                            xp=npdeq.backend.array_namespace(x)),
                                grad=None, solver_kwargs=SOLVE)
    return z.data, None, float(npdeq.backend.array_namespace(x).mean(
        npdeq.backend.array_namespace(x).astype(info["converged"], x.dtype)))


def with_dask(problem: dict, chunk: int, grad: bool, **compute_kwargs):
    import dask
    import dask.array as da

    import npdeq.dask

    x = da.from_array(problem["x"], chunks=(chunk, 4), asarray=False)
    if grad:
        value, grads = npdeq.dask.value_and_grad(loss_fn, problem["params"], x)
        value, grads = dask.compute(value, grads, **compute_kwargs)
        return value, grads, None
    W, U, b = problem["params"]
    z0 = da.zeros((x.shape[0], W.shape[0]), chunks=(chunk, W.shape[0]),
                  meta=problem["x"][:0, :0])
    z, info = npdeq.dask.fixed_point(func, z0, x, W=W, U=U, b=b, solver_kwargs=SOLVE)
    z, frac = dask.compute(z, info["converged_fraction"], **compute_kwargs)
    return z, None, float(frac)


def to_host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def difference(result, reference) -> float:
    if result[1] is None:
        return float(np.max(np.abs(to_host(result[0]) - to_host(reference[0]))))
    return max(float(np.max(np.abs(to_host(g) - to_host(r))))
               for g, r in zip(result[1], reference[1]))


def timed(run, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default="single,sync,threads,cluster")
    parser.add_argument("--grad", action="store_true")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--malloc-trim", type=int, default=None,
                        help="MALLOC_TRIM_THRESHOLD_ of the cluster's worker processes "
                             "(default: distributed's, 65536)")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if args.device == "gpu":
        import cupy as xp
    else:
        xp = np
    problem = make_problem(args.batch, args.dim, xp)
    kinds = ["solve"] + (["loss+grad"] if args.grad else [])
    results, reference = {}, {}
    client = cluster = None
    print(f"{args.batch} problems of dimension {args.dim}, chunks of {args.chunk}, "
          f"{args.workers} workers, {args.device}, best of {args.repeat}")
    print(f"{'task':10s} {'mode':8s} {'seconds':>9s} {'samples/s':>11s} {'max diff':>9s} "
          f"{'converged':>9s}")
    if any(m != "single" for m in modes):  # Dask's first compute imports and sets up
        for kind in kinds:
            with_dask(make_problem(8, args.dim, xp), 4, kind != "solve", scheduler="sync")
    try:
        for kind in kinds:
            grad = kind != "solve"
            reference[kind] = single(problem, grad)
            for mode in modes:
                if mode == "single":
                    run = lambda: single(problem, grad)  # noqa: E731
                elif mode == "sync":
                    run = lambda: with_dask(problem, args.chunk, grad,  # noqa: E731
                                            scheduler="sync")
                elif mode == "threads":
                    run = lambda: with_dask(problem, args.chunk, grad,  # noqa: E731
                                            scheduler="threads", num_workers=args.workers)
                elif mode == "cluster":
                    if client is None:
                        import dask
                        import distributed
                        logging.getLogger("distributed").setLevel(logging.ERROR)
                        start = time.perf_counter()
                        environ = {} if args.malloc_trim is None else {
                            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_":
                                args.malloc_trim}
                        with dask.config.set(environ):
                            cluster = distributed.LocalCluster(
                                n_workers=args.workers, threads_per_worker=1,
                                processes=True, dashboard_address=":0")
                        client = distributed.Client(cluster)
                        print(f"(LocalCluster start-up: {time.perf_counter() - start:.2f} s)")
                    run = lambda: with_dask(problem, args.chunk, grad)  # noqa: E731
                else:
                    raise SystemExit(f"unknown mode {mode!r}")
                seconds, out = timed(run, args.repeat)
                diff = difference(out, reference[kind])
                frac = "" if out[2] is None else f"{out[2]:.3f}"
                results[kind, mode] = {"seconds": seconds, "max_diff": diff}
                print(f"{kind:10s} {mode:8s} {seconds:9.3f} {args.batch / seconds:11.0f} "
                      f"{diff:9.1e} {frac:>9s}", flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
