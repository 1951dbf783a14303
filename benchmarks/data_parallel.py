"""Data-parallel DEQ training over MPI (npdeq.distributed): the digits demo on 1 and N ranks,
and the cost of the gradient allreduce against the number of parameters.

Part 1, the demo (``npdeq demo``'s MLP-DEQ: weight norm, Anderson forward, IFT backward,
AdamW, global batch 64, float64) trained for ``--epochs`` epochs in one process and on each
rank count of ``--ranks``; for each: seconds per epoch (training only, the slowest rank,
the fastest epoch), seconds per step, seconds per step spent in the gradient allreduce
(``DistributedOptimizer.synchronize``: packing, the collective and the presence flags), test
accuracy, and the scaling efficiency ``t(1 process) / (N * t(N ranks))`` of an epoch (strong
scaling: the same global batch, each rank ``64 / N`` samples per step). Beside each N: the
step time of one process on a batch of ``64 / N``, what N ranks would reach if communication
were free (a small DEQ's step costs about as much per solver iteration at 32 samples as at
64, so it bounds the speed-up).

Part 2, the allreduce alone on ``max(--ranks)`` ranks: ``Communicator.allreduce_arrays`` of
10 float64 arrays totalling P parameters (one flat buffer, one collective), the median of
``--repeats`` calls, and the bandwidth it reaches as NCCL counts it (bus bandwidth
``2 (N - 1) / N * bytes / seconds``).

Run from the repository root with the ``mpi`` extra installed (mpiexec next to Python):

    python benchmarks/data_parallel.py                   # 1 and 2 ranks, 3 epochs
    python benchmarks/data_parallel.py --quick           # seconds: 1 epoch of 200 images

Each configuration is a separate ``mpiexec -n N`` launch of this script with ``--worker``;
threads are pinned to 1 per rank (``OMP_NUM_THREADS`` etc.) so N ranks use N cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

SIZES = (10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[2], help="rank counts beside 1")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=None, help="training images (all)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                   help="parameter counts for the allreduce timing")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="1 epoch, 200 images, small sizes")
    p.add_argument("--worker", choices=("demo", "allreduce"), help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.train_size = 1, 200
        args.sizes, args.repeats = [10 ** 3, 10 ** 5], 3
    return args


# -- workers (run under mpiexec) -------------------------------------------------------------

def demo_worker(args: argparse.Namespace) -> dict:
    import warnings

    import numpy as np

    import npdeq
    from npdeq.distributed import DistributedOptimizer, create_communicator
    from npdeq.examples import digits
    from npdeq.examples.digits import data, training
    from npdeq.examples.digits.models import build_model

    comm = create_communicator() if args.distributed else None
    spent = {"seconds": 0.0, "calls": 0}
    synchronize = DistributedOptimizer.synchronize

    def timed(self):  # the time of each gradient reduction, on this rank
        start = time.perf_counter()
        synchronize(self)
        spent["seconds"] += time.perf_counter() - start
        spent["calls"] += 1

    DistributedOptimizer.synchronize = timed
    options = digits.parser().parse_args(["--epochs", str(args.epochs), "--no-progress"] + (
        ["--train-size", str(args.train_size)] if args.train_size else []))
    digits._check(digits.parser(), options)
    digits_data = data.load(seed=0, train_size=args.train_size)
    npdeq.nn.manual_seed(0)
    model = build_model("mlp", digits.deq_config(options), seed=0)
    npdeq.norm.apply_norm(model, "weight_norm", filter_out=["head", "injection"])
    npdeq.reset_deq(model)
    settings = training.Settings(epochs=args.epochs, batch_size=args.batch, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = training.train(model, digits_data, settings, log=lambda line: None,
                                 comm=comm)
    size = 1 if comm is None else comm.size
    n = len(digits_data.y_train)
    per_rank = -(-n // size)  # the sampler pads the permutation to a multiple of size
    steps = -(-per_rank // (args.batch // size))
    epoch = float(np.min(history.epoch_seconds))
    comm_per_step = spent["seconds"] / max(spent["calls"], 1)
    if comm is not None:  # the slowest rank's communication time
        comm_per_step = comm.allreduce(comm_per_step, "max")
    return {"ranks": size, "distributed": comm is not None, "batch": args.batch,
            "epoch_seconds": epoch,
            "steps": steps, "step_seconds": epoch / steps, "comm_seconds": comm_per_step,
            "test_accuracy": history.test_accuracy[-1],
            "parameters": sum(p.size for p in model.parameters())}


def allreduce_worker(args: argparse.Namespace) -> list:
    import numpy as np

    from npdeq.distributed import create_communicator

    comm = create_communicator()
    rows = []
    for total in args.sizes:
        parts = [np.full(total // 10 + (i < total % 10), comm.rank + 1.0) for i in range(10)]
        times = []
        for _ in range(args.repeats + 1):  # the first call warms up
            comm.barrier()
            start = time.perf_counter()
            comm.allreduce_arrays(parts, "mean")
            times.append(time.perf_counter() - start)
        seconds = comm.allreduce(float(np.median(times[1:])), "max")
        bus = 2 * (comm.size - 1) / comm.size * total * 8 / seconds
        rows.append({"parameters": total, "seconds": seconds, "bus_gbytes_per_s": bus / 1e9})
    return rows


# -- driver ----------------------------------------------------------------------------------

def launch(ranks: int, worker_args: list) -> object:
    here = os.path.abspath(__file__)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    command = [sys.executable, here, *worker_args]
    if ranks > 1 or "--distributed" in worker_args:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or "mpiexec"
        command = [mpiexec, "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    args = parse(argv)
    if args.worker:
        result = demo_worker(args) if args.worker == "demo" else allreduce_worker(args)
        rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
        if rank == 0:
            print(json.dumps(result))
        return {}
    common = ["--epochs", str(args.epochs)] + (
        ["--train-size", str(args.train_size)] if args.train_size else [])
    rows = [launch(1, ["--worker", "demo", *common])]
    rows += [launch(n, ["--worker", "demo", "--distributed", *common]) for n in args.ranks]
    # One process stepping on one rank's share (64 / N): the step time N ranks could reach
    # with free communication, which bounds their speed-up.
    alone = {n: launch(1, ["--worker", "demo", "--batch", str(64 // n), *common])
             for n in args.ranks}
    base = rows[0]["epoch_seconds"]
    print(f"digits MLP-DEQ, {rows[0]['parameters']} parameters, global batch 64, "
          f"{args.epochs} epoch(s), fastest epoch")
    print(f"{'ranks':>5} {'epoch s':>8} {'step ms':>8} {'in allreduce':>13} "
          f"{'efficiency':>10} {'test acc':>8} {'step ms, 1 process at 64/N':>27}")
    for row in rows:
        label = "1*" if not row["distributed"] else str(row["ranks"])
        efficiency = base / (row["ranks"] * row["epoch_seconds"])
        row["efficiency"] = efficiency
        comm_ms = f"{1e3 * row['comm_seconds']:.2f}" if row["distributed"] else "-"
        bound = f"{1e3 * alone[row['ranks']]['step_seconds']:.2f}" if row["distributed"] \
            else "-"
        print(f"{label:>5} {row['epoch_seconds']:8.3f} {1e3 * row['step_seconds']:8.2f} "
              f"{comm_ms:>13} {efficiency:10.2f} {row['test_accuracy']:8.4f} {bound:>27}")
    print("(1*: one process without MPI; 'in allreduce': ms per step inside synchronize on the "
          "slowest rank, waiting for the other ranks included)")
    ranks = max(args.ranks)
    reduce_rows = launch(ranks, ["--worker", "allreduce", "--sizes", *map(str, args.sizes),
                                 "--repeats", str(args.repeats)])
    print(f"\nallreduce_arrays (mean) of 10 float64 arrays on {ranks} ranks, median of "
          f"{args.repeats}")
    print(f"{'parameters':>11} {'ms':>9} {'bus GB/s':>9}")
    for row in reduce_rows:
        print(f"{row['parameters']:>11} {1e3 * row['seconds']:9.3f} "
              f"{row['bus_gbytes_per_s']:9.2f}")
    return {"demo": rows, "alone": alone, "allreduce": reduce_rows}


if __name__ == "__main__":
    main()
