"""Work arrays that solvers borrow for one solve and give back, so that the next solve of
the same shapes reuses them.

A fresh multi-megabyte NumPy array costs a page fault per 4 KiB page when it is first written
(the allocator hands large blocks back to the system when they are freed): for Anderson's
history on a ``(256, 512)`` float32 state, two ``(B, m, D)`` arrays, that is about 1500 faults
and several percent of a whole solve. Borrowed arrays are taken out of the per-thread pool for
the length of the solve, so a nested solve (a solver called inside ``func``) gets its own.
Only NumPy arrays are pooled (CuPy has its own memory pool; other namespaces get fresh
arrays); the pool is bounded in entries and bytes. The contents of a borrowed array are
undefined: the solvers write before they read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterator

from npdeq import backend
from npdeq.backend import Array

__all__ = ["borrowed"]

_POOL = threading.local()
_ENTRIES = 8
_BYTES = 256 * 2**20


@contextmanager
def borrowed(xp: Any, shape: tuple[int, ...], dtype: Any, device: Any,
             count: int = 1) -> Iterator[list[Array]]:
    """``count`` arrays of ``shape`` and ``dtype`` (contents undefined) for the ``with`` block.

    Example:
        >>> import numpy as np
        >>> xp = backend.array_namespace(np.zeros(1))
        >>> with borrowed(xp, (2, 3), xp.float64, "cpu", count=2) as (a, b):
        ...     a.shape, a is b
        ((2, 3), False)
    """
    if not backend.is_numpy(xp):
        yield [xp.empty(shape, dtype=dtype, device=device) for _ in range(count)]
        return
    pool = getattr(_POOL, "arrays", None)
    if pool is None:
        pool = _POOL.arrays = OrderedDict()
    arrays = [pool.pop((shape, dtype, i), None) for i in range(count)]
    arrays = [xp.empty(shape, dtype=dtype) if a is None else a for a in arrays]
    try:
        yield arrays
    finally:
        for i, a in enumerate(arrays):
            _give_back(pool, (shape, dtype, i), a)


def _give_back(pool: OrderedDict, key: tuple, array: Any) -> None:
    size = array.nbytes
    if key in pool or size > _BYTES:
        return  # a nested solve gave one back already, or too large to keep
    while pool and (len(pool) >= _ENTRIES
                    or size + sum(a.nbytes for a in pool.values()) > _BYTES):
        pool.popitem(last=False)  # least recently given back first
    pool[key] = array
