"""The graph plumbing of :mod:`npdeq.dask`: checking batch chunking, holding shared objects
once, one task per batch chunk, and picking outputs out of a chunk's result.

Every chunk task is built by hand (one key per chunk, a plain task tuple) rather than with
``blockwise``: a chunk task needs its own index (for error messages), the arrays of several
inputs of different dimensions, and several outputs. Objects shared by all chunks (``func``,
parameters) are one key of the graph each (a ``dask.delayed`` of the object), referred to by
that key from every chunk task: the threaded scheduler hands the same object to every task,
and a distributed cluster computes the key once and ships its value once to each worker that
needs it, instead of pickling the object into every task.

Dask is imported inside the functions, so that ``import npdeq`` never imports it.
"""

from __future__ import annotations

import contextlib
import math
import operator
from typing import Any, Iterator, Sequence

from npdeq.backend import Array

__all__ = ["require_dask", "check_batched", "shared", "chunk_tasks", "pick", "sample_ranges",
           "chunk_context"]

_INSTALL = ("npdeq.dask needs dask[array] (and distributed for a cluster): "
            "pip install 'npdeq[dask]'")


def require_dask() -> Any:
    """``dask.array``, or an ImportError that says how to install it."""
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - the test extra installs dask
        raise ImportError(_INSTALL) from exc
    return da


def check_batched(owner: str, name: str, arrays: Sequence[Any],
                  batch_chunks: tuple[int, ...] | None = None) -> list[Any]:
    """Check that ``arrays`` are Dask arrays chunked along axis 0 only, with one batch length.

    Args:
        owner: the public function, for messages.
        name: the argument's name, for messages (``'z0'``, ``'batched[1]'``).
        arrays: the Dask arrays.
        batch_chunks: the axis-0 chunks to align to; default: those of ``arrays[0]``.

    Returns:
        The arrays, each rechunked along axis 0 (lazily) to ``batch_chunks`` where it differs.

    Raises:
        TypeError: an entry is not a Dask array.
        ValueError: a 0-d array, unknown chunk sizes, a chunked non-batch axis (the message
            says how to rechunk), or batch lengths that differ.
    """
    da = require_dask()
    out = []
    for j, a in enumerate(arrays):
        label = name if len(arrays) == 1 else f"{name}[{j}]"
        if not isinstance(a, da.Array):
            raise TypeError(f"{owner}: {label} must be a Dask array chunked along its batch "
                            f"axis 0, got {type(a).__name__}; wrap an array with "
                            "dask.array.from_array(x, chunks=(n, *x.shape[1:]))")
        if a.ndim == 0:
            raise ValueError(f"{owner}: {label} must have a batch axis 0, got a 0-d array")
        if any(math.isnan(c) for c in a.chunks[0]):
            raise ValueError(f"{owner}: {label} has unknown chunk sizes along axis 0; call "
                             f"{label}.compute_chunk_sizes() first")
        split = [ax for ax in range(1, a.ndim) if len(a.chunks[ax]) > 1]
        if split:
            spec = ", ".join(f"{ax}: -1" for ax in split)
            raise ValueError(
                f"{owner}: {label} of shape {tuple(a.shape)} is chunked along axis "
                f"{split[0]} (chunks {a.chunks}); only the batch axis 0 may be chunked, since "
                f"each sample must lie in one chunk. Rechunk it: {label}.rechunk({{{spec}}})")
        if batch_chunks is None:
            batch_chunks = tuple(a.chunks[0])
        if a.shape[0] != sum(batch_chunks):
            raise ValueError(f"{owner}: {label} has batch length {a.shape[0]}; expected "
                             f"{sum(batch_chunks)} (the batch length of z0 / the first input)")
        if tuple(a.chunks[0]) != batch_chunks:
            a = a.rechunk({0: batch_chunks})  # lazy: only the batch boundaries move
        out.append(a)
    return out


def shared(obj: Any) -> Any:
    """``obj`` as one key of the graph (a ``dask.delayed``), held once for all chunks.

    A Delayed is used as it is. Nothing inside ``obj`` is traversed, so a container of arrays
    stays one object.
    """
    import dask
    from dask.delayed import Delayed

    if isinstance(obj, Delayed):
        return obj
    return dask.delayed(obj, pure=True, traverse=False)


def block_key(a: Any, i: int) -> tuple:
    """The key of batch chunk ``i`` of ``a`` (its other axes are one chunk each)."""
    return (a.name, i) + (0,) * (a.ndim - 1)


def sample_ranges(batch_chunks: Sequence[int]) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the samples in each batch chunk."""
    ranges, start = [], 0
    for n in batch_chunks:
        ranges.append((start, start + n))
        start += n
    return ranges


def chunk_tasks(prefix: str, fn: Any, spec: Any, objs: Sequence[Any],
                groups: Sequence[Sequence[Any]], batch_chunks: tuple[int, ...],
                meta: Array) -> Any:
    """One task per batch chunk:
    ``fn(spec, [objs], index, (start, stop), *[blocks of each group])``.

    Args:
        prefix: the name of the layer.
        fn: the chunk function (module level, so that it pickles by reference).
        spec: a Delayed (from :func:`shared`) passed to every task by its key.
        objs: more Delayed objects, passed to every task as one list (by their keys).
        groups: lists of Dask arrays; each task gets, per group, the list of its blocks.
        batch_chunks: the axis-0 chunks all arrays share.
        meta: an empty array of the chunks' type (never computed: the blocks of the result
            are ``fn``'s results, tuples, which :func:`pick` takes apart).

    Returns:
        The chunk results as a Dask array over the batch chunks, for :func:`pick` only.
    """
    da = require_dask()
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    arrays = [a for group in groups for a in group]
    keys = [o.key for o in objs]
    name = f"{prefix}-{tokenize(spec.key, keys, [a.name for a in arrays], batch_chunks)}"
    layer = {}
    for i, bounds in enumerate(sample_ranges(batch_chunks)):
        blocks = [[block_key(a, i) for a in group] for group in groups]
        layer[(name, i)] = (fn, spec.key, list(keys), i, bounds, *blocks)
    graph = HighLevelGraph.from_collections(name, layer,
                                            dependencies=[spec, *objs, *arrays])
    return da.Array(graph, name, (tuple(batch_chunks),), meta=meta)


def pick(record: Any, k: int, chunks: tuple, meta: Array, label: str) -> Any:
    """Output ``k`` of every chunk's result tuple as a Dask array of ``chunks`` and ``meta``.

    Every output refers to the same chunk tasks, so computing several outputs together (one
    ``dask.compute``) runs each chunk once.
    """
    da = require_dask()
    from dask.highlevelgraph import HighLevelGraph

    name = f"{label}-{k}-{record.name}"
    extra = (0,) * (len(chunks) - 1)
    layer = {(name, i) + extra: (operator.getitem, (record.name, i), k)
             for i in range(len(chunks[0]))}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[record])
    return da.Array(graph, name, chunks, meta=meta)


@contextlib.contextmanager
def chunk_context(owner: str, what: str, index: int, bounds: tuple[int, int]) -> Iterator[None]:
    """Re-raise an exception from inside a chunk's work as it was, noting the chunk.

    The exception keeps its type and message (so ``except`` clauses and ``pytest.raises``
    still match), with a note naming the chunk index and its samples; notes survive the
    pickling a distributed cluster does. Python 3.10 has no notes: there the exception is
    chained from a RuntimeError naming the chunk.
    """
    try:
        yield
    except Exception as exc:
        note = (f"{owner}: raised by {what} in batch chunk {index} (samples {bounds[0]} to "
                f"{bounds[1] - 1})")
        if hasattr(exc, "add_note"):
            exc.add_note(note)
            raise
        raise RuntimeError(note) from exc  # pragma: no cover - Python 3.10
