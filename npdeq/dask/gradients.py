"""``npdeq.dask.value_and_grad``: a loss summed over many samples and its gradient with
respect to shared parameters, one chunk per task, combined by Dask's tree reduction.

Each chunk's task records the chunk's loss on npdeq's tape (its fixed points solved with
:func:`npdeq.fixed_point`, whose IFT or PhantomGrad rule gives the gradient) and returns the
loss and the gradients flattened into one row; the rows of all chunks are summed by Dask's
tree reduction (``sum(axis=0, split_every=...)``), so the combining work is spread over the
workers too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from npdeq import backend
from npdeq.autodiff import Tensor, enable_grad, grad as tape_grad
from npdeq.backend.checks import check_int
from npdeq.dask.graph import check_batched, chunk_context, chunk_tasks, pick, require_dask, shared

__all__ = ["value_and_grad"]

_OWNER = "npdeq.dask.value_and_grad"
_REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True, slots=True)
class _GradSpec:
    """What a chunk's task needs besides its arrays and the parameters; one graph key."""
    loss_fn: Callable[..., Any]
    names: tuple | None  # the dict keys of params, None for a list or tuple
    kind: type
    row_dtype: Any


def _structure(spec: _GradSpec, values: list) -> Any:
    """``values`` in the structure of the user's ``params``."""
    if spec.names is not None:
        return dict(zip(spec.names, values))
    return spec.kind(values)


def _chunk_row(spec: _GradSpec, shared_values: list, index: int, bounds: tuple[int, int],
               x_blocks: list) -> tuple:
    """One chunk's ``[loss, *flattened gradients]`` as a ``(1, 1 + P)`` row."""
    params = shared_values[0]
    xp = backend.array_namespace(*params)
    dev = backend.device(params[0])
    if bounds[1] == bounds[0]:  # an empty chunk adds nothing to a sum
        size = 1 + sum(math.prod(p.shape) for p in params)
        return (xp.zeros((1, size), dtype=spec.row_dtype, device=dev),)
    # Fresh leaves per task: nothing is shared on the tape between chunks (or threads).
    leaves = [Tensor(p, requires_grad=True) for p in params]
    # Recorded even where the task runs in a thread under no_grad (the synchronous
    # scheduler runs it in the caller's thread): the gradient is what was asked for.
    with chunk_context(_OWNER, "loss_fn", index, bounds), enable_grad():
        loss = spec.loss_fn(_structure(spec, leaves), *x_blocks)
        if not isinstance(loss, Tensor) or math.prod(loss.shape) != 1:
            raise TypeError(f"{_OWNER}: loss_fn must return the chunk's summed loss as a "
                            f"one-element Tensor, got {_describe(loss)}")
        # A loss that depends on no parameter (a chunk where they drop out) has no graph.
        grads = (tape_grad(loss, leaves, allow_unused=True) if loss.requires_grad
                 else [None] * len(leaves))
    parts = [xp.reshape(loss.data, (1,))]
    for g, p in zip(grads, params):
        parts.append(xp.zeros((math.prod(p.shape),), dtype=p.dtype, device=dev)
                     if g is None else xp.reshape(g.data, (-1,)))
    parts = [a if a.dtype == spec.row_dtype else xp.astype(a, spec.row_dtype) for a in parts]
    return (xp.reshape(xp.concat(parts), (1, -1)),)


def _describe(loss: Any) -> str:
    if isinstance(loss, Tensor):
        return f"a Tensor of shape {tuple(loss.shape)}"
    return type(loss).__name__


def _as_params(params: Any) -> tuple[tuple | None, type, list]:
    """``(dict keys or None, container type, arrays)``, checked."""
    if isinstance(params, dict):
        names, kind, values = tuple(params), dict, list(params.values())
    elif isinstance(params, (list, tuple)):
        names, kind, values = None, type(params), list(params)
    else:
        raise TypeError(f"{_OWNER}: params must be a list, tuple or dict of arrays, got "
                        f"{type(params).__name__}")
    if not values:
        raise ValueError(f"{_OWNER}: params is empty; it needs at least one array")
    arrays = []
    for j, v in enumerate(values):
        label = f"params[{names[j]!r}]" if names is not None else f"params[{j}]"
        v = v.data if isinstance(v, Tensor) else v
        if not (hasattr(v, "dtype") and hasattr(v, "shape")):
            raise TypeError(f"{_OWNER}: {label} must be an array, got {type(v).__name__}")
        xp = backend.array_namespace(v)
        if not xp.isdtype(v.dtype, "real floating"):
            raise TypeError(f"{_OWNER}: {label} must have a real floating dtype to be "
                            f"differentiated, got {v.dtype}")
        arrays.append(v)
    return names, kind, arrays


def value_and_grad(loss_fn: Callable[..., Any], params: Any, *batched: Any,
                   reduction: str = "sum", split_every: int | None = None
                   ) -> tuple[Any, Any]:
    """A loss summed over all chunks of Dask arrays, and its gradient w.r.t. ``params``.

    For a loss that is a sum (or mean) of per-sample terms, each chunk's loss and gradient
    (through :func:`npdeq.fixed_point`'s IFT or PhantomGrad rule inside ``loss_fn``) are
    computed on the chunk's worker and summed by Dask's tree reduction. The result equals the
    gradient of the loss on the concatenated batch in one process, to rounding (the sum is
    taken in another order). Enough for full-batch optimisation (SciPy's L-BFGS, npdeq's
    optimisers) of a model fitted to many systems at once.

    Args:
        loss_fn: ``loss_fn(params, *xs)`` returns the chunk's summed loss as a one-element
            Tensor; ``params`` arrives as Tensors that require grad, in the structure given
            (list, tuple or dict), and ``xs`` are the chunk's blocks of ``batched`` (plain
            arrays).
        params: the shared parameters: a list, tuple or dict of floating arrays (Tensors are
            read as their arrays). Held once in the graph, sent once to each worker.
        *batched: per-sample inputs, Dask arrays ``(B, ...)`` chunked along axis 0 only
            (rechunked lazily to the first one's batch chunks where they differ); at least
            one.
        reduction: ``'sum'`` (the chunks' losses added) or ``'mean'`` (divided by ``B``).
        split_every: the tree reduction's fan-in (Dask's default when ``None``).

    Returns:
        ``(value, grads)``, lazy: ``value`` a 0-d Dask array in the parameters' widest
        dtype, ``grads``
        Dask arrays of the parameters' shapes and dtypes in ``params``' structure. Compute
        them together, ``dask.compute(value, grads)``, to run each chunk once.

    Raises:
        TypeError: ``params`` not a list, tuple or dict of floating arrays; an entry of
            ``batched`` not a Dask array. At compute time: ``loss_fn`` not returning a
            one-element Tensor.
        ValueError: no ``batched`` input, empty ``params``, a bad ``reduction`` or
            ``split_every``, or an array chunked along a non-batch axis (the message says
            how to rechunk). An exception from ``loss_fn`` fails the computation as it was
            raised, with a note naming the chunk.

    Example:
        >>> import dask, dask.array as da, numpy as np, npdeq, npdeq.dask
        >>> def loss_fn(params, x):
        ...     (a,) = params
        ...     z, _ = npdeq.fixed_point(lambda z: a * npdeq.tanh(z) + x, np.zeros_like(x),
        ...                              solver_kwargs={"tol": 1e-12, "max_iter": 200})
        ...     return (z * z).sum()
        >>> x = da.from_array(np.linspace(-1.0, 1.0, 12).reshape(12, 1), chunks=5)
        >>> value, (g,) = dask.compute(*npdeq.dask.value_and_grad(loss_fn, [np.array(0.5)], x))
        >>> value.shape, g.shape, bool(g > 0)
        ((), (), True)
    """
    da = require_dask()
    if not callable(loss_fn):
        raise TypeError(f"{_OWNER}: loss_fn must be callable, got {type(loss_fn).__name__}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{_OWNER}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    split_every = check_int("split_every", split_every, 2, owner=_OWNER, none_ok=True)
    names, kind, arrays = _as_params(params)
    if not batched:
        raise ValueError(f"{_OWNER}: at least one batched Dask array is needed (it sets the "
                         "chunks the work is split into)")
    xs = check_batched(_OWNER, "batched", list(batched))
    batch_chunks = tuple(xs[0].chunks[0])
    xp = backend.array_namespace(*arrays)
    dev = backend.device(arrays[0])
    # The row holds the loss and every gradient: the widest parameter dtype (the loss's dtype
    # is known only when it runs; a wider loss is rounded to it, a narrower one widened).
    row_dtype = xp.result_type(*(a.dtype for a in arrays))
    spec = shared(_GradSpec(loss_fn, names, kind, row_dtype))
    sizes = [math.prod(a.shape) for a in arrays]
    record = chunk_tasks("npdeq-value-and-grad", _chunk_row, spec, [shared(arrays)], [xs],
                         batch_chunks, meta=xp.zeros((0,), dtype=row_dtype, device=dev))
    n = len(batch_chunks)
    rows = pick(record, 0, ((1,) * n, (1 + sum(sizes),)),
                xp.zeros((0, 0), dtype=row_dtype, device=dev), "npdeq-loss-grad-rows")
    total = da.sum(rows, axis=0, split_every=split_every)
    if reduction == "mean":
        total = total / sum(batch_chunks)
    value = total[0]
    grads, start = [], 1
    for a, size in zip(arrays, sizes):
        g = total[start:start + size].reshape(a.shape)
        grads.append(g if g.dtype == a.dtype else g.astype(a.dtype))
        start += size
    return value, (dict(zip(names, grads)) if names is not None else kind(grads))
