"""``npdeq.conv2d``/``conv1d`` beside PyTorch's CPU convolution on the same float32 arrays:
the forward alone, and the forward plus the VJP with respect to the input and the weight
(one cotangent of ones, both gradients in one backward pass), for the ``conv`` workload's
shape (B=32, C=32, 16x16, 3x3, padding 1) and a few others (1-D, stride 2, groups,
dilation, bias). Each time is the minimum over ``--repeat`` calls, npdeq and PyTorch
interleaved call by call; the ratio columns are npdeq / PyTorch. ``--clock cpu`` times the
process's CPU time (``time.process_time``) instead of wall time: on a machine shared with
other work it leaves out the time the process waits for a core (run both libraries with one
thread, so that CPU time is the time of the one thread working).

Run from the repository root with the same thread count for both libraries, e.g.:

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python benchmarks/conv.py --threads 2

Needs ``torch``; the thread count of NumPy's BLAS comes from the environment
(``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``), PyTorch's from ``--threads``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import npdeq

# name, input shape, weight shape, keyword arguments, bias
CASES = [
    ("2d 32x32x16x16 k3 p1", (32, 32, 16, 16), (32, 32, 3, 3), dict(padding=1), False),
    ("2d same + bias", (32, 32, 16, 16), (32, 32, 3, 3), dict(padding=1), True),
    ("2d stride 2", (32, 32, 16, 16), (64, 32, 3, 3), dict(padding=1, stride=2), False),
    ("2d groups 4", (32, 32, 16, 16), (32, 8, 3, 3), dict(padding=1, groups=4), False),
    ("2d dilation 2", (32, 32, 16, 16), (32, 32, 3, 3), dict(padding=2, dilation=2), False),
    ("2d 64ch 8x8", (32, 64, 8, 8), (64, 64, 3, 3), dict(padding=1), False),
    ("1d 32x32x128 k3", (32, 32, 128), (32, 32, 3), dict(padding=1), True),
    ("1d stride 2 groups 2", (32, 32, 128), (32, 16, 5), dict(padding=2, stride=2, groups=2),
     False),
]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _time(fn, times: list, clock=time.perf_counter) -> None:
    start = clock()
    fn()
    times.append(clock() - start)


def run_case(name, x_shape, w_shape, kwargs, bias, repeat, torch, clock=time.perf_counter):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    np_conv = npdeq.conv2d if len(x_shape) == 4 else npdeq.conv1d
    t_conv = (torch.nn.functional.conv2d if len(x_shape) == 4
              else torch.nn.functional.conv1d)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    tb = None if b is None else torch.from_numpy(b)

    def np_forward():
        return np_conv(x, w, b, **kwargs)

    def t_forward():
        with torch.no_grad():
            return t_conv(tx, tw, tb, **kwargs)

    def np_backward():
        xx = npdeq.Tensor(x, requires_grad=True)
        ww = npdeq.Tensor(w, requires_grad=True)
        out = np_conv(xx, ww, b, **kwargs)
        return npdeq.grad(out, [xx, ww], grad_outputs=np.ones(out.shape, np.float32))

    def t_backward():
        xx = tx.detach().requires_grad_()
        ww = tw.detach().requires_grad_()
        out = t_conv(xx, ww, tb, **kwargs)
        return torch.autograd.grad(out, [xx, ww], torch.ones_like(out))

    # Same values first (float32 rounding).
    np.testing.assert_allclose(np_forward().numpy(), t_forward().numpy(), rtol=1e-3, atol=1e-3)
    gx, gw = np_backward()
    tgx, tgw = t_backward()
    np.testing.assert_allclose(gx.numpy(), tgx.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(gw.numpy(), tgw.numpy(), rtol=1e-3, atol=2e-2)
    times = {key: [] for key in ("nf", "tf", "nb", "tb")}
    for _ in range(repeat):
        _time(np_forward, times["nf"], clock)
        _time(t_forward, times["tf"], clock)
        _time(np_backward, times["nb"], clock)
        _time(t_backward, times["tb"], clock)
    best = {key: 1e3 * min(v) for key, v in times.items()}
    print(f"| {name:<22} | {best['nf']:7.2f} | {best['tf']:7.2f} | {best['nf'] / best['tf']:5.2f} "
          f"| {best['nb']:7.2f} | {best['tb']:7.2f} | {best['nb'] / best['tb']:5.2f} |",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="", help="comma-separated case numbers (default all)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="wall time or the process's CPU time (default wall)")
    parser.add_argument("--reuse-freed-memory", action="store_true",
                        help="npdeq.reuse_freed_memory() first (the whole process, both "
                             "libraries: glibc keeps freed memory instead of unmapping it)")
    args = parser.parse_args()
    if args.reuse_freed_memory:
        npdeq.reuse_freed_memory()
    import torch

    torch.set_num_threads(args.threads)
    print(f"float32, {args.threads} torch threads, min of {args.repeat}, {args.clock} clock, "
          f"freed memory {'reused' if args.reuse_freed_memory else 'given back'}; times in ms")
    print("| case                   | npdeq f | torch f | ratio | npdeq f+vjp | torch f+vjp "
          "| ratio |")
    print("|---|---|---|---|---|---|---|")
    chosen = [int(i) for i in args.cases.split(",") if i] or range(len(CASES))
    for i in chosen:
        run_case(*CASES[i], args.repeat, torch, CLOCKS[args.clock])


if __name__ == "__main__":
    main()
