"""Work arrays reused across calls by the convolution kernels.

A solver calls the same convolution at every iteration, and a fresh megabyte-sized NumPy
array costs a page fault per 4 KiB page on first touch, which can cost more than the
products themselves. So on NumPy the kernels take their internal work arrays from a small
per-thread cache keyed by (slot, shape, dtype); results always leave as fresh arrays. Other
namespaces get plain new arrays (CuPy has its own memory pool).

Used only inside :mod:`npdeq.backend`.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from npdeq.backend.namespace import device, is_cupy, is_numpy

__all__: list[str] = []  # package-internal helpers, not re-exported by npdeq.backend

# Per thread, bounded in count and bytes (least recently used dropped first); a buffer over
# the byte bound is not kept at all.
_WORKSPACE = threading.local()
ENTRIES = 32
BYTES = 256 * 2**20


def library(xp: Any) -> Any:
    """NumPy or CuPy itself for their namespaces (in-place ``out=`` products and adds), else
    None (the portable path)."""
    if is_numpy(xp):
        return np
    if is_cupy(xp):
        return importlib.import_module("cupy")
    return None


def work_array(xp: Any, lib: Any, slot: str, shape: tuple, like: Any, zero: bool,
               dtype: Any = None) -> Any:
    """An internal work array of ``shape`` and ``dtype`` (default ``like``'s) on ``like``'s
    device, zero-filled if ``zero``; on NumPy the one kept for ``(slot, shape, dtype)`` since
    the last call.

    The caller must not let it escape: the next call with the same key gets the same memory.
    """
    dtype = like.dtype if dtype is None else dtype
    if lib is not np:
        make = xp.zeros if zero else xp.empty
        return make(shape, dtype=dtype, device=device(like))
    cache = getattr(_WORKSPACE, "buffers", None)
    if cache is None:
        cache = _WORKSPACE.buffers = OrderedDict()
    key = (slot, shape, np.dtype(dtype))
    buf = cache.pop(key, None)
    if buf is None:
        buf = np.empty(shape, dtype=dtype)
        while cache and (len(cache) >= ENTRIES or buf.nbytes + sum(
                b.nbytes for b in cache.values()) > BYTES):
            cache.popitem(last=False)
    if buf.nbytes <= BYTES:
        cache[key] = buf
    if zero:
        buf.fill(0)
    return buf


def fresh(lib: Any, a: Any) -> Any:
    """A result as a new C-contiguous array (never a view of a work array)."""
    return a if lib is None else lib.array(a, order="C", copy=True)
