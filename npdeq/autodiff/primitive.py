"""The primitive registry: an op's raw forward and its VJP rules, declared side by side.

A primitive is its public op: ``@primitive`` on a function of arrays keeps the function's
name and docstring and binds as a method. Called with Tensors or arrays, it runs the
function on the arrays and, when grad mode is on and an argument requires a gradient,
records a :class:`~npdeq.autodiff.graph.Node` on the Tensor it returns. Where a public op is
a Python function around a primitive, the primitive is ``_<op>``; a primitive's name in
error messages is its function's without the underscore.

A rule ``rule(g, ans, *args, **kwargs)`` gets the output's cotangent ``g``, the output Tensor
``ans`` and the op's own arguments. Rules use npdeq ops (so ``create_graph`` can record
them) and close over no outputs (no reference cycles); summing a cotangent down to a
broadcast input's shape is the engine's job. A VJP program replays a trace of npdeq's own
rules' primitive calls (:mod:`npdeq.autodiff.replay`), so those never branch in Python on
their cotangent's values; a graph with a rule of another module is walked at every call.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Callable

from npdeq import backend
from npdeq.autodiff.graph import Node
from npdeq.autodiff.mode import call_tracing, grad_mode
from npdeq.autodiff.tensor import Tensor

__all__ = ["Primitive", "primitive", "defvjp", "defvjp_argnums"]

_PY_SCALARS = (bool, int, float, complex)


class Primitive:
    """A differentiable operation; see the module docstring. Create with :func:`primitive`."""

    def __init__(self, fun: Callable[..., Any], name: str | None = None) -> None:
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.name = name or fun.__name__.lstrip("_")
        if fun.__name__ == "<lambda>":
            self.__name__ = self.__qualname__ = self.name
        if self.__doc__ is None:
            del self.__doc__  # the class's
        self.vjps: dict[int, Callable[..., Any]] = {}
        # A rule computing the cotangents of several arguments at once (defvjp_argnums).
        self.vjp_argnums: Callable[..., Any] | None = None

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # As a class attribute (Tensor.exp), bind like a function: t.exp() is exp(t).
        return self if obj is None else types.MethodType(self, obj)

    def __repr__(self) -> str:
        return f"<npdeq primitive {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        raw = list(args)
        parents = []
        first = None
        record = grad_mode.enabled
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                d = raw[i] = a.data
                if record and a.requires_grad:
                    parents.append((i, a))
            elif a is None or type(a) in _PY_SCALARS or not hasattr(a, "shape"):
                continue
            else:
                d = a
            if first is None:
                first = d
            elif type(d) is not type(first) or not backend.is_numpy_array(d):
                # Different array types (or a non-NumPy library): check namespace and device
                # so the user sees which op mixed what, not a deep library error.
                backend.check_same_namespace(
                    [x.data if isinstance(x, Tensor) else x for x in args], self.name)
        out = self.fun(*raw, **kwargs)
        if parents:
            for argnum, _ in parents:
                if argnum not in self.vjps and self.vjp_argnums is None:
                    raise NotImplementedError(
                        f"{self.name}: no VJP rule for argument {argnum}; it cannot be "
                        "differentiated with respect to that argument")
            raw.append(out)  # what the op saw, checked against the Tensors at backward
            result = Tensor._from_node(out, Node(self, args, kwargs, tuple(parents),
                                                 tuple(raw)))
        else:
            result = Tensor(out)
        trace = call_tracing.trace
        if trace is not None:
            trace.record(self, args, kwargs, result)
        return result


def primitive(fun: Callable[..., Any] | None = None, *, name: str | None = None):
    """Turn a function on raw arrays into a differentiable :class:`Primitive`.

    Args:
        fun: the raw forward, ``fun(*arrays, **params) -> array``.
        name: the op's name in error messages (default ``fun.__name__`` without a
            leading underscore).

    Returns:
        The primitive, with ``fun``'s name and docstring (usable as a decorator, with or
        without ``name=``).

    Example:
        >>> @primitive
        ... def cube(x):
        ...     return x * x * x
        >>> defvjp(cube, lambda g, ans, x: g * 3 * x * x)
        <npdeq primitive cube>
    """
    if fun is None:
        return lambda f: Primitive(f, name)
    return Primitive(fun, name)


def defvjp(prim: Primitive, *rules: Callable[..., Any] | None) -> Primitive:
    """Register VJP rules for ``prim``, one per positional argument, in order; returns ``prim``.

    Args:
        prim: the primitive.
        *rules: ``rule(g, ans, *args, **kwargs)`` returning the cotangent of that argument,
            or ``None`` for an argument that is not differentiable (integers, flags).
    """
    for argnum, rule in enumerate(rules):
        if rule is not None:
            prim.vjps[argnum] = rule
    return prim


def defvjp_argnums(prim: Primitive, rule: Callable[..., Any]) -> Primitive:
    """Register one rule that returns the cotangents of several arguments together; returns
    ``prim``.

    For ops whose cotangents share an expensive step (an adjoint solve, a reverse sweep):
    the engine calls ``rule(argnums, g, ans, *args, **kwargs)`` once per node with the
    positions that need a gradient and expects a tuple of cotangents in that order
    (HIPS autograd's ``defvjp_argnums``).

    Args:
        prim: the primitive.
        rule: the shared rule.
    """
    prim.vjp_argnums = rule
    return prim
