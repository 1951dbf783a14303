"""Tape-level handling of DEQ states: one Tensor or a tuple of Tensors sharing the batch dim.

The gradient rules work on one packed ``(B, D)`` view of the state; these helpers pack and
unpack with tape ops (so gradients flow through the packing) and call the user's ``func``
with the structure it expects, checking that it returns the same structure. Imports only
the tape.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq.autodiff import Tensor, concat, reshape

__all__ = ["as_state_tuple", "call_state_func", "pack_tensors", "unpack_tensors", "restore",
           "raw_arrays"]


def as_state_tuple(z: Any) -> tuple[Any, ...]:
    """``z`` as a tuple of states (a single array or Tensor becomes a 1-tuple)."""
    return tuple(z) if isinstance(z, (tuple, list)) else (z,)


def raw_arrays(states: Sequence[Any]) -> tuple[Any, ...]:
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


def pack_tensors(states: Sequence[Tensor]) -> Tensor:
    """Flatten each ``(B, ...)`` state per sample and concatenate them into ``(B, D)``."""
    flat = [reshape(s, (s.shape[0], -1)) for s in states]
    return flat[0] if len(flat) == 1 else concat(flat, axis=1)


def unpack_tensors(packed: Tensor, shapes: Sequence[tuple[int, ...]]) -> tuple[Tensor, ...]:
    """Inverse of :func:`pack_tensors` for states of the given shapes."""
    out = []
    start = 0
    for shape in shapes:
        size = 1
        for s in shape[1:]:
            size *= s
        out.append(reshape(packed[:, start:start + size], tuple(shape)))
        start += size
    return tuple(out)
