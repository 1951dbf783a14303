"""Operators and methods of :class:`~npdeq.autodiff.tensor.Tensor`, bound to the ops.

Kept apart from ``tensor.py`` so that the Tensor type does not import the ops that are built
on it; :mod:`npdeq.autodiff` imports this module once, after the ops.
"""

from __future__ import annotations

import math
from typing import Any

from npdeq import backend
from npdeq.autodiff import ops
from npdeq.autodiff.engine import backward
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.ops import linalg_functions
from npdeq.autodiff.tensor import Tensor


def _backward(self, grad: Any = None, retain_graph: bool | None = None,
              create_graph: bool = False) -> None:
    """Accumulate the gradient of this tensor into ``.grad`` of the leaves: the engine's
    :func:`~npdeq.autodiff.engine.backward` with ``grad`` its ``grad_tensors``."""
    backward(self, grad, retain_graph=retain_graph, create_graph=create_graph)


def _reflect(op):
    return lambda self, other: op(other, self)


def _compare(name):
    def method(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(getattr(self.data, name)(other))
    method.__name__ = name
    return method


def _reshape(self, *shape):
    return ops.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int)
                       else shape)


def _permute(self, *axes):
    return ops.permute(self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes)


def _transpose(self, *axes):
    if not axes:
        return ops.permute(self, None)
    return _permute(self, *axes)


_METHODS = {
    "__add__": ops.add, "__radd__": _reflect(ops.add),
    "__sub__": ops.sub, "__rsub__": _reflect(ops.sub),
    "__mul__": ops.mul, "__rmul__": _reflect(ops.mul),
    "__truediv__": ops.div, "__rtruediv__": _reflect(ops.div),
    "__pow__": ops.pow, "__rpow__": _reflect(ops.pow),
    "__matmul__": ops.matmul, "__rmatmul__": _reflect(ops.matmul),
    "__neg__": ops.neg, "__pos__": lambda self: self, "__abs__": ops.abs,
    "__getitem__": ops.getitem,
    "__lt__": _compare("__lt__"), "__le__": _compare("__le__"),
    "__gt__": _compare("__gt__"), "__ge__": _compare("__ge__"),
    "__eq__": _compare("__eq__"), "__ne__": _compare("__ne__"),
    "sum": ops.sum, "mean": ops.mean, "var": ops.var, "max": ops.max, "min": ops.min,
    "std": ops.std, "prod": ops.prod, "cumsum": ops.cumsum, "cumprod": ops.cumprod,
    "logsumexp": ops.logsumexp, "softmax": ops.softmax, "log_softmax": ops.log_softmax,
    "exp": ops.exp, "log": ops.log, "sqrt": ops.sqrt, "abs": ops.abs, "tanh": ops.tanh,
    "sigmoid": ops.sigmoid, "relu": ops.relu, "clip": ops.clip,
    "reshape": _reshape, "view": _reshape, "flatten": ops.flatten, "squeeze": ops.squeeze,
    "expand_dims": ops.expand_dims, "unsqueeze": lambda self, dim: ops.expand_dims(self, dim),
    "broadcast_to": ops.broadcast_to, "expand": ops.broadcast_to,
    "permute": _permute, "transpose": _transpose, "swapaxes": ops.swapaxes,
    "matmul": ops.matmul,
    "norm": linalg_functions.tensor_norm, "trace": ops.trace, "diagonal": ops.diagonal,
    "flip": ops.flip,
    "T": property(lambda self: ops.permute(self, None)), "backward": _backward,
    "mT": property(lambda self: ops.swapaxes(self, -1, -2)),
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)  # primitives bind as methods, like functions


# --- PyTorch habits ------------------------------------------------------------------------
# Names a porting PyTorch user reaches for. Where npdeq follows NumPy instead (max/min/var
# with dim=, squeeze of a non-unit axis), the error says what to write.

def _dim_alias(op, what):
    """``op`` also taking PyTorch's ``dim=``/``keepdim=`` for ``axis=``/``keepdims=`` (same
    meaning)."""
    def method(self, *args, dim=None, keepdim=None, **kwargs):
        for torch_name, name, value in (("dim", "axis", dim), ("keepdim", "keepdims", keepdim)):
            if value is None:
                continue
            if name in kwargs or (name == "axis" and args):
                raise TypeError(f"{what}: give {name}= or {torch_name}=, not both")
            kwargs[name] = value
        return op(self, *args, **kwargs)
    method.__name__ = what.rsplit(".", 1)[-1]
    method.__doc__ = (f"{getattr(op, '__doc__', None) or ''}\n\n"
                      "``dim=``/``keepdim=`` (PyTorch's names) are accepted for "
                      "``axis=``/``keepdims=``.")
    return method


def _numpy_only(op, what, advice):
    """``op`` refusing PyTorch's ``dim=``/``keepdim=``, whose meaning differs here."""
    def method(self, *args, dim=None, keepdim=None, **kwargs):
        if dim is not None or keepdim is not None:
            raise TypeError(f"{what} follows NumPy, not PyTorch: {advice}")
        return op(self, *args, **kwargs)
    method.__name__ = what.rsplit(".", 1)[-1]
    method.__doc__ = f"{getattr(op, '__doc__', None) or ''}\n\nPyTorch users: {advice}"
    return method


_EXTREME = ("write axis= (and keepdims=); it returns the values only, not PyTorch's "
            "(values, indices) pair (t.max(1) is NumPy's t.max(axis=1), so 'v, i = t.max(1)' "
            "would unpack rows): use t.max(axis=d) and t.argmax(axis=d)")
_VARIANCE = ("write axis= (and keepdims=); the default is the population variance "
             "(correction=0), PyTorch's the sample variance: pass correction=1 for PyTorch's "
             "value")


def _arg_extreme(name):
    def method(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """Indices of the extreme values along ``axis`` (NumPy's; ``dim``/``keepdim``
        accepted), an integer Tensor outside the tape."""
        axis = axis if dim is None else dim
        keepdims = keepdims if keepdim is None else keepdim
        xp = backend.array_namespace(self.data)
        return Tensor(getattr(xp, name)(self.data, axis=axis, keepdims=keepdims))
    method.__name__ = name
    return method


class _Size(int):
    """The element count (NumPy's ``size``), callable for PyTorch's ``t.size()`` (the shape)
    and ``t.size(d)`` (the length of axis ``d``)."""

    def __new__(cls, value: int, shape: tuple[int, ...] = ()) -> "_Size":
        size = super().__new__(cls, value)
        size.shape = shape
        return size

    def __call__(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self.shape if dim is None else self.shape[dim]

    def __reduce__(self):
        return int, (int(self),)


def _size(self) -> _Size:
    """The number of elements, as NumPy (an int). Calling it is PyTorch's ``size()``:
    ``t.size()`` is the shape and ``t.size(d)`` the length of axis ``d``."""
    return _Size(math.prod(self.data.shape), tuple(self.data.shape))


def _transpose_torch(self, *axes):
    """Permute axes as NumPy (``t.transpose()`` reverses them, ``t.transpose((1, 0, 2))``
    permutes), except that exactly two ints swap those two axes, as PyTorch's
    ``t.transpose(0, 1)`` (NumPy would read them as a full permutation: the identity or an
    error, never what a PyTorch user means)."""
    if len(axes) == 2 and all(isinstance(a, int) for a in axes):
        for a in axes:
            if not -self.ndim <= a < self.ndim:
                raise ValueError(f"transpose: axis {a} is out of range for a tensor of "
                                 f"{self.ndim} dimensions")
        return ops.swapaxes(self, *axes)
    return _transpose(self, *axes)


def _chunk(self, chunks, axis=0, *, dim=None):
    """Split into ``chunks`` pieces along ``axis`` (``dim`` accepted) as ``torch.chunk``:
    pieces of ``ceil(n / chunks)``, the last smaller, possibly fewer than ``chunks``.
    Returns a tuple of Tensors (views on the tape)."""
    axis = axis if dim is None else dim
    chunks = backend.check_int("chunks", chunks, 1, owner="chunk")
    if not -self.ndim <= axis < max(self.ndim, 1) or self.ndim == 0:
        raise ValueError(f"chunk: axis {axis} is out of range for a tensor of shape "
                         f"{self.shape}")
    axis %= self.ndim
    n = self.shape[axis]
    step = max(-(-n // chunks), 1)
    head = (slice(None),) * axis
    return tuple(ops.getitem(self, head + (slice(lo, lo + step),))
                 for lo in range(0, max(n, 1), step))


@primitive
def _clone(a):
    return backend.array_namespace(a).asarray(a, copy=True)


defvjp(_clone, lambda g, ans, a: g)


@primitive(name="to")
def _move(a, xp=None, device=None, dtype=None):
    out = a if xp is None else backend.move_array(a, xp, device)
    if dtype is not None and out.dtype != dtype:
        out = backend.array_namespace(out).astype(out, dtype)
    return out


# The move back to the input's namespace, device and dtype is the same op.
defvjp(_move, lambda g, ans, a, xp=None, device=None, dtype=None: _move(
    g, xp=backend.array_namespace(a.data), device=backend.device(a.data), dtype=a.data.dtype))

_DEVICE_NAMES = ("cpu", "numpy", "gpu", "cuda")


def _is_target(arg) -> bool:
    """A namespace, device, array or device name (else ``arg`` is taken as a dtype)."""
    if isinstance(arg, str):
        return arg.lower() in _DEVICE_NAMES or arg.lower().startswith("cuda:")
    if hasattr(arg, "asarray") or type(arg).__name__ == "Device":
        return True
    try:
        backend.array_namespace(arg)
    except TypeError:
        return False
    return True


def _dtype_in(xp, dtype):
    found = backend.namespace_dtype(xp, dtype)
    if found is None:
        raise ValueError(f"to: unknown dtype {dtype!r} for {backend.namespace_name(xp)}")
    return found


def _to(self, *args, dtype=None, device=None, xp=None, copy=False, non_blocking=False):
    """Move and/or cast, as PyTorch's ``Tensor.to``: ``t.to('cuda')``, ``t.to('cpu')``,
    ``t.to(dtype)``, ``t.to(device, dtype)``, ``t.to(other)`` (``other``'s namespace,
    device and dtype), plus npdeq's targets (a namespace module, ``'gpu'``, a device
    object; see :meth:`npdeq.nn.Module.to`). Dtypes may be given by name (``'float32'``)
    or as any library's dtype. Recorded on the tape for floating results (the gradient
    moves back); ``non_blocking`` is accepted and ignored.

    Returns:
        ``self`` when nothing changes (and ``copy`` is False), else a new Tensor.

    Raises:
        RuntimeError: a GPU target without CuPy or a GPU.
        ValueError, TypeError: an unknown target or dtype.
    """
    if len(args) > 2:
        raise TypeError(f"to() takes at most a target and a dtype, got {len(args)} arguments")
    target = device if device is not None else xp
    for arg in args:
        if isinstance(arg, Tensor):
            target, dtype = arg.data, arg.data.dtype
        elif _is_target(arg):
            target = arg
            if hasattr(arg, "dtype") and hasattr(arg, "shape"):
                dtype = arg.dtype
        else:
            dtype = arg
    here = backend.array_namespace(self.data)
    ns, where = (None, None) if target is None else backend.resolve_target(target)
    if dtype is not None:
        dtype = _dtype_in(here if ns is None else ns, dtype)
    moved = ns is not None and (ns is not here or (where is not None
                                                   and where != backend.device(self.data)))
    if not moved and (dtype is None or dtype == self.data.dtype) and not copy:
        return self
    kinds = ("real floating", "complex floating")
    if (here.isdtype(self.data.dtype, kinds) if dtype is None
            else (here if ns is None else ns).isdtype(dtype, kinds)):
        out = _move(self, xp=ns if moved else None, device=where, dtype=dtype)
    else:
        out = Tensor(_move.fun(self.data, ns if moved else None, where, dtype))
    if copy and out.data is self.data:
        return _clone(out)
    return out


def _cuda(self, device=None, non_blocking=False):
    """``self.to('cuda')`` (CuPy's current device), or ``self.to('cuda:N')`` for
    ``device=N``, as PyTorch's ``Tensor.cuda``."""
    return _to(self, "cuda" if device is None else f"cuda:{int(device)}")


def _cast(dtype_name):
    def method(self):
        return _to(self, dtype_name)
    method.__name__ = {"float32": "float", "float64": "double", "int64": "long"}[dtype_name]
    method.__doc__ = (f"``self.to('{dtype_name}')``: same namespace and device (differentiable "
                      "for floating results).")
    return method


_TORCH = {
    "sum": _dim_alias(ops.sum, "Tensor.sum"), "mean": _dim_alias(ops.mean, "Tensor.mean"),
    "logsumexp": _dim_alias(ops.logsumexp, "Tensor.logsumexp"),
    "softmax": _dim_alias(ops.softmax, "Tensor.softmax"),
    "log_softmax": _dim_alias(ops.log_softmax, "Tensor.log_softmax"),
    "squeeze": _dim_alias(ops.squeeze, "Tensor.squeeze"),
    "max": _numpy_only(ops.max, "Tensor.max", _EXTREME),
    "min": _numpy_only(ops.min, "Tensor.min", _EXTREME.replace("max", "min")),
    "var": _numpy_only(ops.var, "Tensor.var", _VARIANCE),
    "std": _numpy_only(ops.std, "Tensor.std", _VARIANCE.replace("variance", "deviation")),
    "prod": _dim_alias(ops.prod, "Tensor.prod"), "cumsum": _dim_alias(ops.cumsum, "Tensor.cumsum"),
    "cumprod": _dim_alias(ops.cumprod, "Tensor.cumprod"),
    "argmax": _arg_extreme("argmax"), "argmin": _arg_extreme("argmin"),
    "size": property(_size), "numel": lambda self: int(_size(self)),
    "dim": lambda self: self.ndim, "transpose": _transpose_torch, "chunk": _chunk,
    "clone": lambda self: _clone(self), "to": _to,
    "cpu": lambda self: _to(self, "cpu"), "cuda": _cuda,
    "float": _cast("float32"), "double": _cast("float64"), "long": _cast("int64"),
}

for _name, _fn in _TORCH.items():
    setattr(Tensor, _name, _fn)


# --- NumPy's ndarray methods and the array functions PyTorch also has as methods ----------
# (``t % 2`` is NumPy's and PyTorch's remainder: the sign of the divisor.)
_NUMPY_METHODS = {
    "__mod__": ops.mod, "__rmod__": _reflect(ops.mod),
    "dot": ops.dot, "ravel": ops.ravel, "inner": ops.inner, "kron": ops.kron,
    "moveaxis": ops.moveaxis, "fliplr": ops.fliplr, "flipud": ops.flipud, "rot90": ops.rot90,
    "diff": ops.diff, "diag": ops.diag, "nan_to_num": ops.nan_to_num, "sinc": ops.sinc,
    "fmax": ops.fmax, "fmin": ops.fmin, "remainder": ops.mod, "logaddexp2": ops.logaddexp2,
}

for _name, _fn in _NUMPY_METHODS.items():
    setattr(Tensor, _name, _fn)
