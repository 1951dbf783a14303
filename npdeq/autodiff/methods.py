"""Operators and methods of :class:`~npdeq.autodiff.tensor.Tensor`, bound to the ops.

Kept apart from ``tensor.py`` so that the Tensor type does not import the ops that are built
on it; :mod:`npdeq.autodiff` imports this module once, after the ops.
"""

from __future__ import annotations

from npdeq.autodiff import ops
from npdeq.autodiff.ops import linalg_functions
from npdeq.autodiff.tensor import Tensor


def _method(op):
    # Primitives are not descriptors; wrap them so that they bind ``self`` like functions.
    def method(self, *args, **kwargs):
        return op(self, *args, **kwargs)
    method.__name__ = getattr(op, "name", getattr(op, "__name__", "method"))
    method.__doc__ = getattr(op, "__doc__", None)
    return method


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


_PLAIN = {"__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__rpow__", "__rmatmul__",
          "__pos__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
          "reshape", "view", "permute", "transpose", "unsqueeze"}

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
    "T": property(lambda self: ops.permute(self, None)),
    "mT": property(lambda self: ops.swapaxes(self, -1, -2)),
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn if isinstance(_fn, property) or _name in _PLAIN else _method(_fn))
