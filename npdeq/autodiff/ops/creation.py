"""Array creation, returning leaf Tensors: PyTorch's ``tensor`` and ``as_tensor``, and with
NumPy's names and signatures ``zeros``, ``ones``, ``full``, ``empty`` (zeros), ``eye``,
``arange``, ``linspace``, ``zeros_like``, ``ones_like``, ``full_like`` and ``empty_like``.

Arrays are made in NumPy unless ``xp=`` (a namespace module: ``numpy``, ``cupy``,
``array_api_strict``) or ``device=`` (``'cpu'``, ``'cuda'``, ``'cuda:N'``, a device object)
says otherwise. Floating results without a ``dtype`` take :func:`npdeq.get_default_dtype`
(float64 unless set); integer arguments of ``arange`` and integer fill values of ``full``
give int64, as in NumPy and PyTorch. ``dtype`` is a name (``'float32'``), a NumPy dtype or
scalar type, Python's ``float``/``int``/``bool``, or the target namespace's dtype. The
result requires a gradient only with ``requires_grad=True``.

A shape is an int, a tuple or list of ints, or (as in ``torch.zeros(2, 3)``) several ints.

Example:
    >>> import npdeq
    >>> npdeq.zeros(2, 3).shape, npdeq.ones((2, 3)).dtype
    ((2, 3), dtype('float64'))
    >>> npdeq.arange(3).numpy(), npdeq.linspace(0.0, 1.0, 3).numpy()
    (array([0, 1, 2]), array([0. , 0.5, 1. ]))
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.backend.dtypes import PYTHON_DTYPES
from npdeq.autodiff.ops.util import int_arg
from npdeq.autodiff.tensor import PYTHON_DATA, Tensor, from_python

__all__ = ["tensor", "as_tensor", "zeros", "ones", "full", "empty", "eye", "arange", "linspace",
           "zeros_like", "ones_like", "full_like", "empty_like"]

def _target(name: str, xp: Any, device: Any) -> tuple[Any, Any]:
    """The namespace and device (None: the namespace's default) to create the array in."""
    if xp is None and device is None:
        return backend.resolve_target("cpu")
    ns = None if xp is None else backend.resolve_target(xp)[0]
    if device is None:
        return ns, None
    dev_ns, dev = backend.resolve_target(device)
    if ns is not None and dev_ns is not ns:
        raise ValueError(f"{name}: device={device!r} is a device of "
                         f"{backend.namespace_name(dev_ns)}, not of xp="
                         f"{backend.namespace_name(ns)}")
    return dev_ns, dev


def _dtype(name: str, xp: Any, dtype: Any, floating: bool = True) -> Any:
    """``dtype`` as ``xp``'s dtype object; None: the default float (or ``xp``'s int64)."""
    if dtype is None:
        return backend.get_default_dtype(xp) if floating else xp.int64
    found = backend.namespace_dtype(xp, dtype)
    if found is None:
        raise TypeError(f"{name}: dtype={dtype!r} is not a dtype of "
                        f"{backend.namespace_name(xp)} (expected a name such as 'float32', a "
                        "NumPy dtype, or a dtype of the namespace)")
    return found


def _shape(name: str, args: tuple) -> tuple[tuple[int, ...], tuple]:
    """Split positional arguments into a shape and the rest: a leading tuple/list is the
    shape (NumPy), otherwise the leading ints are (PyTorch's varargs)."""
    if args and isinstance(args[0], (tuple, list)):
        dims, rest = list(args[0]), args[1:]
    else:
        n = 0
        while n < len(args) and backend.as_count(args[n]) is not None:
            n += 1
        dims, rest = list(args[:n]), args[n:]
        if not dims:
            raise TypeError(f"{name}: expected a shape (an int, a tuple of ints, or ints), got "
                            f"{args[0] if args else 'nothing'!r}")
    shape = []
    for d in dims:
        count = backend.as_count(d)
        if count is None:
            raise TypeError(f"{name}: each dimension of the shape must be an int, got {d!r} in "
                            f"{tuple(dims)!r}")
        if not count >= 0:
            raise ValueError(f"{name}: dimensions must be >= 0, got shape {tuple(dims)!r}")
        shape.append(count)
    return tuple(shape), rest


def _leaf(array: Any, requires_grad: bool) -> Tensor:
    return Tensor(array, requires_grad=requires_grad)


def _filled(name: str, args: tuple, value: Any, dtype: Any, xp: Any, device: Any,
            requires_grad: bool) -> Tensor:
    shape, rest = _shape(name, args)
    if len(rest) > 1 or (rest and dtype is not None):
        raise TypeError(f"{name}: unexpected positional arguments {rest!r} after the shape "
                        f"{shape} (dtype= is the only other argument)")
    if rest:
        dtype = rest[0]
    ns, dev = _target(name, xp, device)
    dt = _dtype(name, ns, dtype)
    return _leaf(ns.full(shape, value, dtype=dt, device=dev), requires_grad)


def zeros(*shape: Any, dtype: Any = None, xp: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """A Tensor of zeros: ``zeros((2, 3))``, ``zeros(2, 3)``, ``zeros(3, 'float32')``.

    Raises:
        TypeError: a shape or dtype of the wrong kind.
        ValueError: a negative dimension, or a device of another namespace than ``xp``.
    """
    return _filled("zeros", shape, 0, dtype, xp, device, requires_grad)


def empty(*shape: Any, dtype: Any = None, xp: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """As :func:`zeros` (npdeq never hands out uninitialised memory)."""
    return _filled("empty", shape, 0, dtype, xp, device, requires_grad)


def ones(*shape: Any, dtype: Any = None, xp: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A Tensor of ones; arguments as :func:`zeros`."""
    return _filled("ones", shape, 1, dtype, xp, device, requires_grad)


def _fill_value(name: str, value: Any) -> tuple[Any, Any]:
    """A fill value as a Python scalar and the dtype it implies (None: the default float)."""
    if type(value) in PYTHON_DTYPES:
        return value, (None if type(value) is float else PYTHON_DTYPES[type(value)])
    if isinstance(value, Tensor):
        value = value.data
    if hasattr(value, "shape") and tuple(value.shape) == () and hasattr(value, "dtype"):
        return backend.to_scalar(value), str(value.dtype).rsplit(".", 1)[-1]
    raise TypeError(f"{name}: fill_value must be a number (or a 0-d array), got {value!r}")


def full(shape: Any, fill_value: Any, dtype: Any = None, *, xp: Any = None,
         device: Any = None, requires_grad: bool = False) -> Tensor:
    """A Tensor filled with ``fill_value``; without ``dtype`` an int gives int64, a bool
    bool, a float the default dtype, a 0-d array its own dtype.

    Raises:
        TypeError: a shape, fill value or dtype of the wrong kind.
        ValueError: a negative dimension.
    """
    value, implied = _fill_value("full", fill_value)
    return _filled("full", (shape,), value, implied if dtype is None else dtype, xp, device,
                   requires_grad)


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = None, *, xp: Any = None,
        device: Any = None, requires_grad: bool = False) -> Tensor:
    """An ``N x M`` matrix (``M = N`` by default) with ones on the ``k``-th diagonal.

    Raises:
        TypeError: ``N``, ``M`` or ``k`` not an int.
        ValueError: a negative ``N`` or ``M``.
    """
    for arg, value in (("N", N), ("M", M), ("k", k)):
        if value is None and arg == "M":
            continue
        int_arg("eye", arg, value, None if arg == "k" else 0)
    ns, dev = _target("eye", xp, device)
    array = ns.eye(int(N), None if M is None else int(M), k=int(k),
                   dtype=_dtype("eye", ns, dtype), device=dev)
    return _leaf(array, requires_grad)


def _real(name: str, what: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not (
            hasattr(value, "__float__") and not hasattr(value, "__len__")):
        raise TypeError(f"{name}: {what} must be a real number, got {value!r}")
    return value if isinstance(value, (int, float)) else backend.to_scalar(value)


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None, *, xp: Any = None,
           device: Any = None, requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in ``[start, stop)`` (``[0, start)`` with one argument); int64
    when ``start``, ``stop`` and ``step`` are all ints, the default float dtype otherwise.

    Raises:
        TypeError: a bound or step that is not a real number.
        ValueError: ``step == 0``.
    """
    if stop is None:
        start, stop = 0, start
    start, stop, step = (_real("arange", w, v) for w, v in
                         (("start", start), ("stop", stop), ("step", step)))
    if step == 0:
        raise ValueError("arange: step must not be 0, got 0")
    ns, dev = _target("arange", xp, device)
    integral = all(isinstance(v, int) for v in (start, stop, step))
    dt = _dtype("arange", ns, dtype, floating=not integral)
    return _leaf(ns.arange(start, stop, step, dtype=dt, device=dev), requires_grad)


def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True,
             retstep: bool = False, dtype: Any = None, *, xp: Any = None, device: Any = None,
             requires_grad: bool = False) -> Any:
    """``num`` evenly spaced values from ``start`` to ``stop`` (inclusive unless
    ``endpoint=False``); with ``retstep=True`` also the spacing, as ``(Tensor, step)``.

    Raises:
        TypeError: a bound that is not a real number, ``num`` not an int.
        ValueError: a negative ``num``.
    """
    start, stop = _real("linspace", "start", start), _real("linspace", "stop", stop)
    count = int_arg("linspace", "num", num, 0)
    ns, dev = _target("linspace", xp, device)
    dt = _dtype("linspace", ns, dtype)
    out = _leaf(ns.linspace(start, stop, count, dtype=dt, device=dev, endpoint=bool(endpoint)),
                requires_grad)
    if not retstep:
        return out
    div = (count - 1) if endpoint else count
    return out, ((stop - start) / div if div > 0 else float("nan"))


def _like(name: str, a: Any, dtype: Any) -> tuple[Any, Any, Any]:
    data = a.data if isinstance(a, Tensor) else a
    if not hasattr(data, "shape"):
        raise TypeError(f"{name}: a must be an array or Tensor, got {a!r}")
    ns = backend.array_namespace(data)
    dt = data.dtype if dtype is None else _dtype(name, ns, dtype)
    return ns, data, dt


def full_like(a: Any, fill_value: Any, dtype: Any = None, *,
              requires_grad: bool = False) -> Tensor:
    """A Tensor of ``a``'s shape, dtype (unless ``dtype``), namespace and device, filled with
    ``fill_value``."""
    value, _ = _fill_value("full_like", fill_value)
    ns, data, dt = _like("full_like", a, dtype)
    return _leaf(ns.full(tuple(data.shape), value, dtype=dt, device=backend.device(data)),
                 requires_grad)


def empty_like(a: Any, dtype: Any = None, *, requires_grad: bool = False) -> Tensor:
    """Zeros of ``a``'s shape, dtype (unless ``dtype``), namespace and device."""
    ns, data, dt = _like("empty_like", a, dtype)
    return _leaf(ns.zeros(tuple(data.shape), dtype=dt, device=backend.device(data)),
                 requires_grad)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False, *, xp: Any = None,
           device: Any = None) -> Tensor:
    """Create a new leaf Tensor holding a copy of ``data``.

    Args:
        data: array, Tensor, Python scalar or nested list.
        dtype: dtype of the result (in the target namespace); default keeps an array's
            dtype, and Python floats (scalars, lists) take :func:`npdeq.get_default_dtype`
            (float64 unless set; complex numbers the matching complex dtype).
        requires_grad: whether to record operations on it.
        xp: namespace to create the array in; default is ``data``'s own, or NumPy.
        device: device to create it on; default is ``data``'s.

    Returns:
        A leaf Tensor.

    Raises:
        TypeError: ``requires_grad=True`` with an integer dtype.

    Example:
        >>> import npdeq
        >>> npdeq.tensor([1.0, 2.0], requires_grad=True).shape
        (2,)
    """
    return _make(data, dtype, requires_grad, xp, device, copy=True)


def as_tensor(data: Any, dtype: Any = None, requires_grad: bool = False, *, xp: Any = None,
              device: Any = None) -> Tensor:
    """Like :func:`tensor` but shares ``data``'s memory when no conversion is needed.

    A Tensor passed in is returned unchanged when no dtype, namespace or device change is
    asked for.
    """
    if isinstance(data, Tensor) and dtype is None and xp is None and device is None:
        if requires_grad and not data.requires_grad:
            return Tensor(data.data, requires_grad=True)
        return data
    return _make(data, dtype, requires_grad, xp, device, copy=None)


def _make(data, dtype, requires_grad, xp, device, copy):
    if isinstance(data, Tensor):
        data = data.data
    if type(data) in PYTHON_DATA:
        return Tensor(from_python(data, dtype, xp, device), requires_grad=requires_grad)
    source = backend.array_namespace(data)
    target = source if xp is None else xp
    if target is not source:
        data = backend.to_numpy(data)  # crossing libraries goes through the host
    elif device is None:
        device = backend.device(data)
    kwargs = {} if device is None else {"device": device}
    array = target.asarray(data, dtype=dtype, copy=copy, **kwargs)
    return Tensor(array, requires_grad=requires_grad)


def zeros_like(t: Tensor | Any, dtype: Any = None, *, requires_grad: bool = False) -> Tensor:
    """A leaf of zeros with ``t``'s shape, namespace, device and dtype (or ``dtype``: a
    dtype of ``t``'s namespace or its name), as ``numpy.zeros_like``."""
    ns, data, dt = _like("zeros_like", t, dtype)
    return _leaf(ns.zeros_like(data, dtype=dt), requires_grad)


def ones_like(t: Tensor | Any, dtype: Any = None, *, requires_grad: bool = False) -> Tensor:
    """A leaf of ones with ``t``'s shape, namespace, device and dtype (or ``dtype``), as
    ``numpy.ones_like``."""
    ns, data, dt = _like("ones_like", t, dtype)
    return _leaf(ns.ones_like(data, dtype=dt), requires_grad)
