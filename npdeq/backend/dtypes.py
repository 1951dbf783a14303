"""The default floating-point dtype: what new parameters and tensors made from Python numbers
get when no dtype is asked for (float64 unless set), like ``torch.set_default_dtype``.

The default is stored as a name (``'float32'`` or ``'float64'``), so it applies in every
namespace: :func:`get_default_dtype` with a namespace returns that namespace's dtype object.

Only new arrays follow the default: arrays passed in keep their dtype, and nothing already
made is converted.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

__all__ = ["set_default_dtype", "get_default_dtype", "default_dtype", "float_dtype_name",
           "namespace_dtype"]

# The dtype a Python scalar type stands for (float is float64, as in NumPy).
PYTHON_DTYPES = {float: "float64", int: "int64", bool: "bool", complex: "complex128"}


def namespace_dtype(xp: Any, dtype: Any) -> Any:
    """``dtype`` as a dtype object of namespace ``xp``, or ``None`` if it names none.

    ``dtype`` may be a name (``'float32'``), a Python type (``float`` is float64, as NumPy),
    a NumPy dtype or scalar type, or another namespace's dtype; only boolean and numeric
    dtypes are found. Callers raise their own error on ``None``.

    Example:
        >>> import numpy as np
        >>> import array_api_strict as xp
        >>> namespace_dtype(xp, np.float32) == xp.float32, namespace_dtype(xp, 'f7')
        (True, None)
    """
    if isinstance(dtype, str):
        key = dtype
    elif isinstance(dtype, type) and dtype in PYTHON_DTYPES:
        key = PYTHON_DTYPES[dtype]
    else:
        key = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    found = getattr(xp, str(key).rsplit(".", 1)[-1], None)
    try:
        return found if found is not None and xp.isdtype(found, ("bool", "numeric")) else None
    except (TypeError, ValueError):
        return None

# The array API's real floating types; float16 and complex types are not accepted.
_FLOATS = ("float32", "float64")
_STATE = {"name": "float64"}


def float_dtype_name(dtype: Any, what: str = "dtype") -> str:
    """The name (``'float32'`` or ``'float64'``) of a real floating dtype given as a name, a
    NumPy dtype or scalar type, or another namespace's dtype object (``array_api_strict``,
    CuPy).

    Args:
        dtype: the dtype.
        what: the argument's name in the error message.

    Returns:
        ``'float32'`` or ``'float64'``.

    Raises:
        TypeError: anything else (integer, boolean, complex or half types, Python's
            ``float``, ``None``, an unknown name).

    Example:
        >>> float_dtype_name(np.float32), float_dtype_name('float64')
        ('float32', 'float64')
    """
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, np.dtype) or (isinstance(dtype, type)
                                         and issubclass(dtype, np.generic)):
        name = np.dtype(dtype).name
    elif dtype is None or isinstance(dtype, type):  # None, Python's float, other classes
        name = None
    else:  # another namespace's dtype object, e.g. array_api_strict.float32
        name = str(dtype).rpartition(".")[2]
    if name not in _FLOATS:
        raise TypeError(f"{what} must be a real floating-point dtype, float32 or float64 (a "
                        f"name, or a NumPy or array-namespace dtype), got {dtype!r}")
    return name


def set_default_dtype(dtype: Any) -> None:
    """Set the dtype of new floating-point parameters and tensors (``torch.set_default_dtype``).

    It applies to what is created afterwards without an explicit dtype: the parameters of
    :mod:`npdeq.nn` layers, and :func:`npdeq.tensor` / :class:`npdeq.Tensor` of Python
    floats and lists (arrays keep their own dtype). Existing parameters are not converted
    (``model.to(dtype=...)`` does that).

    Args:
        dtype: ``'float32'`` or ``'float64'``, or that dtype of NumPy or any namespace.

    Raises:
        TypeError: any other dtype (integers, complex, float16, ...).

    Example:
        >>> import npdeq
        >>> npdeq.set_default_dtype('float32')
        >>> npdeq.tensor([1.0, 2.0]).dtype
        dtype('float32')
        >>> npdeq.set_default_dtype('float64')
    """
    _STATE["name"] = float_dtype_name(dtype)


def get_default_dtype(xp: Any = None) -> Any:
    """The default floating-point dtype (see :func:`set_default_dtype`).

    Args:
        xp: a namespace; ``None`` for NumPy.

    Returns:
        ``xp``'s dtype object (a NumPy dtype without ``xp``: it compares equal to its name
        and to ``numpy.float32``/``numpy.float64``).

    Example:
        >>> import npdeq
        >>> npdeq.get_default_dtype() == 'float64'
        True
    """
    if xp is None:
        return np.dtype(_STATE["name"])
    return getattr(xp, _STATE["name"])


@contextlib.contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """A context in which :func:`set_default_dtype` is ``dtype``; the previous default is
    restored on exit, also after an exception.

    Raises:
        TypeError: as :func:`set_default_dtype`, before the context is entered.

    Example:
        >>> import npdeq
        >>> with npdeq.default_dtype('float32'):
        ...     layer = npdeq.nn.Linear(2, 2)
        >>> layer.weight.dtype, npdeq.get_default_dtype()
        (dtype('float32'), dtype('float64'))
    """
    name = float_dtype_name(dtype)
    previous = _STATE["name"]
    _STATE["name"] = name
    try:
        yield
    finally:
        _STATE["name"] = previous
