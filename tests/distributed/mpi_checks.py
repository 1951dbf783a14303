"""Run under ``mpiexec -n 2``: every multi-process check of npdeq.distributed in one launch
(each launch costs a second or more of imports). Prints ``ok NAME`` per check on rank 0 and
``ALL OK`` at the end; a failing check aborts the job naming the rank."""

from __future__ import annotations

import sys
import warnings

import array_api_strict
import numpy as np
from mpi4py import MPI

import npdeq
from npdeq import nn, optim
from npdeq.autodiff import Tensor, cross_entropy, tanh
from npdeq.core import get_deq
from npdeq.distributed import (DistributedOptimizer, DistributedSampler, ModelMismatchError,
                               SolverStatistics, abort_on_exception, broadcast_optimizer_state,
                               broadcast_parameters, create_communicator, rank_seed,
                               reduce_scalars)
from npdeq.dropout import VariationalDropout

comm = create_communicator()
RANK, SIZE = comm.rank, comm.size
assert SIZE == 2, SIZE


def ok(name):
    if RANK == 0:
        print("ok", name, flush=True)


class Net(nn.Module):
    """A small MLP-DEQ, optionally with variational dropout inside f."""

    def __init__(self, config, hidden=12, dropout=0.0, seed=0):
        super().__init__()
        self.hidden = hidden
        self.injection = nn.Linear(8, hidden, seed=seed)
        self.mixing = nn.Linear(hidden, hidden, bias=False, seed=seed + 1)
        self.head = nn.Linear(hidden, 3, seed=seed + 2)
        self.drop = VariationalDropout(dropout) if dropout else None
        self.deq = get_deq(**config)

    def forward(self, x):
        u = self.injection(Tensor(x))
        z0 = np.zeros((x.shape[0], self.hidden))

        def f(z):
            h = self.mixing(z)
            return tanh((self.drop(h) if self.drop is not None else h) + u)

        z, info = self.deq(f, z0)
        return self.head(z[-1]), info


CONFIGS = {
    "ift": dict(core="indexing", f_solver="anderson", f_max_iter=40, f_tol=1e-12, ift=True,
                b_solver="anderson", b_max_iter=40, b_tol=1e-12),
    "phantom": dict(core="indexing", f_solver="anderson", f_max_iter=40, f_tol=1e-12,
                    ift=False, grad=3, tau=0.8),
}
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 8))
Y = rng.integers(0, 3, size=64)


def build(config, dropout=0.0):
    model = Net(CONFIGS[config], dropout=dropout)
    nn.manual_seed(0)
    npdeq.norm.apply_norm(model, "weight_norm", filter_out=["head", "injection"])
    return model


def train(model, opt, batches):
    for index in batches:
        npdeq.reset_deq(model)
        logits, _ = model(X[index])
        loss = cross_entropy(logits, Y[index])
        opt.zero_grad()
        loss.backward()
        opt.step()


def state(model):
    return {k: np.asarray(v) for k, v in model.state_dict().items()}


def check_equivalence(config, steps=3, b=4):
    """k steps on 2 ranks with batch b each == 1 process with batch 2b (same samples)."""
    sampler = DistributedSampler(64, comm=comm, seed=3)
    model = build(config)
    if RANK == 1:  # a different start: broadcast_parameters must fix it
        model.head.weight.data = model.head.weight.data + 1.0
    broadcast_parameters(model, comm)
    opt = DistributedOptimizer(optim.AdamW(model.parameters(), lr=1e-2), comm,
                               named_parameters=model.named_parameters())
    train(model, opt, list(sampler.batches(b))[:steps])
    reference = build(config)
    order = sampler.permutation()
    plain = optim.AdamW(reference.parameters(), lr=1e-2)
    train(reference, plain, [order[i * 2 * b:(i + 1) * 2 * b] for i in range(steps)])
    got, want = state(model), state(reference)
    for name in want:
        scale = np.abs(want[name]).max() + 1e-300
        error = np.abs(got[name] - want[name]).max() / scale
        assert error < 1e-10, (config, name, error)
    # and the two ranks hold bit-identical parameters
    gathered = comm.allgather(got)
    for name in got:
        assert np.array_equal(gathered[0][name], gathered[1][name]), name
    ok(f"equivalence {config}")


def check_dropout():
    """Masks differ across ranks, are reproducible from the seed, parameters stay in sync."""
    masks = []
    for _ in range(2):
        model = build("phantom", dropout=0.3)
        broadcast_parameters(model, comm)
        nn.manual_seed(rank_seed(7, RANK))
        npdeq.reset_deq(model)
        model(X[:4])
        masks.append(np.asarray(model.drop.mask))
    assert np.array_equal(masks[0], masks[1])
    other = comm.allgather(masks[0])[1 - RANK]
    assert not np.array_equal(masks[0], other)
    opt = DistributedOptimizer(optim.AdamW(model.parameters(), lr=1e-2), comm)
    train(model, opt, [np.arange(RANK * 4, RANK * 4 + 4)] * 2)
    gathered = comm.allgather(state(model))
    assert all(np.array_equal(gathered[0][k], gathered[1][k]) for k in gathered[0])
    ok("dropout")


def check_allreduce():
    arrays = [np.full((2, 3), RANK + 1.0), np.arange(4, dtype=np.float32) * (RANK + 1),
              np.array([RANK + 5], dtype=np.int64), np.array([1 + 2j * RANK]),
              np.asarray(float(RANK)), np.zeros(0)]
    before = [a.copy() for a in arrays]
    total = comm.allreduce_arrays(arrays, op="sum")
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before))  # inputs untouched
    assert np.array_equal(total[0], np.full((2, 3), 3.0))
    assert total[1].dtype == np.float32 and np.array_equal(total[1], np.arange(4) * 3)
    assert total[2].dtype == np.int64 and total[2].tolist() == [11]
    assert total[3].tolist() == [2 + 2j] and total[4].shape == () and float(total[4]) == 1
    assert total[5].shape == (0,)
    mean = comm.allreduce_arrays([np.full(3, RANK * 2.0, dtype=np.float32)], "mean")[0]
    assert mean.dtype == np.float32 and mean.tolist() == [1.0, 1.0, 1.0]
    assert comm.allreduce(np.array([RANK, -RANK]), "max").tolist() == [1, 0]
    assert comm.allreduce(np.array([RANK, -RANK]), "min").tolist() == [0, -1]
    assert comm.allreduce_arrays([]) == []
    assert comm.allreduce(RANK + 1) == 3 and comm.allreduce(RANK + 1, "mean") == 1.5
    # array_api_strict arrays travel through the host and come back strict, on their device
    device = array_api_strict.Device("device1")
    strict = array_api_strict.asarray([1.0 + RANK, 2.0], device=device)
    assert comm.backend_for(strict) == "host"
    out = comm.allreduce(strict, "sum")
    assert out.device == device and np.asarray(out._array).tolist() == [3.0, 4.0]
    # broadcasts of arrays and objects
    assert comm.bcast(np.full(2, float(RANK)), root=1).tolist() == [1.0, 1.0]
    assert comm.bcast({"rank": RANK}, root=0) == {"rank": 0}
    ok("allreduce")


def check_missing_grads():
    """p0 has a gradient on both ranks, p1 on rank 0 only, p2 nowhere: no hang, same step."""
    params = [nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2, dtype=np.float32)),
              nn.Parameter(np.ones(4))]
    opt = DistributedOptimizer(optim.SGD(params, lr=1.0), comm)
    params[0].grad = Tensor(np.full(3, RANK + 1.0))
    params[1].grad = Tensor(np.full(2, 4.0, dtype=np.float32)) if RANK == 0 else None
    opt.synchronize()
    assert params[0].grad.data.tolist() == [1.5] * 3
    assert params[1].grad.data.dtype == np.float32 and params[1].grad.data.tolist() == [2.0] * 2
    assert params[2].grad is None
    opt.step()
    assert params[2].data.tolist() == [1.0] * 4
    # an empty gradient list: every parameter without a gradient anywhere
    opt.zero_grad()
    opt.step()
    assert all(p.grad is None for p in params)
    ok("missing gradients")


def check_statistics():
    stats = SolverStatistics()
    stats.add({"nstep": np.array([2, 4]) + RANK * 4, "converged": np.array([True, RANK == 0]),
               "abs_lowest": np.array([1e-6, 1e-3 * (RANK + 1)]),
               "backward": {"nstep": np.array([RANK + 1.0, RANK + 1.0])}})
    out = stats.reduce(comm)
    assert out["forward_iterations"] == 5.0 and out["backward_iterations"] == 1.5
    assert out["converged_fraction"] == 0.75 and out["largest_residual"] == 2e-3
    assert out["samples"] == 4
    # evaluation: correct predictions summed across ranks' shards
    assert reduce_scalars(comm, {"correct": 10 + RANK, "seen": 20}) == {"correct": 21,
                                                                        "seen": 40}
    ok("statistics")


def check_broadcast_buffers():
    """Spectral-norm vectors (buffers) and the optimizer state travel from rank 0."""
    model = Net(CONFIGS["ift"])
    npdeq.norm.apply_norm(model, "spectral_norm", filter_out=["head", "injection"],
                          seed=RANK)
    assert any("_u" in name for name in model.state_dict())
    broadcast_parameters(model, comm)
    gathered = comm.allgather(state(model))
    assert all(np.array_equal(gathered[0][k], gathered[1][k]) for k in gathered[0])
    params = [nn.Parameter(np.ones(2))]
    opt = optim.Adam(params, lr=0.1)
    if RANK == 0:
        params[0].grad = np.ones(2)
        opt.step()
    broadcast_optimizer_state(opt, comm)
    assert opt.state_dict()["state"][0]["step"] == 1
    ok("broadcast buffers")


def check_mismatch():
    model = Net(CONFIGS["ift"], hidden=12 if RANK == 0 else 10)
    try:
        broadcast_parameters(model, comm)
    except ModelMismatchError as exc:
        assert "rank 1" in str(exc) and "injection.weight" in str(exc), exc
    else:
        raise AssertionError("no ModelMismatchError")
    params = [nn.Parameter(np.ones(3 + RANK))]
    opt = DistributedOptimizer(optim.SGD(params, lr=1.0), comm)
    params[0].grad = np.ones(3 + RANK)
    try:
        opt.step()
    except ModelMismatchError as exc:
        assert "shape (4,)" in str(exc), exc
    else:
        raise AssertionError("no ModelMismatchError at the first step")
    ok("mismatch")


with abort_on_exception(comm), warnings.catch_warnings():
    warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
    checks = sys.argv[1:] or ["allreduce", "missing", "statistics", "buffers", "mismatch",
                              "ift", "phantom", "dropout"]
    for name in checks:
        {"allreduce": check_allreduce, "missing": check_missing_grads,
         "statistics": check_statistics, "buffers": check_broadcast_buffers,
         "mismatch": check_mismatch, "dropout": check_dropout,
         "ift": lambda: check_equivalence("ift"),
         "phantom": lambda: check_equivalence("phantom")}[name]()
    comm.barrier()
    ok("ALL")
