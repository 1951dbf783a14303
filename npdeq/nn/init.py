"""Parameter initialisation, PyTorch's defaults, reproducible through a seed.

Every layer draws its initial values from a host random generator: the one passed as its
``seed`` argument (an int or a ``numpy.random.Generator``), else npdeq's default generator,
which :func:`manual_seed` resets. Building the same model after the same ``manual_seed``
gives the same parameters. Values are drawn on the host and created in the target
namespace and device.
"""

from __future__ import annotations

import math
from typing import Any

from npdeq import backend
from npdeq.backend import Array
from npdeq.backend.checks import check_int, check_real

__all__ = ["manual_seed", "generator", "uniform", "kaiming_uniform", "fan_in",
           "new_array", "zeros", "ones", "weight_and_bias"]

_DEFAULT = {"generator": backend.make_generator(0)}


def manual_seed(seed: int) -> None:
    """Reset npdeq's default generator (used by layers built without ``seed``).

    Args:
        seed: an int (NumPy integers accepted).

    Raises:
        TypeError: ``seed`` is not an int.

    Example:
        >>> from npdeq.nn import Linear
        >>> manual_seed(3); a = Linear(2, 2).weight.data
        >>> manual_seed(3); b = Linear(2, 2).weight.data
        >>> bool((a == b).all())
        True
    """
    try:
        seed = check_int("seed", seed)
    except ValueError:
        raise TypeError(f"manual_seed takes an int, got {type(seed).__name__}") from None
    _DEFAULT["generator"] = backend.make_generator(seed)


def generator(seed: Any = None) -> Any:
    """The generator a layer draws from: ``seed``'s (int or Generator) or the default one."""
    return _DEFAULT["generator"] if seed is None else backend.make_generator(seed)


def new_array(shape: tuple[int, ...], xp: Any = None, dtype: Any = None,
              device: Any = None) -> Array:
    """Zeros of ``shape`` in namespace ``xp`` (NumPy by default), ``dtype`` (by default
    :func:`npdeq.get_default_dtype`, float64 unless set) on ``device``: the array whose place
    and dtype initial values take.

    Example:
        >>> import npdeq
        >>> with npdeq.default_dtype('float32'):
        ...     print(new_array((2,)).dtype)
        float32
    """
    xp = backend.default_namespace() if xp is None else backend.resolve_target(xp)[0]
    dtype = backend.get_default_dtype(xp) if dtype is None else (
        getattr(xp, dtype) if isinstance(dtype, str) else dtype)
    if device is None:
        return xp.zeros(shape, dtype=dtype)
    return xp.zeros(shape, dtype=dtype, device=device)


def zeros(shape: tuple[int, ...], xp: Any = None, dtype: Any = None,
          device: Any = None) -> Array:
    """Zeros, for biases and normalisation shifts (see :func:`new_array`)."""
    return new_array(shape, xp, dtype, device)


def ones(shape: tuple[int, ...], xp: Any = None, dtype: Any = None,
         device: Any = None) -> Array:
    """Ones, for normalisation scales (see :func:`new_array`)."""
    return new_array(shape, xp, dtype, device) + 1


def uniform(shape: tuple[int, ...], bound: float, seed: Any = None, xp: Any = None,
            dtype: Any = None, device: Any = None) -> Array:
    """Samples of U(-bound, bound).

    Args:
        shape: the result's shape.
        bound: half-width of the interval (>= 0).
        seed: an int or Generator, or ``None`` for the default generator.
        xp, dtype, device: where the result lives (see :func:`new_array`).

    Returns:
        The array.

    Raises:
        ValueError: a ``bound`` that is negative or not a finite number.
    """
    bound = check_real("bound", bound, 0.0)
    like = new_array((), xp, dtype, device)
    # Drawn on the host in float64, then moved: backend.random_uniform would draw on a CuPy
    # device from CuPy's own generator, so the same seed would give other values on the GPU.
    host_xp = backend.default_namespace()
    host = backend.random_uniform(shape, like=host_xp.zeros((), dtype=host_xp.float64),
                                  seed=generator(seed), low=-bound, high=bound)
    return backend.move_array(host, backend.array_namespace(like), backend.device(like),
                              dtype=like.dtype)


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs per output of a weight shaped ``(out, in, *kernel)``: ``in * prod(kernel)``."""
    if len(shape) < 2:
        raise ValueError(f"fan_in needs a weight with at least 2 dimensions, got {shape}")
    return shape[1] * math.prod(shape[2:])


def kaiming_uniform(shape: tuple[int, ...], a: float = math.sqrt(5), seed: Any = None,
                    xp: Any = None, dtype: Any = None, device: Any = None) -> Array:
    """He/Kaiming uniform initialisation for a leaky-ReLU slope ``a`` (PyTorch's default
    for Linear and Conv2d weights: ``a = sqrt(5)``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))).

    Raises:
        ValueError: an ``a`` that is not a finite number.

    Example:
        >>> w = kaiming_uniform((4, 9), seed=0)
        >>> bool(abs(w).max() <= 1 / 3)
        True
    """
    a = check_real("a", a)
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in(shape))
    return uniform(shape, bound, seed, xp, dtype, device)


def weight_and_bias(shape: tuple[int, ...], bias: bool = True, seed: Any = None,
                    xp: Any = None, dtype: Any = None,
                    device: Any = None) -> tuple[Array, Array | None]:
    """PyTorch's default initial values of a Linear or convolution layer: the weight of
    ``shape`` ``(out, in, *kernel)`` by :func:`kaiming_uniform`, then the bias ``(out,)``
    (or ``None``) from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), both from one generator.

    Example:
        >>> w, b = weight_and_bias((3, 4), seed=0)
        >>> w.shape, b.shape, bool(abs(b).max() <= 0.5)
        ((3, 4), (3,), True)
    """
    rng = generator(seed)
    weight = kaiming_uniform(shape, seed=rng, xp=xp, dtype=dtype, device=device)
    if not bias:
        return weight, None
    return weight, uniform((shape[0],), 1 / math.sqrt(fan_in(shape)), rng, xp, dtype, device)
