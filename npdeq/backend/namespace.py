"""Array-namespace selection, devices and the one host-synchronisation point.

What every layer above asks of an array: its namespace (cached per array type), its device,
a NumPy copy on the host, a Python scalar from a 0-d array (:func:`to_scalar`, the read that
tests count), and the array inside a registered wrapper (the tape's ``Tensor``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Callable, TypeAlias

import array_api_compat
import numpy as np

__all__ = [
    "Array",
    "array_namespace",
    "default_namespace",
    "device",
    "to_numpy",
    "to_scalar",
    "any_true",
    "host_flags",
    "cupy_available",
    "is_numpy",
    "is_numpy_array",
    "is_cupy",
    "namespace_name",
    "default_asarray",
    "check_same_namespace",
    "ignore_float_errors",
    "register_array_wrapper",
    "unwrap_array",
]

#: An array of any supported namespace (NumPy, CuPy, ``array_api_strict``, ...). Array
#: libraries share no common base class, so this is ``Any`` to type checkers; in signatures
#: it says "an array" where ``Any`` would say nothing.
Array: TypeAlias = Any

# array_api_compat's lookup costs a few microseconds; the namespace depends only on the
# array's type, so it is cached per type (the tape calls this once per recorded op).
_NAMESPACE_BY_TYPE: dict[type, Any] = {}
# array_api_compat.numpy is loaded on first use, not at import: building it touches every
# NumPy submodule (numpy.testing, numpy.f2py, ...), about 0.1 s that ``import npdeq`` need
# not pay.
_NUMPY_NS: Any = None
_PY_SCALARS = (bool, int, float, complex)


def default_namespace() -> Any:
    """The namespace of NumPy arrays (``array_api_compat.numpy``), where new parameters are
    created when none is asked for."""
    global _NUMPY_NS
    if _NUMPY_NS is None:
        _NUMPY_NS = importlib.import_module("array_api_compat.numpy")
        _NAMESPACE_BY_TYPE[np.ndarray] = _NUMPY_NS
    return _NUMPY_NS


def array_namespace(*arrays: Any) -> Any:
    """Return the array-API namespace shared by ``arrays``.

    ``None`` and Python scalars are ignored. NumPy arrays map to ``array_api_compat.numpy``,
    CuPy arrays to ``array_api_compat.cupy``; other libraries to their own namespace.

    Args:
        *arrays: arrays (any supported library), Python scalars or ``None``.

    Returns:
        The namespace module, e.g. ``array_api_compat.numpy``.

    Raises:
        TypeError: if the arrays come from different libraries, or none is an array.

    Example:
        >>> import numpy as np
        >>> xp = array_namespace(np.ones(3))
        >>> xp.sum(xp.ones(3)).shape
        ()
    """
    found = None
    for a in arrays:
        if a is None or type(a) in _PY_SCALARS:
            continue
        ns = _NAMESPACE_BY_TYPE.get(type(a))
        if ns is None:
            ns = _lookup_namespace(a)
        if found is None:
            found = ns
        elif ns is not found:
            raise TypeError(
                f"cannot mix arrays of different namespaces: {namespace_name(found)} and "
                f"{namespace_name(ns)}; move them to one library first (npdeq.backend.to_numpy "
                "or Module.to)"
            )
    if found is None:
        raise TypeError("array_namespace() needs at least one array argument")
    return found


def _lookup_namespace(a: Any) -> Any:
    if isinstance(a, np.generic) or type(a) is np.ndarray:
        ns = default_namespace()
    else:
        try:
            ns = array_api_compat.array_namespace(a)
        except TypeError as exc:
            raise TypeError(
                f"expected an array of a supported library (numpy, cupy, array_api_strict, ...), "
                f"got {type(a).__name__}"
            ) from exc
    _NAMESPACE_BY_TYPE[type(a)] = ns
    return ns


# Types that hold an array (the tape's Tensor) and how to read it: the layers below the tape
# (the solvers) accept them without importing the tape.
_ARRAY_WRAPPERS: dict[type, Callable[[Any], Any]] = {}


def register_array_wrapper(cls: type, unwrap: Callable[[Any], Any]) -> None:
    """Declare ``cls`` a wrapper of an array that ``unwrap(obj)`` returns (detached).

    :mod:`npdeq.autodiff` registers :class:`~npdeq.Tensor` this way, so the raw-array layers
    (the solvers) take Tensors without importing the tape.
    """
    _ARRAY_WRAPPERS[cls] = unwrap


def unwrap_array(x: Any) -> Any:
    """The array inside ``x`` if ``x``'s type is a registered wrapper, else ``x`` itself.

    Example:
        >>> import numpy as np
        >>> a = np.ones(2)
        >>> unwrap_array(a) is a
        True
    """
    unwrap = _ARRAY_WRAPPERS.get(type(x))
    if unwrap is None:
        for cls, found in list(_ARRAY_WRAPPERS.items()):
            if isinstance(x, cls):  # a subclass (nn.Parameter): remembered by its type
                _ARRAY_WRAPPERS[type(x)] = unwrap = found
                break
        else:
            return x
    return unwrap(x)


def default_asarray(obj: Any, dtype: Any = None, copy: bool | None = None) -> Array:
    """Convert a Python scalar or nested list to an array of the default namespace (NumPy)."""
    return default_namespace().asarray(obj, dtype=dtype, copy=copy)


def namespace_name(xp: Any) -> str:
    """Short name of a namespace: ``'numpy'``, ``'cupy'``, ``'array_api_strict'``, ..."""
    name = getattr(xp, "__name__", str(xp))
    return name.replace("array_api_compat.", "")


def is_numpy_array(x: Any) -> bool:
    """Whether ``x`` is a NumPy array or NumPy scalar (cheap: no namespace lookup)."""
    return isinstance(x, (np.ndarray, np.generic))


def is_numpy(xp: Any) -> bool:
    """Whether ``xp`` is the NumPy namespace."""
    return (xp is _NUMPY_NS and xp is not None) or getattr(xp, "__name__", "") in (
        "numpy", "array_api_compat.numpy")


def is_cupy(xp: Any) -> bool:
    """Whether ``xp`` is the CuPy namespace."""
    return getattr(xp, "__name__", "") in ("cupy", "array_api_compat.cupy")


def device(x: Array) -> Any:
    """The device of array ``x`` (``'cpu'`` for NumPy), as the array API standard defines it."""
    if isinstance(x, (np.ndarray, np.generic)):
        return "cpu"
    return array_api_compat.device(x)


def check_same_namespace(arrays: Any, what: str = "this operation") -> Any:
    """Return the common namespace of ``arrays`` after checking that devices match too.

    Args:
        arrays: a sequence of arrays (``None`` and Python scalars are skipped).
        what: the operation's name, used in error messages.

    Returns:
        The shared namespace.

    Raises:
        TypeError: arrays from different libraries.
        ValueError: arrays on different devices.
    """
    arrays = [a for a in arrays if a is not None and type(a) not in _PY_SCALARS]
    try:
        xp = array_namespace(*arrays)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None
    if len(arrays) > 1 and xp is not _NUMPY_NS:
        first = device(arrays[0])
        for a in arrays[1:]:
            if device(a) != first:
                raise ValueError(
                    f"{what}: arrays are on different devices ({first} and {device(a)}); "
                    "move them to one device first"
                )
    return xp


def cupy_available() -> bool:
    """Whether CuPy is importable and sees at least one CUDA device. Never imports at startup."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        cp = importlib.import_module("cupy")
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device, broken install: all mean "not available"
        return False


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any supported library to a NumPy array on the host.

    Tensors are unwrapped through their ``data`` attribute.
    """
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    inner = unwrap_array(x)  # an npdeq Tensor (registered by the tape): its array
    if inner is not x:
        return to_numpy(inner)
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    xp = array_namespace(x)
    if namespace_name(xp) == "array_api_strict":
        # strict refuses __array__ off its default device; its buffer is a NumPy array.
        return np.array(x._array, copy=True)
    return np.asarray(x)


def to_scalar(x: Array) -> float | bool | int:
    """Convert a 0-d array to a Python scalar: the one place npdeq synchronises with the host.

    Solvers route every host read (their one convergence check per iteration) through here, so
    tests can count synchronisations by patching this function.
    """
    if type(x) is np.ndarray or isinstance(x, np.generic):
        return x.item()  # the hot path of every solver iteration on NumPy
    xp = array_namespace(x)
    if x.dtype == xp.bool:
        return bool(x)
    if xp.isdtype(x.dtype, "integral"):
        return int(x)
    return float(x)


def host_flags(*flags: Array) -> tuple[bool, ...]:
    """Read several 0-d boolean arrays to the host in one :func:`to_scalar` call.

    Args:
        *flags: 0-d boolean arrays of one namespace (at most 31).

    Returns:
        The flags as Python bools, in order.
    """
    xp = array_namespace(*flags)
    code = xp.astype(flags[0], xp.int32)
    for i, flag in enumerate(flags[1:], start=1):
        code = code + xp.astype(flag, xp.int32) * (1 << i)
    # Looked up on the package so that tests counting syncs (by patching
    # ``npdeq.backend.to_scalar``) count this read too.
    value = int(sys.modules["npdeq.backend"].to_scalar(code))
    return tuple(bool(value >> i & 1) for i in range(len(flags)))


def any_true(mask: Array) -> Array:
    """``xp.any(mask)`` as a 0-d array (no host synchronisation: pass it to :func:`to_scalar`).

    NumPy's method is several times cheaper than the namespace's wrapper on the tiny masks a
    solver checks every iteration.
    """
    if type(mask) is np.ndarray:
        return mask.any()
    return array_namespace(mask).any(mask)


def ignore_float_errors() -> Any:
    """A fresh context manager under which floating-point overflow, invalid operations and
    division by zero raise no warnings, for every namespace: NumPy's ``errstate`` covers NumPy
    and the libraries that compute through it (``array_api_strict``); CuPy never warns.

    Example:
        >>> import numpy as np
        >>> with ignore_float_errors():
        ...     print(np.float64(1.0) / 0.0)
        inf
    """
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")
