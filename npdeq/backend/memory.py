"""The C allocator's policy for freed array memory: give it back to the OS, or keep it.

NumPy allocates array data with the C library's ``malloc``. With glibc's defaults, a freed
block of a few MiB at the top of the heap, or one that was ``mmap``-ed, goes back to the
operating system at once, and the next array of that size is fresh memory that faults in
page by page (4 KiB at a time). Code that frees many arrays at the same moment and then
allocates them again pays that cost every time: a recorded forward pass (the tape keeps every
intermediate until the backward pass frees them), and each replay of a recorded VJP in the
IFT adjoint solve. On a convolutional DEQ block (batch 32, 32 channels, 16x16, float32) a
recorded evaluation of f made about 2,250 page faults and took twice as long as the same
evaluation under ``no_grad``; with freed memory kept for reuse, none and the same time.

:func:`reuse_freed_memory` asks glibc to keep freed memory (the remedy PyTorch's CPU tuning
guide gives as "use jemalloc or tcmalloc"). It changes the whole process, so npdeq never
calls it by itself: an application opts in, or sets the same policy before Python starts,
with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824``
or by preloading jemalloc or tcmalloc. The process's resident memory then stays at its peak
instead of shrinking between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["reuse_freed_memory"]

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX: 32 MiB on 64-bit systems,
# 16 MiB on 32-bit ones): arrays above it are always mapped afresh (NumPy asks for huge pages
# there, so they fault 2 MiB at a time).
_MMAP_THRESHOLD_MAX = 4 * 2**20 * ctypes.sizeof(ctypes.c_long)
# glibc's static defaults, what ``reuse_freed_memory(False)`` sets back.
_DEFAULT_THRESHOLD = 128 * 2**10


def _glibc():
    """The C library as a ctypes handle when it is glibc (it has ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None  # musl and other C libraries: no such knobs
    return libc


def reuse_freed_memory(enable: bool = True, *, keep_bytes: int = 2**30) -> bool:
    """Let the C allocator keep freed array memory for the next arrays (glibc only).

    Raises glibc's mmap threshold to its maximum (32 MiB on 64-bit systems: smaller arrays
    come from the heap)
    and its trim threshold to ``keep_bytes`` (up to that much free memory at the top of the
    heap stays with the process). Repeated recorded passes then reuse memory instead of
    faulting in fresh pages; the process keeps its peak memory. ``enable=False`` sets
    glibc's static defaults back (128 KiB each; glibc's dynamic adjustment of the thresholds,
    which any setting turns off, does not come back) and returns free heap memory to the
    system.

    Args:
        enable: keep freed memory (True) or give it back (False).
        keep_bytes: the free memory, in bytes, the heap may keep (>= 0).

    Returns:
        True when the policy was set; False where the C library is not glibc or refuses the
        setting (nothing is changed then).

    Raises:
        TypeError: ``enable`` is not a bool or ``keep_bytes`` not an int.
        ValueError: ``keep_bytes`` is negative or does not fit a C int.

    Example:
        >>> import npdeq
        >>> npdeq.reuse_freed_memory()  # doctest: +SKIP
        True
    """
    if not isinstance(enable, bool):
        raise TypeError(f"enable must be True or False, got {enable!r}")
    if isinstance(keep_bytes, bool) or not isinstance(keep_bytes, int):
        raise TypeError(f"keep_bytes must be an int, got {keep_bytes!r}")
    if not 0 <= keep_bytes < 2**31:
        raise ValueError(f"keep_bytes must be in [0, 2**31), got {keep_bytes!r}")
    libc = _glibc()
    if libc is None:
        return False
    if enable:
        # The trim threshold only once the mmap one is taken: a refusal changes nothing.
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and libc.mallopt(
            _M_TRIM_THRESHOLD, keep_bytes)
    else:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD) and ok
        libc.malloc_trim(0)
    return bool(ok)
