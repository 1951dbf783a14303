"""The ``Tensor``: an array of any supported namespace plus its place on the tape.

A Tensor made by a recorded operation holds a :class:`~npdeq.autodiff.primitive.Node` (the
primitive, its arguments and the parent Tensors that require a gradient); the graph is these
parent pointers, nothing global. Operators and methods (``+``, ``x.sum()``, ``x.backward()``)
are attached by :mod:`npdeq.autodiff.methods`, which can import the ops built on this type.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend

__all__ = ["Tensor", "tensor", "as_tensor", "zeros_like", "ones_like"]


_PYTHON_DATA = (bool, int, float, complex, list, tuple)


def _from_python(data: Any, dtype: Any, xp: Any, device: Any) -> Any:
    """A Python scalar or nested list as an array of ``xp`` (NumPy by default); without a
    ``dtype``, floats take the default dtype (complex numbers its complex counterpart),
    ints and bools keep int64 and bool, as in PyTorch."""
    if xp is None:
        array = backend.default_asarray(data, dtype=dtype)
    else:
        kwargs = {} if device is None else {"device": device}
        array = xp.asarray(data, dtype=dtype, **kwargs)
    if dtype is None and backend.get_default_dtype() != "float64":
        ns = backend.array_namespace(array)
        if array.dtype == ns.float64:
            array = ns.astype(array, backend.get_default_dtype(ns))
        elif array.dtype == ns.complex128:
            array = ns.astype(array, ns.complex64)
    return array


def _is_floating(xp: Any, dtype: Any) -> bool:
    return xp.isdtype(dtype, ("real floating", "complex floating"))


class Tensor:
    """An array that can record the operations applied to it, for reverse-mode gradients.

    Args:
        data: an array of any supported library (NumPy, CuPy, array_api_strict, ...), a
            Tensor (its array is shared, not copied), or a Python scalar / nested list
            (converted to NumPy; floats take :func:`npdeq.get_default_dtype`).
        requires_grad: whether gradients with respect to this tensor are wanted.

    Raises:
        TypeError: ``requires_grad=True`` on a non-floating-point array.

    Example:
        >>> import numpy as np, npdeq
        >>> x = npdeq.Tensor(np.array([1.0, 2.0]), requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad.data
        array([2., 4.])
    """

    __slots__ = ("data", "requires_grad", "grad", "_node", "__weakref__")
    # NumPy must defer to Tensor's reflected operators (ndarray * Tensor -> Tensor.__rmul__).
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data.data
        elif type(data) in _PYTHON_DATA:
            data = _from_python(data, None, None, None)
        self.data = data
        self.grad: Tensor | None = None
        self._node = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_node(cls, data: Any, node: Any) -> "Tensor":
        # The hot path of every recorded op: skip __init__'s checks.
        t = cls.__new__(cls)
        t.data = data
        t.grad = None
        t._node = node
        t.requires_grad = True
        return t

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Set ``requires_grad`` in place (leaves only) and return ``self``.

        Raises:
            TypeError: asking for a gradient of an integer or boolean tensor.
            RuntimeError: turning it off on a non-leaf.
        """
        if requires_grad:
            xp = backend.array_namespace(self.data)
            if not _is_floating(xp, self.data.dtype):
                raise TypeError(
                    f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
                )
        elif self._node is not None:
            raise RuntimeError("requires_grad can only be turned off on a leaf; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    # -- array attributes -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def device(self) -> Any:
        return backend.device(self.data)

    @property
    def xp(self) -> Any:
        """The array namespace of the underlying array."""
        return backend.array_namespace(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded operation."""
        return self._node is None

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        # np.asarray(tensor) used to build an object array of 0-d Tensors through __len__ and
        # __iter__; an implicit conversion would also hide a device copy (CuPy) and drop the
        # tape. PyTorch converts silently (and fails for CUDA tensors or requires_grad).
        raise TypeError(
            "a Tensor is not converted to a NumPy array implicitly (np.asarray / np.array): "
            "use tensor.numpy() for a NumPy copy on the host, or tensor.data for the array "
            "in its own namespace")

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        ns = backend.namespace_name(backend.array_namespace(self.data))
        return f"Tensor({self.data!r}{grad}, xp={ns})"

    # -- conversions ------------------------------------------------------------------------
    def detach(self) -> "Tensor":
        """A new leaf sharing this tensor's array, cut off from the graph."""
        return Tensor(self.data)

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python scalar (a host synchronisation)."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        # The namespace's reshape: array_api_strict arrays have no .reshape method.
        return backend.to_scalar(backend.array_namespace(self.data).reshape(self.data, ()))

    def numpy(self) -> Any:
        """A NumPy copy of the data (copied from the device for CuPy)."""
        return backend.to_numpy(self.data)


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
    if type(data) in _PYTHON_DATA:
        return Tensor(_from_python(data, dtype, xp, device), requires_grad=requires_grad)
    source = backend.array_namespace(data)
    target = source if xp is None else xp
    if target is not source:
        data = backend.to_numpy(data)  # crossing libraries goes through the host
    elif device is None:
        device = backend.device(data)
    kwargs = {} if device is None else {"device": device}
    array = target.asarray(data, dtype=dtype, copy=copy, **kwargs)
    return Tensor(array, requires_grad=requires_grad)


def _like_dtype(xp: Any, dtype: Any) -> Any:
    if dtype is None:
        return None
    found = backend.namespace_dtype(xp, dtype)
    if found is None:
        raise TypeError(f"dtype={dtype!r} is not a dtype of {backend.namespace_name(xp)}")
    return found


def zeros_like(t: Tensor | Any, dtype: Any = None, *, requires_grad: bool = False) -> Tensor:
    """A leaf of zeros with ``t``'s shape, namespace, device and dtype (or ``dtype``: a
    dtype of ``t``'s namespace or its name), as ``numpy.zeros_like``."""
    data = t.data if isinstance(t, Tensor) else t
    xp = backend.array_namespace(data)
    return Tensor(xp.zeros_like(data, dtype=_like_dtype(xp, dtype)),
                  requires_grad=requires_grad)


def ones_like(t: Tensor | Any, dtype: Any = None, *, requires_grad: bool = False) -> Tensor:
    """A leaf of ones with ``t``'s shape, namespace, device and dtype (or ``dtype``), as
    ``numpy.ones_like``."""
    data = t.data if isinstance(t, Tensor) else t
    xp = backend.array_namespace(data)
    return Tensor(xp.ones_like(data, dtype=_like_dtype(xp, dtype)),
                  requires_grad=requires_grad)


# The solvers (below the tape) read a Tensor given to them as its array.
backend.register_array_wrapper(Tensor, lambda t: t.data)
