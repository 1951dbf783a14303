"""Sharding the data: every rank draws the same seeded permutation of the samples each epoch
and takes its own share (PyTorch's ``DistributedSampler``), and per-rank seeds for what must
differ between ranks (dropout masks) yet be reproducible.

The permutation depends only on ``(seed, epoch)``, never on the rank or the number of ranks'
timing, so every rank computes the same one without communicating. Rank ``r`` of ``R`` takes
positions ``r, r + R, r + 2R, ...``: its ``k``-th batch of ``b`` and the other ranks' ``k``-th
batches together are positions ``kbR`` to ``(k+1)bR`` of the permutation, the ``k``-th batch of
``bR`` in one process.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator

from npdeq import backend
from npdeq.backend import Array
from npdeq.backend.checks import check_bool, check_int

__all__ = ["DistributedSampler", "mix_seed", "rank_seed"]


def mix_seed(*values: int) -> int:
    """A 63-bit seed from several integers (a hash, so nearby inputs give unrelated seeds).

    Example:
        >>> mix_seed(0, 1) == mix_seed(0, 1) != mix_seed(1, 0)
        True
    """
    text = ",".join(str(int(v)) for v in values)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def rank_seed(seed: int, rank: int) -> int:
    """The seed rank ``rank`` should give ``npdeq.nn.manual_seed`` (or a dropout layer) so its
    random draws (variational-dropout masks) differ from the other ranks' and are the same
    on every run with ``seed``.

    Example:
        >>> rank_seed(0, 0) != rank_seed(0, 1)
        True
    """
    return mix_seed(check_int("seed", seed, 0), check_int("rank", rank, 0), 0x5EED)


class DistributedSampler:
    """This rank's sample indices for each epoch.

    Args:
        length: the number of samples, >= 1.
        num_replicas: the number of ranks (default ``comm.size``).
        rank: this rank (default ``comm.rank``).
        comm: a :class:`~npdeq.distributed.Communicator` to take both from.
        shuffle: a new permutation each epoch (``False``: ``0, 1, ...``).
        seed: the permutation's seed, the same on every rank.
        drop_last: how to make the samples divide evenly: ``False`` (the default, as
            PyTorch) pads the permutation with its own first entries, so a few samples are
            seen twice per epoch; ``True`` drops the last ``length % num_replicas``.
            Either way every rank gets the same count, so every rank runs the same number
            of steps (a rank with one step more would wait forever in its collective).

    Raises:
        ValueError: a bad argument, named.

    Example:
        >>> s = DistributedSampler(10, num_replicas=3, rank=1, shuffle=False)
        >>> list(s), len(s)
        ([1, 4, 7, 0], 4)
        >>> [b.tolist() for b in s.batches(3)]
        [[1, 4, 7], [0]]
    """

    def __init__(self, length: int, num_replicas: int | None = None, rank: int | None = None,
                 *, comm: Any = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        if comm is not None:
            num_replicas = comm.size if num_replicas is None else num_replicas
            rank = comm.rank if rank is None else rank
        if num_replicas is None or rank is None:
            raise ValueError("DistributedSampler needs num_replicas and rank, or comm")
        self.length = check_int("length", length, 1, owner="DistributedSampler")
        self.num_replicas = check_int("num_replicas", num_replicas, 1,
                                      owner="DistributedSampler")
        self.rank = check_int("rank", rank, 0, owner="DistributedSampler")
        if self.rank >= self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must be from 0 to "
                             f"{self.num_replicas - 1} (num_replicas - 1), got {rank!r}")
        self.shuffle = check_bool("shuffle", shuffle, owner="DistributedSampler")
        self.drop_last = check_bool("drop_last", drop_last, owner="DistributedSampler")
        self.seed = check_int("seed", seed, 0, owner="DistributedSampler")
        self.epoch = 0
        if self.drop_last and self.length < self.num_replicas:
            raise ValueError(f"DistributedSampler: drop_last=True with {self.length} samples "
                             f"and {self.num_replicas} ranks leaves no sample to any rank")
        if self.drop_last:
            self.total = self.length - self.length % self.num_replicas
        else:
            self.total = -(-self.length // self.num_replicas) * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation (call it at the start of every epoch, on every
        rank, as with PyTorch's sampler)."""
        self.epoch = check_int("epoch", epoch, 0, owner="DistributedSampler.set_epoch")

    def __len__(self) -> int:
        """This rank's samples per epoch (the same on every rank)."""
        return self.total // self.num_replicas

    def permutation(self) -> Array:
        """The epoch's order of all ``total`` positions (padded or cut), the same on every
        rank, as a host integer array."""
        xp = backend.default_namespace()
        if self.shuffle:
            order = xp.asarray(backend.make_generator(mix_seed(self.seed, self.epoch))
                               .permutation(self.length))
        else:
            order = xp.arange(self.length)
        if self.total <= self.length:
            return order[:self.total]
        parts, missing = [order], self.total - self.length
        while missing > 0:  # more ranks than samples: the padding repeats the order
            parts.append(order[:missing])
            missing -= parts[-1].shape[0]
        return xp.concat(parts)

    def indices(self) -> Array:
        """This rank's indices for the epoch, in order (a host integer array)."""
        return self.permutation()[self.rank:self.total:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def batches(self, batch_size: int) -> Iterator[Array]:
        """This rank's indices in chunks of ``batch_size`` (the last one may be smaller, by
        the same amount on every rank)."""
        batch_size = check_int("batch_size", batch_size, 1, owner="DistributedSampler.batches")
        mine = self.indices()
        for start in range(0, mine.shape[0], batch_size):
            yield mine[start:start + batch_size]
