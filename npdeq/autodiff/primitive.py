"""The primitive registry: an op's raw forward and its VJP rules, declared side by side.

A primitive is its public op: decorate the raw forward (a function of arrays), and calling
it with Tensors or arrays unwraps them, runs it, and, when grad mode is on and an argument
requires a gradient, records a :class:`Node` on the Tensor it returns. It keeps the
function's name and docstring and binds as a method (``Tensor.exp = exp``).
:func:`defvjp` attaches one rule per positional argument::

    @primitive
    def exp(x):
        return array_namespace(x).exp(x)
    defvjp(exp, lambda g, ans, x: g * ans)

Naming: where the public op is a Python function around a primitive (argument checks,
several primitives), the primitive is ``_<op>``; a primitive's name in error messages is
its function's without the leading underscore (or ``name=``, for lambdas).

A rule ``rule(g, ans, *args, **kwargs)`` gets the output's cotangent ``g``, the output
Tensor ``ans`` and the op's own arguments (Tensors where Tensors were passed). Rules use
npdeq ops (so ``create_graph`` can record them) and close over no outputs (no reference
cycles). Summing a cotangent down to a broadcast input's shape is the engine's job.
"""

from __future__ import annotations

import functools
import itertools
import types
from typing import Any, Callable

from npdeq import backend
from npdeq.autodiff.mode import _mode
from npdeq.autodiff.tensor import Tensor

__all__ = ["Node", "Primitive", "primitive", "defvjp", "defvjp_argnums", "tape_clock"]

_PY_SCALARS = (bool, int, float, complex)


_clock = itertools.count()


def tape_clock() -> int:
    """A counter that grows with every recorded node: nodes made after a reading have a
    larger ``clock``. Gradient rules use it to tell the tensors a function made from the
    ones it closed over."""
    return next(_clock)


class Node:
    """One recorded call: the primitive, its arguments, and the parents that need gradients.

    ``parents`` is a tuple of ``(argnum, Tensor)`` pairs; ``clock`` the tape clock at
    recording; ``saved`` the arrays the op saw (its arguments' and its output's ``.data``),
    which :meth:`check_saved` compares with what the Tensors hold at backward time. After a backward pass without ``retain_graph`` the node is freed: its
    arguments are dropped (so their arrays can be collected) and a second backward through
    it raises ``RuntimeError``.
    """

    __slots__ = ("primitive", "args", "kwargs", "parents", "freed", "clock", "saved")

    def __init__(self, primitive: "Primitive", args: tuple, kwargs: dict,
                 parents: tuple, saved: tuple = ()) -> None:
        self.primitive = primitive
        self.args = args
        self.kwargs = kwargs
        self.parents = parents
        self.freed = False
        self.clock = next(_clock)
        self.saved = saved

    def free(self) -> None:
        self.args = None
        self.kwargs = None
        self.parents = ()
        self.saved = ()
        self.freed = True

    def check_saved(self, ans: Tensor) -> None:
        """Raise if a Tensor this op used (or its output ``ans``) had its ``.data`` replaced
        since the op was recorded: the VJP rules read the arrays at backward time, so the
        gradient would silently belong to other values (PyTorch's version-counter check).

        Raises:
            RuntimeError: naming the op, the argument and its shape.
        """
        if not self.saved:
            return
        *inputs, out = self.saved
        if ans.data is not out:
            changed = "its output"
        else:
            changed = next((f"argument {i}" for i, (a, d) in enumerate(zip(self.args, inputs))
                            if isinstance(a, Tensor) and a.data is not d), None)
            if changed is None:
                return
        raise RuntimeError(
            f"{changed} of '{self.primitive.name}' had its .data replaced after the operation "
            "was recorded, so the gradient would be computed from other values: assign .data "
            "(e.g. an optimizer step) only after backward(), or record the forward again")


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
        record = _mode.enabled
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
            return Tensor._from_node(out, Node(self, args, kwargs, tuple(parents),
                                               tuple(raw)))
        return Tensor(out)


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
    """Register VJP rules for ``prim``, one per positional argument, in order.

    Args:
        prim: the primitive.
        *rules: ``rule(g, ans, *args, **kwargs)`` returning the cotangent of that argument,
            or ``None`` for an argument that is not differentiable (integers, flags).

    Returns:
        ``prim``.
    """
    for argnum, rule in enumerate(rules):
        if rule is not None:
            prim.vjps[argnum] = rule
    return prim


def defvjp_argnums(prim: Primitive, rule: Callable[..., Any]) -> Primitive:
    """Register one rule that returns the cotangents of several arguments together.

    For ops whose cotangents share an expensive step (an adjoint solve, a reverse sweep):
    the engine calls ``rule(argnums, g, ans, *args, **kwargs)`` once per node with the
    positions that need a gradient and expects a tuple of cotangents in that order
    (HIPS autograd's ``defvjp_argnums``).

    Args:
        prim: the primitive.
        rule: the shared rule.

    Returns:
        ``prim``.
    """
    prim.vjp_argnums = rule
    return prim
