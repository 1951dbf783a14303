"""Pieces the models share: argument checks, the default DEQ core, zero states, the state
mean squared error.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff import Tensor
from npdeq.backend.checks import check_int
from npdeq.core import DEQBase, get_deq
from npdeq.grad.state import as_state_tuple
from npdeq.nn import Module

__all__ = ["MODEL_DEQ_DEFAULTS", "build_deq", "check_module", "as_input", "per_sample_shape",
           "zero_state", "state_mse"]

# The models' core when none is given: implicit gradients on one solve, as
# DeepEquilibriumNetworks.jl (TorchDEQ's own default is a 1-step gradient).
MODEL_DEQ_DEFAULTS: dict[str, Any] = {"core": "indexing", "ift": True}


def build_deq(deq: Any, config: dict[str, Any], owner: str) -> DEQBase:
    """The DEQ core a model solves with: ``deq`` itself, or ``get_deq`` on the config.

    Args:
        deq: a DEQ core (:class:`~npdeq.core.DEQBase`) or ``None``.
        config: DEQ config keys (:func:`~npdeq.core.get_deq` keywords) over
            :data:`MODEL_DEQ_DEFAULTS`; must be empty when ``deq`` is given.
        owner: the model's name, for messages.

    Returns:
        The core.

    Raises:
        TypeError: ``deq`` is neither ``None`` nor a DEQ core.
        ValueError: both ``deq`` and config keys; an invalid key or value.

    Example:
        >>> type(build_deq(None, {'f_max_iter': 10}, 'SkipDEQ')).__name__
        'DEQIndexing'
    """
    if deq is None:
        return get_deq(**{**MODEL_DEQ_DEFAULTS, **config})
    if not isinstance(deq, DEQBase):
        raise TypeError(f"{owner}: deq must be a DEQ core (npdeq.get_deq(...)) or None, got "
                        f"{type(deq).__name__}")
    if config:
        raise ValueError(f"{owner}: pass DEQ settings ({', '.join(sorted(config))}) to the "
                         "core you give as deq, not to the model")
    return deq


def check_module(value: Any, name: str, owner: str) -> Module:
    """``value`` if it is an :class:`npdeq.nn.Module` (its parameters must be registered).

    Raises:
        TypeError: anything else.
    """
    if not isinstance(value, Module):
        raise TypeError(f"{owner}: {name} must be an npdeq.nn.Module (so its parameters are "
                        f"trained), got {type(value).__name__}")
    return value


def as_input(x: Any, owner: str) -> Tensor:
    """The input ``x`` as a Tensor (wrapped, not copied; a Tensor passes through).

    Raises:
        TypeError: ``x`` is not an array or a Tensor, or has no batch dimension.
    """
    if not isinstance(x, Tensor):
        try:
            backend.array_namespace(x)
        except TypeError:
            raise TypeError(f"{owner}: x must be a (B, ...) array or Tensor, got "
                            f"{type(x).__name__}") from None
        x = Tensor(x)
    if x.ndim < 1:
        raise TypeError(f"{owner}: x must have a batch dimension (B, ...), got shape "
                        f"{tuple(x.shape)}")
    return x


def per_sample_shape(value: Any, name: str) -> tuple[int, ...]:
    """A per-sample shape: an int ``n`` (``(n,)``) or a tuple of positive ints.

    NumPy integers are accepted; bools and floats are not.

    Raises:
        ValueError: anything else, naming ``name`` and the value.

    Example:
        >>> per_sample_shape(4, 'scales[0]'), per_sample_shape((2, 3, 3), 'scales[1]')
        ((4,), (2, 3, 3))
    """
    message = (f"{name} must be a positive int or a non-empty tuple of positive ints "
               f"(a per-sample shape), got {value!r}")
    try:
        return (check_int(name, value, 1),)
    except ValueError:
        if not isinstance(value, (tuple, list)) or not value:
            raise ValueError(message) from None
    try:
        return tuple(check_int(name, d, 1) for d in value)
    except ValueError:
        raise ValueError(message) from None


def zero_state(x: Tensor, shapes: Sequence[tuple[int, ...]]) -> tuple[Tensor, ...]:
    """Zeros of shapes ``(B, *shape)`` in ``x``'s namespace, dtype and device (B from ``x``)."""
    xp, batch = x.xp, x.shape[0]
    return tuple(Tensor(xp.zeros((batch, *shape), dtype=x.dtype, device=x.device))
                 for shape in shapes)


def state_mse(a: Any, b: Any) -> Tensor:
    """Mean of ``(a - b)^2`` over every entry of two states of the same structure.

    Args:
        a: a Tensor or a tuple of Tensors (gradients flow through it).
        b: the same structure (Tensors or arrays).

    Returns:
        A 0-d Tensor.

    Raises:
        ValueError: different structures or shapes, or states without any entry (the mean
            of nothing is undefined).
    """
    left, right = as_state_tuple(a), as_state_tuple(b)
    if len(left) != len(right):
        raise ValueError(f"states of {len(left)} and {len(right)} parts")
    total, count = None, 0
    for p, q in zip(left, right):
        if tuple(p.shape) != tuple(q.shape):
            raise ValueError(f"state shapes differ: {tuple(p.shape)} and {tuple(q.shape)}")
        diff = p - q
        term = (diff * diff).sum()
        total = term if total is None else total + term
        count += diff.size
    if not count:
        raise ValueError(f"state_mse: the states have no entries (shapes "
                         f"{[tuple(p.shape) for p in left]}); their mean is undefined")
    return total / float(count)
