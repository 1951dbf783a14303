"""A convolutional DEQ classifier trained side by side in npdeq and TorchDEQ: the same model,
the same initial weights, the same batches and the same settings, the epochs of the two
libraries interleaved in one process.

The model is the DEQ-ResNet block of TorchDEQ's tutorial on 1-channel images:

    u = conv_in(x)                                   (1 -> C channels, 3x3, bias)
    f(z) = norm3(relu(z + norm2(u + conv2(norm1(relu(conv1(z)))))))
    z* = f(z*),  logits = linear(flatten(avg_pool(z*, 4)))

with ``conv1``, ``conv2`` (C -> C, 3x3, no bias) weight-normalised (``apply_norm``, recomputed
by ``reset_norm`` before every step), GroupNorm with ``--groups`` groups, Anderson in the
forward pass, and either IFT (the adjoint solved by fixed-point iteration) or PhantomGrad
(k=5, tau=0.8) in the backward pass; Adam, cross entropy, float32. The data are synthetic
``--size`` x ``--size`` images of 10 classes (a smooth random template per class, shifted by up
to two pixels, plus noise), generated from ``--seed``.

npdeq's model is built first; its parameters are copied into the PyTorch model, so both
start equal. The first batch's loss is printed for both (the forward solvers differ, so the
losses agree to about the forward tolerance, not to rounding).

Run from the repository root, in an environment with npdeq, torch and torchdeq (without
torch, ``--libraries npdeq`` runs npdeq's half alone):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/conv_classifier.py
    python benchmarks/conv_classifier.py --quick        # a few seconds, tiny sizes

``--threads`` (default 2) sets OMP/OpenBLAS/MKL threads before NumPy loads, and
``torch.set_num_threads``. Each epoch is timed in wall time and in the process's CPU time
(with one thread per library, the CPU time leaves out the waits for a core on a shared
machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

GRADIENTS = ("ift", "phantom")
PHANTOM = dict(grad=5, tau=0.8)
QUICK = dict(channels=8, groups=4, size=8, train=32, test=32, batch=32, epochs=1)


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--size", type=int, default=16, help="image side (a multiple of 4)")
    parser.add_argument("--train", type=int, default=1024, help="training images")
    parser.add_argument("--test", type=int, default=512, help="test images")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per configuration; the time reported is the fastest")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--f-max-iter", type=int, default=30)
    parser.add_argument("--f-tol", type=float, default=1e-3)
    parser.add_argument("--b-max-iter", type=int, default=30)
    parser.add_argument("--b-tol", type=float, default=1e-4)
    parser.add_argument("--stop-mode", default="rel", choices=("abs", "rel"))
    parser.add_argument("--b-solver", default="fixed_point_iter",
                        choices=("fixed_point_iter", "anderson", "broyden", "gmres"),
                        help="the IFT backward solver ('gmres': npdeq only)")
    parser.add_argument("--b-fallback", default="gmres", choices=("gmres", "none"),
                        help="npdeq's IFT: re-solve samples the fixed-point adjoint leaves "
                             "above b_tol by GMRES (npdeq's default), or keep them as "
                             "TorchDEQ does (with a ConvergenceWarning)")
    parser.add_argument("--reuse-freed-memory", action="store_true",
                        help="npdeq.reuse_freed_memory() first (the whole process, both "
                             "libraries: glibc keeps freed memory instead of unmapping it)")
    parser.add_argument("--gradients", default="ift,phantom",
                        help="comma-separated, from: " + ", ".join(GRADIENTS))
    parser.add_argument("--libraries", default="npdeq,torchdeq")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.gradients = args.gradients.split(",")
    args.libraries = args.libraries.split(",")
    bad = [g for g in args.gradients if g not in GRADIENTS]
    if bad or not args.gradients:
        parser.error(f"--gradients: expected names from {GRADIENTS}, got {bad}")
    if args.size % 4:
        parser.error(f"--size must be a multiple of 4, got {args.size}")
    if args.b_solver == "gmres" and "torchdeq" in args.libraries:
        parser.error("--b-solver gmres is npdeq's alone: add --libraries npdeq")
    return args


def deq_settings(args, gradient: str) -> dict:
    """get_deq keywords, the same for both libraries (npdeq_model adds ``b_fallback``)."""
    settings = dict(f_solver="anderson", f_max_iter=args.f_max_iter, f_tol=args.f_tol,
                    f_stop_mode=args.stop_mode)
    if gradient == "ift":
        settings.update(ift=True, b_solver=args.b_solver, b_max_iter=args.b_max_iter,
                        b_tol=args.b_tol, b_stop_mode=args.stop_mode)
    else:
        settings.update(ift=False, **PHANTOM)
    return settings


# --- data ------------------------------------------------------------------------------------

def make_data(args):
    """Synthetic images (N, 1, S, S) float32 and labels (N,) int64, train and test."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    s = args.size
    grid = np.arange(s + 4, dtype=np.float64)
    templates = np.zeros((10, s + 4, s + 4))
    for c in range(10):  # three Gaussian blobs of random signs per class
        for _ in range(3):
            cy, cx = rng.uniform(2, s + 2, size=2)
            width = rng.uniform(1.0, 0.25 * s)
            templates[c] += rng.choice([-1.0, 1.0]) * np.exp(
                -((grid[:, None] - cy) ** 2 + (grid[None, :] - cx) ** 2) / (2 * width ** 2))

    def draw(n):
        labels = rng.integers(0, 10, size=n)
        dy, dx = rng.integers(0, 5, size=(2, n))
        images = np.stack([templates[c, y:y + s, x:x + s] for c, y, x in zip(labels, dy, dx)])
        images = images + 0.5 * rng.standard_normal(images.shape)
        return images[:, None].astype(np.float32), labels.astype(np.int64)

    return draw(args.train), draw(args.test)


def epoch_batches(args, epoch: int):
    import numpy as np

    order = np.random.default_rng([args.seed, epoch]).permutation(args.train)
    return [order[i:i + args.batch] for i in range(0, args.train, args.batch)]


# --- npdeq -----------------------------------------------------------------------------------

def npdeq_model(args, gradient: str):
    import numpy as np

    import npdeq
    from npdeq import nn
    from npdeq.autodiff import avg_pool2d, flatten, relu

    c = args.channels

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng([args.seed, 1])
            f32 = dict(dtype=np.float32)
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False, **f32)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False, **f32)
            for conv in (self.conv1, self.conv2):  # the tutorial's N(0, 0.01) initialisation
                conv.weight = nn.Parameter(
                    (0.01 * rng.standard_normal(conv.weight.shape)).astype(np.float32))
            self.norm1 = nn.GroupNorm(args.groups, c, **f32)
            self.norm2 = nn.GroupNorm(args.groups, c, **f32)
            self.norm3 = nn.GroupNorm(args.groups, c, **f32)

        def forward(self, z, u):
            y = self.norm1(relu(self.conv1(z)))
            return self.norm3(relu(z + self.norm2(u + self.conv2(y))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inject = nn.Conv2d(1, c, 3, padding=1, seed=args.seed, dtype=np.float32)
            self.block = Block()
            npdeq.apply_norm(self.block, "weight_norm")
            self.head = nn.Linear(c * (args.size // 4) ** 2, 10, seed=args.seed + 2,
                                  dtype=np.float32)
            fallback = ({"b_fallback": None} if args.b_fallback == "none" and gradient == "ift"
                        and args.b_solver != "gmres" else {})
            self.deq = npdeq.get_deq(**deq_settings(args, gradient), **fallback)

        def forward(self, x):
            u = self.inject(x)
            z0 = np.zeros((x.shape[0], c, args.size, args.size), np.float32)
            z_out, info = self.deq(lambda z: self.block(z, u), z0)
            return self.head(flatten(avg_pool2d(z_out[-1], 4), 1)), info

    return Net()


class NpdeqRunner:
    name = "npdeq"

    def __init__(self, args, gradient):
        import npdeq

        self.npdeq = npdeq
        self.model = npdeq_model(args, gradient)
        self.optimizer = npdeq.optim.Adam(self.model.parameters(), lr=args.lr)

    def state(self) -> dict:
        import numpy as np

        return {k: np.asarray(v.data) for k, v in self.model.named_parameters()}

    def step(self, x, y):
        from npdeq.autodiff import cross_entropy

        self.npdeq.reset_norm(self.model)
        logits, info = self.model(self.npdeq.Tensor(x))
        loss = cross_entropy(logits, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.item()), float(info["nstep"].mean())

    def accuracy(self, x, y) -> float:
        with self.npdeq.no_grad():
            self.npdeq.reset_norm(self.model)
            logits, _ = self.model(self.npdeq.Tensor(x))
        return float((logits.data.argmax(axis=1) == y).mean())


# --- TorchDEQ --------------------------------------------------------------------------------

class TorchRunner:
    name = "torchdeq"

    def __init__(self, args, gradient, state: dict):
        import torch
        import torch.nn.functional as F
        from torchdeq import get_deq
        from torchdeq.norm import apply_norm, reset_norm

        torch.set_num_threads(args.threads)
        self.torch, self.F, self.reset_norm = torch, F, reset_norm
        c, size = args.channels, args.size

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
                self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
                self.norm1 = torch.nn.GroupNorm(args.groups, c)
                self.norm2 = torch.nn.GroupNorm(args.groups, c)
                self.norm3 = torch.nn.GroupNorm(args.groups, c)

            def forward(self, z, u):
                y = self.norm1(F.relu(self.conv1(z)))
                return self.norm3(F.relu(z + self.norm2(u + self.conv2(y))))

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inject = torch.nn.Conv2d(1, c, 3, padding=1)
                self.block = Block()
                apply_norm(self.block, "weight_norm")
                self.head = torch.nn.Linear(c * (size // 4) ** 2, 10)
                self.deq = get_deq(**deq_settings(args, gradient))

            def forward(self, x):
                u = self.inject(x)
                z0 = torch.zeros(x.shape[0], c, size, size)
                z_out, info = self.deq(lambda z: self.block(z, u), z0)
                pooled = F.avg_pool2d(z_out[-1], 4)
                return self.head(pooled.flatten(1)), info

        self.model = Net()
        own = dict(self.model.named_parameters())
        if sorted(own) != sorted(state):
            raise RuntimeError(f"parameter names differ: npdeq {sorted(state)}, "
                               f"torch {sorted(own)}")
        with torch.no_grad():
            for name, value in state.items():
                if tuple(own[name].shape) != value.shape:
                    raise RuntimeError(f"{name}: torch shape {tuple(own[name].shape)}, "
                                       f"npdeq {value.shape}")
                own[name].copy_(torch.from_numpy(value))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)

    def step(self, x, y):
        torch = self.torch
        self.reset_norm(self.model)
        logits, info = self.model(torch.from_numpy(x))
        loss = self.F.cross_entropy(logits, torch.from_numpy(y))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.item()), float(info["nstep"].float().mean())

    def accuracy(self, x, y) -> float:
        torch = self.torch
        with torch.no_grad():
            self.reset_norm(self.model)
            logits, _ = self.model(torch.from_numpy(x))
        return float((logits.argmax(dim=1).numpy() == y).mean())


# --- the run ---------------------------------------------------------------------------------

def run_epoch(runner, args, epoch, x, y):
    """Train one epoch; returns (wall s, process CPU s, losses, forward iterations)."""
    losses, iters = [], []
    start, cpu = time.perf_counter(), time.process_time()
    for index in epoch_batches(args, epoch):
        loss, nstep = runner.step(x[index], y[index])
        losses.append(loss)
        iters.append(nstep)
    return time.perf_counter() - start, time.process_time() - cpu, losses, iters


def main(argv=None) -> dict:
    """Train every (gradient, library) configuration; print and return the results."""
    args = parse(argv)
    import numpy as np

    import npdeq

    if args.reuse_freed_memory:
        npdeq.reuse_freed_memory()
    (x_train, y_train), (x_test, y_test) = make_data(args)
    runners = {}
    for gradient in args.gradients:
        base = NpdeqRunner(args, gradient)
        state = base.state()
        if "npdeq" in args.libraries:
            runners[gradient, "npdeq"] = base
        if "torchdeq" in args.libraries:
            runners[gradient, "torchdeq"] = TorchRunner(args, gradient, state)
    print(f"conv DEQ classifier: C={args.channels}, {args.size}x{args.size}, "
          f"groups={args.groups}, batch {args.batch}, {args.train} training images, "
          f"{args.epochs} epoch(s), threads {args.threads}, IFT backward {args.b_solver} "
          f"(fallback {args.b_fallback}), "
          f"freed memory {'reused' if args.reuse_freed_memory else 'given back'}, "
          f"npdeq {npdeq.__version__}, "
          f"NumPy {np.__version__}" + (f", torch {sys.modules['torch'].__version__}"
                                       if "torch" in sys.modules else ""))
    results = {key: {"seconds": [], "cpu": [], "first_loss": None, "iters": []}
               for key in runners}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(args.epochs):
            for key, runner in runners.items():  # libraries interleaved epoch by epoch
                seconds, cpu, losses, iters = run_epoch(runner, args, epoch, x_train, y_train)
                r = results[key]
                r["seconds"].append(seconds)
                r["cpu"].append(cpu)
                r["iters"] = iters
                r["last_loss"] = float(np.mean(losses))
                if r["first_loss"] is None:
                    r["first_loss"] = losses[0]
                print(f"  epoch {epoch + 1}, {key[0]}, {key[1]}: {seconds:.2f} s "
                      f"({cpu:.2f} s CPU), mean loss {r['last_loss']:.4f}", flush=True)
        for key, runner in runners.items():
            results[key]["accuracy"] = runner.accuracy(x_test, y_test)

    print(f"{'gradient':<9} {'library':<9} {'epoch s (min)':>13} {'CPU s (min)':>11} "
          f"{'epochs s':>22} {'f iters':>8} {'1st loss':>9} {'last loss':>9} {'test acc':>8}")
    for (gradient, library), r in results.items():
        spread = " ".join(f"{s:.2f}" for s in r["seconds"])
        print(f"{gradient:<9} {library:<9} {min(r['seconds']):>13.2f} {min(r['cpu']):>11.2f} "
              f"{spread:>22} {np.mean(r['iters']):>8.1f} {r['first_loss']:>9.5f} "
              f"{r['last_loss']:>9.4f} {r['accuracy']:>8.3f}")
    for gradient in args.gradients:
        ours, theirs = results.get((gradient, "npdeq")), results.get((gradient, "torchdeq"))
        if ours and theirs:
            print(f"{gradient}: npdeq / TorchDEQ epoch time "
                  f"{min(ours['seconds']) / min(theirs['seconds']):.2f}x (CPU time "
                  f"{min(ours['cpu']) / min(theirs['cpu']):.2f}x); first-batch loss "
                  f"difference {abs(ours['first_loss'] - theirs['first_loss']):.2e}")
    return results


if __name__ == "__main__":
    threads = "2"
    if "--threads" in sys.argv:
        threads = sys.argv[sys.argv.index("--threads") + 1]
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = threads
    main()
