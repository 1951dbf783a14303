"""Counting the True entries of several boolean masks with one host read.

A solver's stopping test needs a few per-batch facts each iteration (does any sample still
need work, has every sample improved, ...). Reading each as a boolean costs one host
synchronisation apiece on a GPU; their counts packed into one integer cost one. On NumPy
nothing needs synchronising, and NumPy's own count is several times cheaper than the
namespace's wrapper on the tiny masks involved.
"""

from __future__ import annotations

import sys

import numpy as np

from npdeq.backend.namespace import Array, array_namespace

__all__ = ["count_true"]

# Counts packed in base (size + 1) stay exact in int64 up to this packed value.
_INT64_LIMIT = 2**62


def count_true(*masks: Array) -> tuple[int, ...]:
    """The numbers of True entries of boolean ``masks`` (same shape, same namespace), as
    Python ints.

    Other namespaces than NumPy pay one :func:`~npdeq.backend.to_scalar` read (the counts
    are packed into one integer), or one per mask where the packed value could overflow
    int64 (more than about 2**20 entries per mask for three masks).

    Example:
        >>> import numpy as np
        >>> count_true(np.array([True, False, True]), np.zeros(3, dtype=bool))
        (2, 0)
    """
    if type(masks[0]) is np.ndarray:
        return tuple(int(np.count_nonzero(m)) for m in masks)
    xp = array_namespace(*masks)
    # Looked up on the package so that tests counting host reads (by patching
    # ``npdeq.backend.to_scalar``) count these too.
    to_scalar = sys.modules["npdeq.backend"].to_scalar
    base = 1
    for size in masks[0].shape:
        base *= size
    base += 1
    if base ** len(masks) > _INT64_LIMIT:
        return tuple(int(to_scalar(xp.count_nonzero(m))) for m in masks)
    code = xp.count_nonzero(masks[-1])
    for m in reversed(masks[:-1]):
        code = code * base + xp.count_nonzero(m)
    code = int(to_scalar(code))
    counts = []
    for _ in masks:
        code, count = divmod(code, base)
        counts.append(count)
    return tuple(counts)
