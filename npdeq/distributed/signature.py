"""Do all ranks hold the same model? A small signature (names, shapes, dtypes) is compared
across ranks before the first broadcast or gradient reduction, so ranks that disagree get a
clear error instead of a hang or a sum of unrelated numbers.

Only a 16-byte hash travels in the common case; the full lists are gathered to describe the
difference only when the hashes differ. Every rank raises the same error.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

from npdeq.distributed.packing import dtype_key

__all__ = ["ModelMismatchError", "signature", "signature_hash", "check_same", "describe_mismatch"]

Entry = tuple[str, tuple[int, ...], str]


class ModelMismatchError(ValueError):
    """Ranks hold models (or parameter lists) of different names, shapes or dtypes."""


def signature(named_arrays: Iterable[tuple[str, Any]]) -> list[Entry]:
    """``[(name, shape, dtype name), ...]`` of ``(name, array-like)`` pairs, in order.

    Example:
        >>> import numpy as np
        >>> signature([("w", np.zeros((2, 3))), ("n", np.zeros(1, dtype=np.int64))])
        [('w', (2, 3), 'float64'), ('n', (1,), 'int64')]
    """
    out = []
    for name, a in named_arrays:
        data = getattr(a, "data", a) if not hasattr(a, "dtype") else a
        out.append((str(name), tuple(int(n) for n in data.shape), dtype_key(data.dtype)))
    return out


def signature_hash(entries: Sequence[Entry]) -> str:
    """A short digest of a signature (equal signatures, equal digests)."""
    return hashlib.blake2b(repr(list(entries)).encode(), digest_size=16).hexdigest()


def describe_mismatch(signatures: Sequence[Sequence[Entry]], what: str = "the model") -> str:
    """One message naming the first rank that differs from rank 0 and how.

    Example:
        >>> a = [("w", (2, 2), "float64")]
        >>> print(describe_mismatch([a, [("w", (3, 2), "float64")]]))
        ranks disagree on the model: rank 1 has 'w' of shape (3, 2) and dtype float64, rank 0
        has shape (2, 2) and dtype float64
    """
    reference = list(signatures[0])
    for rank, entries in enumerate(signatures[1:], start=1):
        entries = list(entries)
        if entries == reference:
            continue
        head = f"ranks disagree on {what}: rank {rank}"
        ours = {name: (shape, dtype) for name, shape, dtype in reference}
        theirs = {name: (shape, dtype) for name, shape, dtype in entries}
        extra = [n for n in theirs if n not in ours]
        missing = [n for n in ours if n not in theirs]
        if extra or missing:
            parts = []
            if extra:
                parts.append(f"has {', '.join(map(repr, extra[:5]))} which rank 0 lacks")
            if missing:
                parts.append(f"lacks {', '.join(map(repr, missing[:5]))} which rank 0 has")
            return f"{head} {' and '.join(parts)}"
        for name, (shape, dtype) in theirs.items():
            if ours[name] != (shape, dtype):
                return (f"{head} has {name!r} of shape {shape} and dtype {dtype}, rank 0 has "
                        f"shape {ours[name][0]} and dtype {ours[name][1]}")
        return f"{head} holds the same entries as rank 0 in another order"
    return f"ranks agree on {what}"


def check_same(comm: Any, entries: Sequence[Entry], what: str = "the model") -> None:
    """Raise :class:`ModelMismatchError` on every rank unless all ranks passed equal entries.

    A collective: every rank of ``comm`` (a :class:`~npdeq.distributed.Communicator`) calls it.
    """
    digests = comm.allgather(signature_hash(entries))
    if len(set(digests)) == 1:
        return
    raise ModelMismatchError(describe_mismatch(comm.allgather(list(entries)), what))
