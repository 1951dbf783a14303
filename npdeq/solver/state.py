"""Solver states: one ``(B, ...)`` array or a tuple of arrays sharing the batch dimension,
seen by the solvers as one packed ``(B, D)`` array.

The solvers work on ``(B, D)`` arrays only. :func:`pack_states` flattens each state per sample
and concatenates them; :func:`unpack_states` undoes it. :func:`packed_map` wraps the user's
``func`` (``func(z)`` for one array, ``func(*zs)`` returning a tuple for several, TorchDEQ's
convention) into a map on packed arrays and checks every output against its input.
:func:`pack_states`/:func:`unpack_states` also serve any caller that lays a state out as
one ``(B, D)`` array (``B = 1`` for a state solved as one system).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend import Array

__all__ = ["pack_states", "unpack_states", "state_shapes", "packed_map", "is_state_tuple",
           "check_result"]


def is_state_tuple(x: Any) -> bool:
    """Whether ``x`` is a tuple/list state (several arrays) rather than one array."""
    return isinstance(x, (tuple, list))


def state_shapes(states: Any) -> list[tuple[int, ...]]:
    """The shapes of a state's arrays (one entry for a single array).

    Raises:
        ValueError: an empty tuple, an array without a batch dimension, or arrays whose batch
            sizes differ.
    """
    arrays = list(states) if is_state_tuple(states) else [states]
    if not arrays:
        raise ValueError("the state is an empty tuple: it needs at least one array")
    shapes = [tuple(a.shape) for a in arrays]
    for i, shape in enumerate(shapes):
        if len(shape) == 0:
            raise ValueError(f"state {i} is 0-dimensional; states need a batch dimension "
                             "(shape (B, ...)): for one scalar unknown, pass it with shape "
                             "(1,) (z[None]), or (B,) for a batch of them")
        if shape[0] != shapes[0][0]:
            raise ValueError(f"states share the batch dimension: state 0 has batch size "
                             f"{shapes[0][0]}, state {i} has shape {shape}")
    return shapes


def pack_states(states: Any) -> Array:
    """Flatten each ``(B, ...)`` state per sample and concatenate them into ``(B, D)``.

    Args:
        states: one array of shape ``(B, ...)`` or a tuple/list of such arrays (same B).

    Returns:
        A ``(B, D)`` array in the states' namespace and device, ``D`` the sum of the
        per-sample sizes. A single array is only reshaped (no copy where the library can
        avoid one).

    Raises:
        ValueError: see :func:`state_shapes`.
        TypeError: arrays of different namespaces.

    Example:
        >>> import numpy as np
        >>> pack_states((np.ones((2, 3)), np.zeros((2, 2, 2)))).shape
        (2, 7)
    """
    arrays = list(states) if is_state_tuple(states) else [states]
    if len(arrays) == 1 and getattr(arrays[0], "ndim", None) == 2:
        backend.check_same_namespace(arrays, "pack_states")
        return arrays[0]  # already (B, D): nothing to join
    shapes = state_shapes(states)
    xp = backend.check_same_namespace(arrays, "pack_states")
    flat = [a if a.ndim == 2 else xp.reshape(a, (shape[0], -1))
            for a, shape in zip(arrays, shapes)]
    return flat[0] if len(flat) == 1 else xp.concat(flat, axis=1)


def unpack_states(packed: Array, shapes: Sequence[tuple[int, ...]],
                  as_tuple: bool = True) -> Any:
    """Undo :func:`pack_states`.

    Args:
        packed: a ``(B, D)`` array.
        shapes: the shapes of the states (from :func:`state_shapes`); their batch size may
            differ from ``packed``'s (only the trailing dimensions are used).
        as_tuple: return a tuple even for one state (``False``: a single state comes back as
            an array).

    Returns:
        A tuple of arrays of the given shapes (or one array), views of ``packed`` where the
        library allows.

    Raises:
        ValueError: the sizes do not add up to ``D``.
    """
    xp = backend.array_namespace(packed)
    batch = packed.shape[0]
    sizes = [math.prod(s[1:]) for s in shapes]
    if sum(sizes) != packed.shape[1]:
        raise ValueError(f"packed state has {packed.shape[1]} values per sample but the "
                         f"shapes {list(shapes)} need {sum(sizes)}")
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        part = packed if len(sizes) == 1 else packed[:, start:start + size]
        full = (batch, *shape[1:])
        out.append(part if tuple(part.shape) == full else xp.reshape(part, full))
        start += size
    return tuple(out) if as_tuple or len(out) > 1 else out[0]


def packed_map(func: Callable[..., Any],
               x0: Any) -> tuple[Callable[[Array], Array], Array, Callable[[Array], Any]]:
    """Wrap ``func`` as a map on packed ``(B, D)`` arrays, checked at every call.

    Every output is checked against the state it was computed from: structure, array type,
    shape, dtype (and, at the first call or whenever the type changes, namespace and
    device), so a map whose output changes after its first call fails at once instead of
    being broadcast into a wrong "solution". After the first call the check is a few
    attribute comparisons (well under a microsecond).

    Args:
        func: ``func(z) -> z'`` for one array state, ``func(*zs) -> tuple`` for a tuple state.
            Tensors it returns are read as their arrays.
        x0: the initial state (one array or a tuple/list of arrays; Tensors are read as their
            arrays, detached).

    Returns:
        ``(f, z0, restore)``: ``f`` maps ``(B, D)`` to ``(B, D)``; ``z0`` is ``x0`` packed;
        ``restore`` turns a packed array back into ``x0``'s structure.

    Raises:
        TypeError: ``x0`` is not a floating-point array (or tuple of them); ``func`` returns
            another namespace, dtype, structure or something that is not an array (at any
            call).
        ValueError: ``func`` returns another shape or device (at any call).

    Example:
        >>> import numpy as np
        >>> calls = []
        >>> def func(z):
        ...     calls.append(1)
        ...     return z[:1] if len(calls) > 1 else z     # the second output is (1, D)
        >>> f, z0, restore = packed_map(func, np.zeros((3, 2)))
        >>> f(z0).shape
        (3, 2)
        >>> f(z0)
        Traceback (most recent call last):
        ...
        ValueError: func returned shape (1, 2) at call 2; expected (3, 2) (the shape of its input)
    """
    is_tuple = is_state_tuple(x0)
    x0, arrays, shapes, xp = _start_state(x0, is_tuple)
    z0 = pack_states(x0)
    device = backend.device(z0)
    if not is_tuple and len(shapes[0]) == 2:
        def restore(z: Any) -> Any:  # the (B, D) case: nothing to undo
            return z
    else:
        def restore(z: Any) -> Any:
            return unpack_states(z, shapes, as_tuple=is_tuple)

    calls = [0]
    checked_type = [None]

    def check(out: Any, inputs: list[Any]) -> Any:
        """The full check: structure, then each array's type, namespace, shape, dtype and
        device, with a message naming ``func`` and what it returned. Returns ``out`` with
        Tensors read as their arrays."""
        at = f" at call {calls[0]}"
        outs = list(out) if is_state_tuple(out) else [out]
        if is_tuple != is_state_tuple(out) or len(outs) != len(inputs):
            raise TypeError(f"func returned {_describe(out)}{at} for a state of "
                            f"{_describe(x0)}; it must return the same structure")
        outs = [backend.unwrap_array(o) for o in outs]
        for i, (o, a) in enumerate(zip(outs, inputs)):
            where = f" for state {i}" if is_tuple else ""
            check_result(o, tuple(a.shape), a.dtype, xp, device, "func", where + at)
        checked_type[0] = type(outs[0])
        return tuple(outs) if is_tuple else outs[0]

    if not is_tuple:
        dtype = arrays[0].dtype
        packed_is_state = len(shapes[0]) == 2

        def call(z: Any) -> Any:
            calls[0] += 1
            state = z if packed_is_state else restore(z)
            out = func(state)
            # The cheap check of every call (identity of type and dtype, shape equality);
            # anything unusual gets the full one, which raises or passes.
            if type(out) is not checked_type[0] or out.shape != state.shape or \
                    out.dtype is not dtype:
                out = check(out, [state])
            return out if packed_is_state else pack_states(out)
        return call, z0, restore

    def call(z: Any) -> Any:
        calls[0] += 1
        inputs = restore(z)
        out = func(*inputs)
        if (not isinstance(out, (tuple, list)) or len(out) != len(inputs)
                or any(type(o) is not checked_type[0] or o.shape != a.shape
                       or o.dtype is not a.dtype for o, a in zip(out, inputs))):
            out = check(out, list(inputs))
        return pack_states(out)

    return call, z0, restore


def _start_state(x0: Any, is_tuple: bool) -> tuple[Any, list[Array], list[tuple[int, ...]],
                                                    Any]:
    """``x0`` with Tensors read as their arrays (the solvers do not differentiate), checked:
    ``(x0, its arrays, their shapes, their namespace)``."""
    x0 = tuple(backend.unwrap_array(a) for a in x0) if is_tuple else backend.unwrap_array(x0)
    arrays = list(x0) if is_tuple else [x0]
    for i, a in enumerate(arrays):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"x0{f'[{i}]' if is_tuple else ''} must be an array, got "
                            f"{type(a).__name__}")
    shapes = state_shapes(x0)
    xp = backend.check_same_namespace(arrays, "x0")
    for i, a in enumerate(arrays):
        if not xp.isdtype(a.dtype, "real floating"):
            raise TypeError(f"x0{f'[{i}]' if is_tuple else ''} has dtype {a.dtype}; the "
                            "solvers need a real floating-point state")
    return x0, arrays, shapes, xp


def check_result(out: Any, shape: tuple[int, ...], dtype: Any, xp: Any, device: Any,
                 name: str, where: str = "") -> None:
    """Raise unless ``out`` (what the user's callable ``name`` returned) is an array of
    ``xp`` with this shape, dtype and device: the one check behind :func:`packed_map` and
    the products of :func:`~npdeq.solver.gmres.gmres`.

    Raises:
        TypeError: not an array, another namespace or another dtype.
        ValueError: another shape or device.

    Example:
        >>> import numpy as np
        >>> from npdeq import backend
        >>> xp = backend.array_namespace(np.zeros(1))
        >>> check_result(np.zeros((2, 2)), (2, 3), np.float64, xp, 'cpu', 'matvec')
        Traceback (most recent call last):
        ...
        ValueError: matvec returned shape (2, 2); expected (2, 3) (the shape of its input)
    """
    if not hasattr(out, "shape") or not hasattr(out, "dtype"):
        raise TypeError(f"{name} returned a {type(out).__name__}{where}; expected an array "
                        f"of shape {shape} and dtype {dtype}")
    try:
        ns = backend.array_namespace(out)
    except TypeError:
        ns = None
    if ns is not xp:
        found = backend.namespace_name(ns) if ns is not None else type(out).__name__
        raise TypeError(f"{name} returned an array of {found}{where}; expected an array of "
                        f"{backend.namespace_name(xp)}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} returned shape {tuple(out.shape)}{where}; expected "
                         f"{tuple(shape)} (the shape of its input)")
    if out.dtype != dtype:
        raise TypeError(f"{name} returned dtype {out.dtype}{where}; expected {dtype}"
                        + _dtype_hint(xp, out.dtype, dtype, name))
    if backend.device(out) != device:
        raise ValueError(f"{name} returned an array on device {backend.device(out)}{where}; "
                         f"expected {device}")


def _dtype_hint(xp: Any, got: Any, expected: Any, name: str) -> str:
    """Where a real floating dtype other than the input's most likely comes from."""
    if not (xp.isdtype(got, "real floating") and xp.isdtype(expected, "real floating")):
        return f" (the dtype of its input); {name} must return its input's dtype"
    if xp.finfo(got).bits > xp.finfo(expected).bits:
        return (f" (the dtype of its input): an operand of dtype {got} inside {name} (a "
                "parameter or input made in that dtype, e.g. a layer created before "
                "set_default_dtype, or a NumPy array of that dtype) promotes the result; cast "
                f"it, or call model.to(dtype=...) so that {name} computes in its input's dtype")
    return (f" (the dtype of its input): {name} computes in a lower precision than its "
            f"input; cast its result, or give the state (z_init) the dtype {got}")


def _describe(x: Any) -> str:
    if is_state_tuple(x):
        return f"a tuple of {len(x)} arrays"
    return "one array" if hasattr(x, "shape") else f"a {type(x).__name__}"
