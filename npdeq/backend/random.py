"""Random numbers in any namespace: the array API standard has none. A seeded NumPy
``Generator`` on the host, ``cupy.random`` on the GPU; results take the dtype, namespace and
device of a ``like`` array.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from npdeq.backend.checks import as_count
from npdeq.backend.namespace import Array, array_namespace, device, is_cupy, is_numpy

__all__ = ["random_normal", "random_uniform", "make_generator"]


def make_generator(seed: Any = None) -> np.random.Generator:
    """A host random generator: ``seed`` may be ``None``, an int or a ``Generator`` (returned).

    Args:
        seed: ``None`` (fresh entropy), an int, or a ``numpy.random.Generator``.

    Returns:
        A ``numpy.random.Generator``; pass it as ``seed`` to the helpers below to draw a
        reproducible stream.

    Raises:
        TypeError: ``seed`` is of another type.

    Example:
        >>> a = random_normal((2,), like=make_generator(0).random(1), seed=make_generator(1))
        >>> a.shape
        (2,)
    """
    if isinstance(seed, np.random.Generator):
        return seed
    count = None if seed is None else as_count(seed)
    if seed is not None and count is None:
        raise TypeError(f"seed must be None, an int or a numpy.random.Generator, "
                        f"got {type(seed).__name__}")
    return np.random.default_rng(count)


def random_normal(shape: tuple[int, ...], *, like: Array, seed: Any = None) -> Array:
    """Standard normal samples with ``like``'s dtype, namespace and device.

    Args:
        shape: the result's shape.
        like: an array whose dtype, namespace and device the result takes.
        seed: ``None``, an int or a ``numpy.random.Generator`` (CPU); on CuPy an int seeds
            ``cupy.random``.

    Returns:
        Array of shape ``shape``.
    """
    return _random(shape, like, seed, "normal")


def random_uniform(shape: tuple[int, ...], *, like: Array, seed: Any = None,
                   low: float = 0.0, high: float = 1.0) -> Array:
    """Uniform samples in ``[low, high)`` with ``like``'s dtype, namespace and device."""
    return low + (high - low) * _random(shape, like, seed, "uniform")


def _random(shape, like, seed, kind):
    xp = array_namespace(like)
    if is_cupy(xp):
        cp = importlib.import_module("cupy")
        rs = cp.random.default_rng(seed if not isinstance(seed, np.random.Generator)
                                   else int(seed.integers(2**31)))
        with cp.cuda.Device(like.device):
            sample = rs.standard_normal(shape) if kind == "normal" else rs.random(shape)
        return sample.astype(like.dtype, copy=False)
    rng = make_generator(seed)
    sample = rng.standard_normal(shape) if kind == "normal" else rng.random(shape)
    if is_numpy(xp):
        return sample.astype(like.dtype, copy=False)
    return xp.asarray(sample, dtype=like.dtype, device=device(like))
