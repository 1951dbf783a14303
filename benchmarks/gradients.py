"""Forward + backward cost of a DEQ step: npdeq's IFT and PhantomGrad beside TorchDEQ's and
beside HIPS autograd differentiating an unrolled iteration, on the same data; and, on the
``mlp`` workload, a training step through each library's ``get_deq(core=...)`` for both cores
(same settings, ``CORE``: IFT on the last of two sampled states, PhantomGrad on the other).
For those rows "f iters" counts the calls of f during the forward (solver and gradient
functors), since TorchDEQ's DEQSliced reports only its last segment's statistics. The
"ift-gmres" and "ift-direct" rows (npdeq only) run the same IFT step with the adjoint solved
by ``b_solver='gmres'`` (batched GMRES, one VJP per product) and ``b_solver='direct'`` (a dense
per-sample solve from D VJPs; skipped where D is above its limit); "b iters" is then the mean
number of VJPs per sample.

Run from the repository root:

    python benchmarks/gradients.py [--repeat 5] [--workloads mlp,small,conv] [--methods ift,phantom]

After the table, for each workload's IFT row: what one more adjoint iteration adds to the
backward pass (two backward passes run to exactly 5 and 25 iterations, ``tol=0``,
differenced) against one VJP of f on npdeq's tape and, for the ``mlp``-kind workloads, one
raw NumPy VJP ``(g * (1 - y**2)) @ W``.

TorchDEQ columns appear when ``torch`` and ``torchdeq`` are importable, autograd's when
``autograd`` is. Peak memory is the growth of the process's peak resident set during the
measured steps, each configuration in its own subprocess so that one does not hide another.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

F_SOLVER = dict(solver="anderson", max_iter=50, tol=1e-4)
B_SOLVER = dict(max_iter=50, tol=1e-6)
PHANTOM = dict(k=5, tau=0.8)
UNROLL = 30
# get_deq settings shared by both libraries' cores (the "core-*" methods, mlp workload only).
CORE = dict(f_solver=F_SOLVER["solver"], f_max_iter=F_SOLVER["max_iter"], f_tol=F_SOLVER["tol"],
            b_solver="fixed_point_iter", b_max_iter=B_SOLVER["max_iter"], b_tol=B_SOLVER["tol"],
            ift=True, n_states=2, grad=PHANTOM["k"], tau=PHANTOM["tau"])
CORE_METHODS = ("core-indexing", "core-sliced")
# IFT with another backward solver than fixed_point_iter (npdeq rows only).
B_SOLVER_METHODS = {"ift-gmres": "gmres", "ift-direct": "direct"}
CORE_WORKLOADS = ("mlp",)
ALL_METHODS = ("ift", "phantom") + tuple(B_SOLVER_METHODS) + CORE_METHODS


# --- workloads, built once from a seed in NumPy ------------------------------------------------

def make_workload(name: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    if name in ("mlp", "small"):
        d, batch, dtype = (512, 256, np.float32) if name == "mlp" else (8, 1, np.float64)
        W = rng.standard_normal((d, d))
        W *= 0.9 / np.linalg.norm(W, 2)
        return {"kind": "mlp", "W": W.astype(dtype),
                "U": (rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype),
                "b": (0.1 * rng.standard_normal(d)).astype(dtype),
                "x": rng.standard_normal((batch, d)).astype(dtype),
                "z0": np.zeros((batch, d), dtype)}
    if name == "conv":
        batch, c, hw, c_in = 32, 32, 16, 3
        scale = 0.5 / np.sqrt(9 * c)
        return {"kind": "conv",
                "Wz": (scale * rng.standard_normal((c, c, 3, 3))).astype(np.float32),
                "Wx": (rng.standard_normal((c, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32),
                "gamma": np.ones(c, np.float32), "beta": np.zeros(c, np.float32),
                "x": rng.standard_normal((batch, c_in, hw, hw)).astype(np.float32),
                "z0": np.zeros((batch, c, hw, hw), np.float32)}
    raise ValueError(f"unknown workload {name!r}")


# --- npdeq -----------------------------------------------------------------------------------

def npdeq_map(data: dict, requires_grad: bool = True):
    """The workload's f on npdeq Tensors (parameters as leaves) and the injection built once."""
    import npdeq

    params = {k: npdeq.Tensor(v, requires_grad=requires_grad) for k, v in data.items()
              if k not in ("kind", "z0")}
    if data["kind"] == "mlp":
        inj = params["x"] @ params["U"].T + params["b"]
        func = lambda z: npdeq.tanh(z @ params["W"].T + inj)  # noqa: E731
    else:
        inj = npdeq.conv2d(params["x"], params["Wx"], padding=1)
        func = lambda z: npdeq.group_norm(  # noqa: E731
            npdeq.relu(npdeq.conv2d(z, params["Wz"], padding=1)) + inj, 8,
            params["gamma"], params["beta"])
    return func


def npdeq_step(data: dict, method: str, b_solver_kwargs: dict | None = None):
    import npdeq

    func = npdeq_map(data)
    if method in CORE_METHODS:
        return core_step(npdeq.get_deq, method, func, data["z0"], lambda z: (z * z).mean(),
                         lambda info: info["backward"])
    solver_kwargs = {k: v for k, v in F_SOLVER.items() if k != "solver"}
    grad = "ift" if method == "ift" or method in B_SOLVER_METHODS else PHANTOM["k"]
    b_solver = B_SOLVER_METHODS.get(method, "fixed_point_iter")
    if b_solver == "direct":
        from npdeq.grad.adjoint import DIRECT_MAX_DIM

        dim = int(np.prod(data["z0"].shape[1:]))
        if dim > DIRECT_MAX_DIM:
            raise NotImplementedError(f"b_solver='direct' stops at D = {DIRECT_MAX_DIM}")
    z, info = npdeq.fixed_point(func, data["z0"], solver=F_SOLVER["solver"], grad=grad,
                                tau=PHANTOM["tau"], solver_kwargs=solver_kwargs,
                                b_solver=b_solver,
                                b_solver_kwargs={} if b_solver == "direct"
                                else b_solver_kwargs or B_SOLVER)
    loss = (z * z).mean()
    start = time.perf_counter()
    loss.backward()
    b_seconds = time.perf_counter() - start
    back = info.get("backward")
    return {"f_iters": float(np.mean(np.asarray(info["nstep"]))),
            "b_iters": float(np.mean(np.asarray(back["nstep"]))) if back else 0.0,
            "b_nfe": int(back.get("nfe", 0)) if back else 0, "b_seconds": b_seconds}


def npdeq_vjp_time(data: dict, repeat: int) -> float:
    """Seconds for one VJP of f with respect to z at a random state (the unit of adjoint cost)."""
    import npdeq

    z = npdeq.Tensor(np.random.default_rng(1).standard_normal(data["z0"].shape)
                     .astype(data["z0"].dtype), requires_grad=True)
    f = npdeq_map(data, requires_grad=False)(z)
    g = npdeq.Tensor(np.ones(f.shape, f.data.dtype))
    return best_time(lambda: npdeq.grad(f, z, g, retain_graph=True), repeat)


def raw_vjp_time(data: dict, repeat: int) -> float | None:
    """Seconds for one VJP of the ``mlp``-kind f in plain NumPy, ``(g * (1 - y**2)) @ W`` with
    ``y = f(z)`` saved (the floor for one adjoint iteration); None for other workloads."""
    if data["kind"] != "mlp":
        return None
    z = (np.random.default_rng(1).standard_normal(data["z0"].shape)
         .astype(data["z0"].dtype))
    W = data["W"]
    y = np.tanh(z @ W.T + (data["x"] @ data["U"].T + data["b"]))
    g = np.ones_like(y)
    calls = 200 if y.size < 1000 else 20

    def run():
        for _ in range(calls):
            (g * (1.0 - y * y)) @ W
    return best_time(run, repeat) / calls


# --- TorchDEQ --------------------------------------------------------------------------------

def torchdeq_step(data: dict, method: str):
    import torch
    from torchdeq import get_deq

    params = {k: torch.tensor(v, requires_grad=True) for k, v in data.items()
              if k not in ("kind", "z0")}
    if data["kind"] == "mlp":
        inj = params["x"] @ params["U"].T + params["b"]
        func = lambda z: torch.tanh(z @ params["W"].T + inj)  # noqa: E731
    else:
        conv = torch.nn.functional.conv2d
        inj = conv(params["x"], params["Wx"], padding=1)
        func = lambda z: torch.nn.functional.group_norm(  # noqa: E731
            torch.relu(conv(z, params["Wz"], padding=1)) + inj, 8, params["gamma"],
            params["beta"])
    if method in CORE_METHODS:
        return core_step(get_deq, method, func, torch.tensor(data["z0"]),
                         lambda z: (z * z).mean(), lambda info: None)
    settings = dict(core="indexing", f_solver=F_SOLVER["solver"], f_max_iter=F_SOLVER["max_iter"],
                    f_tol=F_SOLVER["tol"], b_solver="fixed_point_iter",
                    b_max_iter=B_SOLVER["max_iter"], b_tol=B_SOLVER["tol"])
    if method == "ift":
        settings.update(ift=True)
    else:
        settings.update(ift=False, grad=PHANTOM["k"], tau=PHANTOM["tau"])
    deq = get_deq(**settings)
    z_out, info = deq(func, torch.tensor(data["z0"]))
    (z_out[-1] * z_out[-1]).mean().backward()
    return {"f_iters": float(info["nstep"].float().mean())}


# --- a training step through get_deq(core=...), either library --------------------------------

def core_step(get_deq, method: str, func, z0, loss_of, backward_stats):
    """Forward through the core (f calls counted), sum of the states' losses, backward."""
    calls = [0]

    def counted(z):
        calls[0] += 1
        return func(z)

    deq = get_deq(core=method.split("-", 1)[1], **CORE)
    z_out, info = deq(counted, z0)
    f_calls = calls[0]
    loss = loss_of(z_out[0])
    for z in z_out[1:]:
        loss = loss + loss_of(z)
    loss.backward()
    back = backward_stats(info)
    result = {"f_iters": float(f_calls)}
    if back is not None:
        result["b_iters"] = float(np.mean(np.asarray(back["nstep"])))
    return result


# --- HIPS autograd through an unrolled iteration ----------------------------------------------

def autograd_step(data: dict, method: str):
    import autograd
    import autograd.numpy as anp

    if data["kind"] != "mlp":
        raise NotImplementedError("autograd has no conv2d/group_norm")

    def loss(W, U, b, x):
        inj = x @ U.T + b
        z = data["z0"]
        for _ in range(UNROLL):
            z = anp.tanh(z @ W.T + inj)
        return anp.mean(z * z)

    autograd.grad(loss, argnum=(0, 1, 2, 3))(data["W"], data["U"], data["b"], data["x"])
    return {"f_iters": float(UNROLL)}


RUNNERS = {"npdeq": npdeq_step, "torchdeq": torchdeq_step, "autograd": autograd_step}


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(library: str, workload: str, method: str, repeat: int) -> dict:
    """Run in a child process: best time of a forward+backward step and peak RSS growth."""
    data = make_workload(workload)
    runner = RUNNERS[library]
    if library == "torchdeq":
        import torch

        torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = runner(data, method)  # warm-up and statistics
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        seconds = best_time(lambda: runner(data, method), repeat)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"seconds": seconds, "peak_mb": (after - before) / 1024.0, **extra}
    if library == "npdeq" and method == "ift":
        result["vjp_seconds"] = npdeq_vjp_time(data, repeat)
        result["raw_vjp_seconds"] = raw_vjp_time(data, repeat)
        result["adjoint_seconds"] = npdeq_adjoint_iteration_time(data, repeat)
    return result


def npdeq_adjoint_iteration_time(data: dict, repeat: int, short: int = 5,
                                 long: int = 25) -> float:
    """Seconds one more adjoint iteration adds to the backward pass: backward passes of
    ``short`` and ``long`` iterations, differenced. ``tol=0`` runs exactly ``max_iter``
    iterations; an unreachable positive tolerance would also run the GMRES fallback for the
    unconverged samples and time that too."""
    def backward_seconds(iterations):
        kwargs = {"max_iter": iterations, "tol": 0.0}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return min(npdeq_step(data, "ift", kwargs)["b_seconds"] for _ in range(repeat))
    return (backward_seconds(long) - backward_seconds(short)) / (long - short)


def available(library: str) -> bool:
    modules = {"npdeq": ["npdeq"], "torchdeq": ["torch", "torchdeq"], "autograd": ["autograd"]}
    return all(importlib.util.find_spec(m) is not None for m in modules[library])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workloads", default="mlp,small,conv")
    parser.add_argument("--methods", default=None,
                        help="comma-separated subset of: " + ", ".join(ALL_METHODS)
                        + " (default all)")
    parser.add_argument("--reuse-freed-memory", action="store_true",
                        help="npdeq.reuse_freed_memory() in every measuring process (glibc "
                             "keeps freed memory instead of unmapping it)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chosen = ALL_METHODS if args.methods is None else tuple(args.methods.split(","))
    unknown = [m for m in chosen if m not in ALL_METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; expected names from {ALL_METHODS}")
    if args.child:
        if args.reuse_freed_memory:
            import npdeq

            npdeq.reuse_freed_memory()
        library, workload, method = args.child.split(":")
        try:
            print(json.dumps(measure(library, workload, method, args.repeat)))
        except NotImplementedError as exc:
            print(json.dumps({"skip": str(exc)}))
        return

    rows = []
    for workload in args.workloads.split(","):
        methods = (("ift", "phantom") + tuple(B_SOLVER_METHODS)
                   + (CORE_METHODS if workload in CORE_WORKLOADS else ()))
        for method in (m for m in methods if m in chosen):
            for library in ("npdeq", "torchdeq", "autograd"):
                if not available(library) or (library == "autograd" and method != "ift"):
                    continue
                if method in B_SOLVER_METHODS and library != "npdeq":
                    continue
                out = subprocess.run(
                    [sys.executable, __file__, "--child", f"{library}:{workload}:{method}",
                     "--repeat", str(args.repeat)]
                    + (["--reuse-freed-memory"] if args.reuse_freed_memory else []),
                    capture_output=True, text=True)
                if out.returncode != 0:
                    print(out.stderr[-2000:], file=sys.stderr)
                    continue
                result = json.loads(out.stdout.strip().splitlines()[-1])
                if "skip" not in result:
                    rows.append((workload, method, library, result))

    label = {"ift": "IFT", "phantom": f"Phantom k={PHANTOM['k']} tau={PHANTOM['tau']}",
             "ift-gmres": "IFT b_solver=gmres", "ift-direct": "IFT b_solver=direct",
             "core-indexing": "get_deq indexing", "core-sliced": "get_deq sliced"}
    print(f"{'workload':<8} {'gradient':<22} {'library':<22} {'fwd+bwd ms':>11} "
          f"{'f iters':>8} {'b iters':>8} {'peak MB':>8}")
    for workload, method, library, r in rows:
        name = library if library != "autograd" else f"autograd ({UNROLL} unrolled)"
        b_iters = f"{r['b_iters']:.1f}" if "b_iters" in r else "-"
        print(f"{workload:<8} {label[method]:<22} {name:<22} {1e3 * r['seconds']:>11.2f} "
              f"{r['f_iters']:>8.1f} {b_iters:>8} {r['peak_mb']:>8.1f}")
    for workload, method, library, r in rows:
        if library == "npdeq" and method == "ift":
            torch_row = [t for w, m, lib, t in rows
                         if (w, m, lib) == (workload, "ift", "torchdeq")]
            ratio = (f", {r['seconds'] / torch_row[0]['seconds']:.2f}x TorchDEQ's time"
                     if torch_row else "")
            per_iteration = r["adjoint_seconds"]
            print(f"{workload}: IFT forward+backward {ratio.lstrip(', ') or '(no TorchDEQ)'}; "
                  f"{r['b_nfe']} adjoint iterations; one more adjoint iteration costs "
                  f"{1e3 * per_iteration:.3f} ms, one VJP of f {1e3 * r['vjp_seconds']:.3f} ms "
                  f"(ratio {per_iteration / r['vjp_seconds']:.2f})"
                  + ("" if r.get("raw_vjp_seconds") is None else
                     f", one raw NumPy VJP {1e3 * r['raw_vjp_seconds']:.3f} ms "
                     f"(ratio {per_iteration / r['raw_vjp_seconds']:.2f})"))
            for method in B_SOLVER_METHODS:
                other = [t for w, m, lib, t in rows if (w, m, lib) == (workload, method, library)]
                if other:
                    print(f"{workload}: {label[method]}: {other[0]['b_nfe'] or '-'} VJPs in the "
                          f"backward (fixed_point_iter: {r['b_nfe']}), fwd+bwd "
                          f"{other[0]['seconds'] / r['seconds']:.2f}x the fixed_point_iter step")


if __name__ == "__main__":
    main()
