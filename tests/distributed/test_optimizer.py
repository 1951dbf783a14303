"""DistributedOptimizer and the broadcasts in one process, and their errors (mismatched
ranks played by a fake communicator)."""

import numpy as np
import pytest

from npdeq import nn, optim
from npdeq.distributed import (DistributedOptimizer, ModelMismatchError,
                               broadcast_optimizer_state, broadcast_parameters)
from npdeq.distributed.signature import signature, signature_hash


def test_one_rank_steps_exactly_as_the_wrapped_optimizer(comm):
    a, b = nn.Linear(3, 2, seed=0), nn.Linear(3, 2, seed=0)
    opt_a = DistributedOptimizer(optim.AdamW(a.parameters(), lr=0.1), comm,
                                 named_parameters=a.named_parameters())
    opt_b = optim.AdamW(b.parameters(), lr=0.1)
    schedule = optim.CosineAnnealingLR(opt_a, T_max=4)
    for step in range(3):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model.weight.grad = np.full((2, 3), step + 1.0)  # bias: no gradient
            opt.step()
        schedule.step()
        opt_b.param_groups[0]["lr"] = opt_a.param_groups[0]["lr"]
    assert np.array_equal(a.weight.data, b.weight.data)
    assert np.array_equal(a.bias.data, b.bias.data) and a.bias.grad is None
    assert opt_a.state_dict()["state"].keys() == opt_b.state_dict()["state"].keys()
    assert opt_a.state is opt_a.optimizer.state and "size=1" in repr(opt_a)


def test_gradients_are_cast_to_the_parameter_dtype(comm):
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    opt = DistributedOptimizer(optim.SGD([p], lr=1.0), comm)
    p.grad = np.ones(2)
    opt.synchronize()
    assert p.grad.data.dtype == np.float32


def test_bad_arguments(comm):
    p = nn.Parameter(np.ones(2))
    with pytest.raises(TypeError, match="npdeq.optim.Optimizer"):
        DistributedOptimizer([p], comm)
    with pytest.raises(TypeError, match="Communicator"):
        DistributedOptimizer(optim.SGD([p], lr=1.0), object())
    with pytest.raises(ValueError, match="op must be"):
        DistributedOptimizer(optim.SGD([p], lr=1.0), comm, op="max")
    opt = DistributedOptimizer(optim.SGD([p], lr=1.0), comm)
    with pytest.raises(TypeError, match="not already"):
        DistributedOptimizer(opt, comm)
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match="has shape"):
        opt.step()
    with pytest.raises(TypeError, match="Parameter"):
        broadcast_parameters({"w": np.ones(2)}, comm)
    with pytest.raises(TypeError, match="Optimizer"):
        broadcast_optimizer_state(object(), comm)


def test_broadcast_in_one_process_changes_nothing(comm):
    model = nn.Linear(2, 2, seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    broadcast_parameters(model, comm)
    broadcast_parameters(model.named_parameters(), comm)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    opt = optim.Adam(model.parameters(), lr=0.1)
    broadcast_optimizer_state(opt, comm)


def test_mismatched_models_raise_on_every_rank(fake_comm):
    model = nn.Linear(2, 3, seed=0)
    theirs = signature([("weight", np.zeros((3, 3))), ("bias", np.zeros(3))])
    comm = fake_comm(rank=0, size=2, others={1: [signature_hash(theirs), theirs]})
    with pytest.raises(ModelMismatchError,
                       match=r"rank 1 has 'weight' of shape \(3, 3\).*rank 0 has shape \(3, 2\)"):
        broadcast_parameters(model, comm)
