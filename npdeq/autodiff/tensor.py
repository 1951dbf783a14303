"""The ``Tensor``: an array of any supported namespace plus its place on the tape.

A Tensor made by a recorded operation holds a :class:`~npdeq.autodiff.primitive.Node` (the
primitive, its arguments and the parents that require a gradient); the graph is these parent
pointers, nothing global. Operators and methods (``+``, ``x.sum()``, ``x.backward()``) are
attached by :mod:`npdeq.autodiff.methods`, which can import the ops built on this type.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend

__all__ = ["Tensor"]


PYTHON_DATA = (bool, int, float, complex, list, tuple)


def from_python(data: Any, dtype: Any, xp: Any, device: Any) -> backend.Array:
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
        elif type(data) in PYTHON_DATA:
            data = from_python(data, None, None, None)
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
        t.data, t.grad, t._node, t.requires_grad = data, None, node, True
        return t

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Set ``requires_grad`` in place (leaves only) and return ``self``.

        Raises:
            TypeError: asking for a gradient of an integer or boolean tensor.
            RuntimeError: turning it off on a non-leaf.
        """
        if requires_grad:
            xp = backend.array_namespace(self.data)
            if not xp.isdtype(self.data.dtype, ("real floating", "complex floating")):
                raise TypeError("only floating-point tensors can require gradients, got dtype "
                                f"{self.data.dtype}")
        elif self._node is not None:
            raise RuntimeError("requires_grad can only be turned off on a leaf; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

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
        # An implicit conversion would hide a device copy (CuPy) and drop the tape; without
        # this, np.asarray(tensor) built an object array of 0-d Tensors through __iter__.
        raise TypeError(
            "a Tensor is not converted to a NumPy array implicitly (np.asarray / np.array): "
            "use tensor.numpy() for a NumPy copy on the host, or tensor.data for the array "
            "in its own namespace")

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        ns = backend.namespace_name(backend.array_namespace(self.data))
        return f"Tensor({self.data!r}{grad}, xp={ns})"

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


# The solvers (below the tape) read a Tensor given to them as its array.
backend.register_array_wrapper(Tensor, lambda t: t.data)
