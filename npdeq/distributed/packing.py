"""Flat buffers: many arrays of mixed shapes and dtypes packed into one 1-D buffer per dtype,
so that a step costs one collective per dtype instead of one per parameter (Horovod's
tensor fusion, ChainerMN's packed allreduce).

Pure array logic in the arrays' own namespace and on their device; no MPI here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from npdeq import backend
from npdeq.backend import Array

__all__ = ["Bucket", "pack", "unpack", "dtype_key"]


def dtype_key(dtype: Any) -> str:
    """A dtype's name as a string every library spells alike (``'float64'``, ``'int32'``)."""
    # NumPy and CuPy dtypes have a name; array_api_strict's print as 'array_api_strict.int32'.
    return str(getattr(dtype, "name", None) or dtype).rsplit(".", 1)[-1]


@dataclasses.dataclass(slots=True)
class Bucket:
    """One dtype's arrays packed end to end.

    Attributes:
        key: the dtype's name.
        positions: where each packed array stands in the caller's list.
        shapes: each packed array's shape.
        buffer: the 1-D buffer (their elements, in order), in their namespace and device.
    """

    key: str
    positions: list[int]
    shapes: list[tuple[int, ...]]
    buffer: Array


def pack(arrays: Sequence[Array]) -> list[Bucket]:
    """Group ``arrays`` by dtype and concatenate each group, flattened, into one buffer.

    Args:
        arrays: arrays of one namespace and device (any shapes, 0-d included, any dtypes).

    Returns:
        One :class:`Bucket` per dtype, in order of first appearance; an empty list for no
        arrays. The buffers are new arrays: the inputs are never written to.

    Raises:
        TypeError: arrays of several namespaces.

    Example:
        >>> import numpy as np
        >>> buckets = pack([np.ones((2, 2)), np.zeros(3, dtype=np.int32), np.full(1, 5.0)])
        >>> [(b.key, b.positions, b.buffer.shape) for b in buckets]
        [('float64', [0, 2], (5,)), ('int32', [1], (3,))]
    """
    arrays = list(arrays)
    if not arrays:
        return []
    xp = backend.check_same_namespace(arrays, "pack")
    groups: dict[str, list[int]] = {}
    for position, a in enumerate(arrays):
        groups.setdefault(dtype_key(a.dtype), []).append(position)
    buckets = []
    for key, positions in groups.items():
        flat = [xp.reshape(arrays[i], (-1,)) for i in positions]
        # concat copies even for one part in most libraries; make that explicit so the
        # buffer never aliases a caller's array (collectives write into it).
        buffer = xp.concat(flat) if len(flat) > 1 else xp.asarray(flat[0], copy=True)
        buckets.append(Bucket(key, positions, [tuple(arrays[i].shape) for i in positions],
                              buffer))
    return buckets


def unpack(buckets: Sequence[Bucket], count: int) -> list[Array]:
    """The arrays of :func:`pack`, cut back out of (possibly reduced) buffers.

    Args:
        buckets: from :func:`pack`, their ``buffer`` replaced by results of the same length.
        count: how many arrays were packed.

    Returns:
        ``count`` arrays in the original order, shapes and dtypes (views of the buffers).

    Example:
        >>> import numpy as np
        >>> arrays = [np.arange(4.0).reshape(2, 2), np.arange(3, dtype=np.int32)]
        >>> out = unpack(pack(arrays), 2)
        >>> [a.shape for a in out], out[1].dtype
        ([(2, 2), (3,)], dtype('int32'))
    """
    out: list[Array] = [None] * count
    for bucket in buckets:
        xp = backend.array_namespace(bucket.buffer)
        start = 0
        for position, shape in zip(bucket.positions, bucket.shapes):
            n = math.prod(shape)
            out[position] = xp.reshape(bucket.buffer[start:start + n], shape)
            start += n
        if start != bucket.buffer.shape[0]:
            raise ValueError(f"unpack: the {bucket.key} buffer holds {bucket.buffer.shape[0]} "
                             f"elements, its arrays {start}")
    if any(a is None for a in out):
        raise ValueError(f"unpack: the buckets hold fewer than the {count} arrays asked for")
    return out
