"""Sharding: the same permutation on every rank, disjoint equal shares, batches that add
up to one process's batches; per-rank seeds."""

import numpy as np
import pytest

from npdeq.distributed import DistributedSampler, mix_seed, rank_seed


@pytest.mark.parametrize("n, ranks, drop_last", [(10, 3, False), (10, 3, True), (8, 2, False),
                                                 (2, 5, False)])
def test_shares_cover_the_permutation_evenly(n, ranks, drop_last):
    samplers = [DistributedSampler(n, ranks, r, seed=4, drop_last=drop_last) for r in range(ranks)]
    order = samplers[0].permutation()
    assert all(np.array_equal(s.permutation(), order) for s in samplers)
    assert len({len(s) for s in samplers}) == 1
    total = len(samplers[0]) * ranks
    assert total == (n - n % ranks if drop_last else -(-n // ranks) * ranks)
    merged = np.empty(total, dtype=np.int64)
    for r, s in enumerate(samplers):
        merged[r::ranks] = s.indices()
    assert np.array_equal(merged, order)
    assert set(order.tolist()) == set(range(n)) if not drop_last else len(set(order)) == total


def test_rank_batches_together_are_the_single_process_batches():
    samplers = [DistributedSampler(20, 2, r, seed=1) for r in range(2)]
    for s in samplers:
        s.set_epoch(3)
    order = samplers[0].permutation()
    per_rank = [list(s.batches(3)) for s in samplers]
    for step, (a, b) in enumerate(zip(*per_rank)):
        assert sorted(a.tolist() + b.tolist()) == sorted(order[6 * step:6 * step + 6].tolist())


def test_epochs_and_seeds_change_the_order_reproducibly():
    s = DistributedSampler(50, 2, 0, seed=1)
    first = s.indices()
    s.set_epoch(1)
    assert not np.array_equal(first, s.indices())
    s.set_epoch(0)
    assert np.array_equal(first, s.indices())
    assert not np.array_equal(first, DistributedSampler(50, 2, 0, seed=2).indices())
    assert DistributedSampler(5, 1, 0, shuffle=False).indices().tolist() == [0, 1, 2, 3, 4]


def test_takes_rank_and_size_from_a_communicator(fake_comm):
    assert (DistributedSampler(9, comm=fake_comm(rank=1, size=3)).rank, 3) == (1, 3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(length=0, num_replicas=1, rank=0), ValueError, "length"),
    (dict(length=4, num_replicas=2, rank=2), ValueError, "rank must be from 0 to 1"),
    (dict(length=4, num_replicas=0, rank=0), ValueError, "num_replicas"),
    (dict(length=4), ValueError, "needs num_replicas and rank"),
    (dict(length=1, num_replicas=2, rank=0, drop_last=True), ValueError, "no sample"),
    (dict(length=4, num_replicas=1, rank=0, shuffle=1), TypeError, "shuffle"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DistributedSampler(**kwargs)


def test_rank_seeds_differ_and_repeat():
    assert rank_seed(0, 0) != rank_seed(0, 1) != rank_seed(1, 1)
    assert rank_seed(3, 1) == rank_seed(3, 1) and 0 <= rank_seed(3, 1) < 2 ** 63
    assert mix_seed(1, 2) != mix_seed(2, 1)
    with pytest.raises(ValueError):
        rank_seed(-1, 0)
