"""DEQ states on the tape: one Tensor or a tuple of Tensors sharing the batch dimension.

The gradient rules work on one packed ``(B, D)`` view of the state; these helpers pack and
unpack with tape ops (so gradients flow through the packing; the raw-array twins are
:func:`npdeq.solver.pack_states`/:func:`~npdeq.solver.unpack_states`), call the user's
``func`` with the structure it expects, checking that it returns the same structure, and
turn ``func`` into the map on raw arrays that the solvers iterate.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from npdeq.autodiff import Tensor, concat, no_grad, reshape
from npdeq.backend import Array

__all__ = ["as_state_tuple", "call_state_func", "pack_tensors", "unpack_tensors", "restore",
           "raw_arrays", "solver_map"]


def as_state_tuple(z: Any) -> tuple[Any, ...]:
    """``z`` as a tuple of states (a single array or Tensor becomes a 1-tuple)."""
    return tuple(z) if isinstance(z, (tuple, list)) else (z,)


def raw_arrays(states: Sequence[Any]) -> tuple[Array, ...]:
    """The arrays of ``states`` (Tensors are unwrapped, detached; arrays pass through)."""
    return tuple(s.data if isinstance(s, Tensor) else s for s in states)


def restore(states: Sequence[Any], like: Any) -> Any:
    """Undo :func:`as_state_tuple`: a single state when ``like`` was not a tuple/list."""
    return tuple(states) if isinstance(like, (tuple, list)) else states[0]


def call_state_func(func: Callable[..., Any], states: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Call ``func(*states)`` and return its outputs as a tuple shaped like ``states``.

    Raises:
        ValueError: ``func`` returns a different number of states or different shapes.
        TypeError: ``func`` returns something that is not a Tensor.
    """
    out = as_state_tuple(func(*states))
    if len(out) != len(states):
        raise ValueError(
            f"func returned {len(out)} state(s) for {len(states)} input state(s); a DEQ "
            "function must return the same structure it takes")
    for i, (o, s) in enumerate(zip(out, states)):
        if not isinstance(o, Tensor):
            raise TypeError(f"func returned a {type(o).__name__} for state {i}; expected a "
                            "Tensor (write func with npdeq ops)")
        if tuple(o.shape) != tuple(s.shape):
            raise ValueError(f"func returned shape {tuple(o.shape)} for state {i} of shape "
                             f"{tuple(s.shape)}")
    return out


def solver_map(func: Callable[..., Any], z: Any,
               first_call: Callable[[Callable[..., Any], tuple[Tensor, ...]],
                                    tuple[Tensor, ...]] | None = None) -> Callable[..., Any]:
    """``func`` on Tensors as a map on raw arrays for the solvers; nothing is recorded.

    Args:
        func: ``func(z)`` or ``func(*zs)`` on Tensors.
        z: an array or a tuple/list of arrays: the structure ``func`` is called with.
        first_call: how to make the first call, ``first_call(func, states) -> outputs``
            (e.g. recorded, to inspect what ``func`` closes over); by default, as every
            other call, :func:`call_state_func` under ``no_grad``.

    Returns:
        ``f(z) -> z'`` (or ``f(*zs) -> tuple``) on raw arrays.

    Example:
        >>> import numpy as np, npdeq
        >>> f = solver_map(lambda z, y: (z * 2.0, y), (np.ones((1, 2)), np.ones((1, 1))))
        >>> [a.tolist() for a in f(np.ones((1, 2)), np.zeros((1, 1)))]
        [[[2.0, 2.0]], [[0.0]]]
    """
    single = not isinstance(z, (tuple, list))
    first = [first_call]

    def mapped(*zs: Any) -> Any:
        states = tuple(Tensor(a) for a in zs)
        if first[0] is not None:
            out = first[0](func, states)
            first[0] = None
        else:
            with no_grad():
                out = call_state_func(func, states)
        return out[0].data if single else tuple(o.data for o in out)

    return mapped


def pack_tensors(states: Sequence[Tensor], batch: bool = True) -> Tensor:
    """Flatten each ``(B, ...)`` state per sample and concatenate them into ``(B, D)``.

    One ``(B, D)`` state is returned as it is (no op recorded).

    Args:
        states: the Tensors.
        batch: ``False``: the Tensors share no batch dimension; each is flattened whole and
            they are joined into one 1-D Tensor (one Tensor still comes back as it is).

    Example:
        >>> import numpy as np, npdeq
        >>> pack_tensors([npdeq.Tensor(np.ones((2, 3))), npdeq.Tensor(np.ones((2, 2, 2)))]).shape
        (2, 7)
        >>> pack_tensors([npdeq.Tensor(np.ones(3)), npdeq.Tensor(np.ones((2, 2)))], False).shape
        (7,)
    """
    if len(states) == 1 and (not batch or len(states[0].shape) == 2):
        return states[0]
    flat = [reshape(s, (s.shape[0], -1) if batch else (-1,)) for s in states]
    return flat[0] if len(flat) == 1 else concat(flat, axis=1 if batch else 0)


def unpack_tensors(packed: Tensor, shapes: Sequence[tuple[int, ...]],
                   batch: bool = True) -> tuple[Tensor, ...]:
    """Inverse of :func:`pack_tensors` (with the same ``batch``) for states of the given
    shapes; a packed Tensor that already has the one state's shape comes back as it is."""
    if len(shapes) == 1:
        shape = tuple(shapes[0])
        return (packed if tuple(packed.shape) == shape else reshape(packed, shape),)
    out = []
    start = 0
    for shape in shapes:
        size = math.prod(shape[1:] if batch else shape)
        part = packed[:, start:start + size] if batch else packed[start:start + size]
        out.append(reshape(part, tuple(shape)))
        start += size
    return tuple(out)
