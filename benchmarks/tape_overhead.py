"""What recording an op on npdeq's tape costs, beside plain NumPy and HIPS autograd.

For a handful of ops on small arrays (8 elements, where the bookkeeping dominates) and for a
512x512 matrix product (where the arithmetic does), prints one row per op:

- ``numpy``: the op on raw arrays;
- ``npdeq fwd``: the same op on leaves that require a gradient, so a node is recorded;
- ``overhead``: the difference, the cost of recording one op;
- ``npdeq fwd+bwd``: recording plus ``npdeq.grad`` of the output with respect to the inputs;
- ``autograd fwd+bwd``: HIPS autograd's ``make_vjp`` plus the VJP call, on the same data.

Times are in microseconds per call: the minimum over ``--repeat`` timeit runs of ``--number``
calls each (``--stat median`` for the median); the runs of a row's columns are interleaved.
Run from the repository root:

    python benchmarks/tape_overhead.py [--repeat 7] [--number 0] [--stat min|median]

``--number 0`` (the default) picks the number of calls per run so that a run lasts about
0.2 s. The autograd column appears when ``autograd`` is importable.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import timeit

import numpy as np

import npdeq


def _cases(rng: np.random.Generator) -> list[dict]:
    """Each case: raw NumPy inputs, the op on NumPy, on npdeq Tensors, and on autograd."""
    small = rng.standard_normal(8)
    small2 = rng.standard_normal(8)
    left, right = rng.standard_normal((2, 4)), rng.standard_normal((4, 2))
    big_a, big_b = rng.standard_normal((512, 512)), rng.standard_normal((512, 512))
    idx = slice(2, 6)
    return [
        {"name": "add (8)", "inputs": (small, small2),
         "numpy": np.add, "npdeq": npdeq.add, "autograd": lambda a, b: a + b},
        {"name": "mul (8)", "inputs": (small, small2),
         "numpy": np.multiply, "npdeq": npdeq.mul, "autograd": lambda a, b: a * b},
        {"name": "tanh (8)", "inputs": (small,),
         "numpy": np.tanh, "npdeq": npdeq.tanh, "autograd": "tanh"},
        {"name": "matmul (2x4 @ 4x2)", "inputs": (left, right),
         "numpy": np.matmul, "npdeq": npdeq.matmul, "autograd": "matmul"},
        {"name": "sum (8)", "inputs": (small,),
         "numpy": np.sum, "npdeq": npdeq.sum, "autograd": "sum"},
        {"name": "getitem (8)[2:6]", "inputs": (small,),
         "numpy": lambda a: a[idx], "npdeq": lambda a: a[idx], "autograd": lambda a: a[idx]},
        {"name": "matmul (512x512)", "inputs": (big_a, big_b),
         "numpy": np.matmul, "npdeq": npdeq.matmul, "autograd": "matmul"},
    ]


def _per_call_us(fns: dict, repeat: int, number: int, stat: str) -> dict:
    """Microseconds per call of each function. The runs of the functions are interleaved, so
    a slow phase of the machine hits all columns of a row alike."""
    timers = {k: timeit.Timer(f) for k, f in fns.items()}
    # Calls per run: so that a run takes >= 0.2 s (timeit's autorange), unless given.
    numbers = {k: number if number > 0 else t.autorange()[0] for k, t in timers.items()}
    runs: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, t in timers.items():
            runs[k].append(t.timeit(numbers[k]) / numbers[k] * 1e6)
    pick = min if stat == "min" else statistics.median
    return {k: pick(v) for k, v in runs.items()}


def measure(case: dict, repeat: int, number: int, stat: str, anp, make_vjp) -> dict:
    inputs = case["inputs"]
    leaves = [npdeq.Tensor(a, requires_grad=True) for a in inputs]
    op_np, op_tape = case["numpy"], case["npdeq"]
    out = op_tape(*leaves)
    assert out.requires_grad and not out.is_leaf  # a node is recorded
    g = np.ones_like(out.data)

    def tape_fwd_bwd():
        npdeq.grad(op_tape(*leaves), leaves, grad_outputs=g)

    fns = {"numpy": lambda: op_np(*inputs), "fwd": lambda: op_tape(*leaves),
           "fwd_bwd": tape_fwd_bwd}
    if anp is not None:
        op_ag = case["autograd"]
        op_ag = getattr(anp, op_ag) if isinstance(op_ag, str) else op_ag
        argnums = tuple(range(len(inputs)))

        def ag_fwd_bwd():
            vjp, _ = make_vjp(lambda *xs: op_ag(*xs), argnums)(*inputs)
            vjp(g)

        # Check that both systems agree before timing them.
        vjp, _ = make_vjp(lambda *xs: op_ag(*xs), argnums)(*inputs)
        ours = npdeq.grad(op_tape(*leaves), leaves, grad_outputs=g)
        for a, b in zip(vjp(g), ours):
            np.testing.assert_allclose(a, b.data, rtol=1e-10, atol=1e-10)
        fns["autograd"] = ag_fwd_bwd
    row = {"op": case["name"], "autograd": None, **_per_call_us(fns, repeat, number, stat)}
    row["overhead"] = row["fwd"] - row["numpy"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs per cell")
    parser.add_argument("--number", type=int, default=0,
                        help="calls per run (0: about 0.2 s per run)")
    parser.add_argument("--stat", choices=("min", "median"), default="min")
    args = parser.parse_args(argv)

    anp = make_vjp = None
    if importlib.util.find_spec("autograd") is not None:
        import autograd.numpy as anp
        from autograd import make_vjp

    print(f"Python {platform.python_version()}, NumPy {np.__version__}, npdeq "
          f"{npdeq.__version__}" + (f", autograd {_version('autograd')}" if anp else "")
          + f"; {args.stat} of {args.repeat} runs, microseconds per call")
    header = ("op", "numpy", "npdeq fwd", "overhead", "npdeq fwd+bwd", "autograd fwd+bwd")
    rows = [measure(c, args.repeat, args.number, args.stat, anp, make_vjp)
            for c in _cases(np.random.default_rng(0))]
    cells = [[r["op"], f"{r['numpy']:.2f}", f"{r['fwd']:.2f}", f"{r['overhead']:.2f}",
              f"{r['fwd_bwd']:.2f}", "-" if r["autograd"] is None else f"{r['autograd']:.2f}"]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in
                         enumerate(widths)) + "|")
    for c in cells:
        print("| " + " | ".join(c[0].ljust(widths[0]) if i == 0 else c[i].rjust(widths[i])
                                for i in range(len(c))) + " |")


def _version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()
