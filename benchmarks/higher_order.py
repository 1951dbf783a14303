"""The cost of second derivatives and forward-mode derivatives through a fixed point.

On the ``mlp`` and ``small`` workloads of ``benchmarks/gradients.py`` (the same data, Anderson
forward, fixed-point-iteration adjoint), each timed as the fastest of ``--repeat`` runs:

- ``grad``: forward solve + the IFT gradient of ``mean(z*^2)`` with respect to the parameters;
- ``hvp``: forward solve + the IFT gradient recorded (``create_graph=True``) + its derivative
  along a direction (a Hessian-vector product: one more implicit solve, with J for J^T);
- ``solve``: the forward solve alone (no gradient);
- ``jvp``: ``npdeq.jvp`` of ``params -> z*`` along a direction (forward sensitivities: the
  solve with J that the JVP rule of the fixed point runs, after the same forward solve).

The direction has unit norm over all parameters.

Ratios: hvp / grad and jvp / solve. Run from the repository root:

    python benchmarks/higher_order.py [--repeat 5] [--workloads mlp,small]
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib

import numpy as np

import npdeq

HERE = pathlib.Path(__file__).resolve().parent
SOLVE = {"max_iter": 50, "tol": 1e-4}
ADJOINT = {"max_iter": 50, "tol": 1e-6}


def _gradients_module():
    spec = importlib.util.spec_from_file_location("bench_gradients", HERE / "gradients.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _problem(data):
    names = ("W", "U", "b", "x")
    values = [data[k] for k in names]

    def solved(W, U, b, x, grad="ift"):
        inj = x @ U.T + b
        z, info = npdeq.fixed_point(lambda z: npdeq.tanh(z @ W.T + inj), data["z0"],
                                    solver="anderson", solver_kwargs=SOLVE, grad=grad,
                                    b_solver_kwargs=ADJOINT)
        return z, info

    return values, solved


def measure(data, repeat, best_time):
    values, solved = _problem(data)
    rng = np.random.default_rng(0)
    direction = [rng.standard_normal(v.shape) for v in values]
    # A unit direction: the inner solves stop on an absolute tolerance, so a long direction
    # would ask them for more relative accuracy than the gradient's adjoint solve gets.
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in direction))
    direction = [(d / norm).astype(v.dtype) for d, v in zip(direction, values)]

    def leaves():
        return [npdeq.Tensor(v, requires_grad=True) for v in values]

    def grad():
        ps = leaves()
        z, _ = solved(*ps)
        npdeq.grad((z * z).mean(), ps)

    def hvp():
        ps = leaves()
        z, _ = solved(*ps)
        gs = npdeq.grad((z * z).mean(), ps, create_graph=True)
        npdeq.grad(sum((g * d).sum() for g, d in zip(gs, direction)), ps)

    def solve():
        solved(*[npdeq.Tensor(v) for v in values], grad=None)

    def jvp():
        npdeq.jvp(lambda *ps: solved(*ps)[0], tuple(values), tuple(direction))

    return {name: best_time(fn, repeat) for name, fn in
            (("grad", grad), ("hvp", hvp), ("solve", solve), ("jvp", jvp))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workloads", default="mlp,small")
    args = parser.parse_args(argv)
    gradients = _gradients_module()
    print(f"{'workload':<9} {'grad ms':>9} {'hvp ms':>9} {'hvp/grad':>9} {'solve ms':>9} "
          f"{'jvp ms':>9} {'jvp/solve':>9}")
    results = {}
    for name in args.workloads.split(","):
        t = measure(gradients.make_workload(name), args.repeat, gradients.best_time)
        results[name] = t
        print(f"{name:<9} {t['grad'] * 1e3:9.2f} {t['hvp'] * 1e3:9.2f} "
              f"{t['hvp'] / t['grad']:9.2f} {t['solve'] * 1e3:9.2f} {t['jvp'] * 1e3:9.2f} "
              f"{t['jvp'] / t['solve']:9.2f}")
    return results


if __name__ == "__main__":
    main()
