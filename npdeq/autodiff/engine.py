"""Reverse-mode traversal of the tape: ``backward``, ``grad``, ``partial_grad`` and ``vjp``.

Cotangents are summed per tensor along the walk of :func:`~npdeq.autodiff.graph.plan`; rules
are called only for parents that need a gradient and, given ``inputs``, lead to one. Rules
run under ``no_grad`` unless ``create_graph=True`` records them (gradients of gradients).

Each cotangent handed to an input is summed down to the input's shape and cast to its dtype
here, once, for every op. Ops promote as NumPy 2 and the array API (float32 with float64
computes in float64; a Python scalar never promotes, a 0-d array or Tensor does, unlike
PyTorch), but gradients do not: a float32 leaf gets a float32 ``.grad`` (as in PyTorch).
Only real floating cotangents are cast; complex ones pass unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff.graph import plan
from npdeq.autodiff.mode import call_tracing, set_grad_enabled
from npdeq.autodiff.ops.reductions import sum as sum_
from npdeq.autodiff.ops.shape import reshape
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["backward", "grad", "vjp", "partial_grad"]


def as_tuple(x: Any) -> tuple[tuple, bool]:
    """``x`` as a tuple, and whether it was a sequence."""
    return (tuple(x), True) if isinstance(x, (tuple, list)) else ((x,), False)


def unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a cotangent down to ``shape`` (the inverse of broadcasting), with tape ops."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    if axes:
        g = sum_(g, axis=axes)
    return reshape(g, shape) if tuple(g.shape) != shape else g


# The cast of a cotangent to its input's dtype, recorded under create_graph like any rule.
_cast = primitive(lambda a, dtype: backend.array_namespace(a).astype(a, dtype), name="astype")
defvjp(_cast, lambda g, ans, a, dtype: _cast(g, dtype=a.dtype))


def cast_to_input(g: Tensor, parent: Tensor) -> Tensor:
    """``g`` in ``parent``'s dtype where both are real floating and differ (the float64
    cotangent of a float32 input of an op that promoted); otherwise ``g`` itself."""
    dtype = parent.data.dtype
    if g.data.dtype == dtype:
        return g
    xp = backend.array_namespace(g.data)
    if xp.isdtype(dtype, "real floating") and xp.isdtype(g.data.dtype, "real floating"):
        return _cast(g, dtype=dtype)
    return g


OUTPUTS = ("output {i}", "output {i} does not require grad and has no graph: nothing it "
           "depends on requires grad, or it was computed under no_grad()")
INPUTS = ("inputs[{i}]", "inputs[{i}] (shape {shape}) does not require grad, so it is not in "
          "any graph")


def check_tensors(tensors: tuple, kind: tuple[str, str] = INPUTS) -> None:
    """Raise unless each of ``tensors`` (inputs, or outputs with ``kind=OUTPUTS``) is a
    Tensor that requires grad."""
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{kind[0].format(i=i)} is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(kind[1].format(i=i, shape=t.shape))


def seed(outputs: tuple, grad_outputs: Any, what: str = "grad_outputs") -> dict[int, Tensor]:
    """The checked cotangents of ``outputs`` by id (ones for a one-element output without
    one), summed where an output is given twice."""
    grad_outputs = (None,) * len(outputs) if grad_outputs is None else as_tuple(grad_outputs)[0]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"got {len(grad_outputs)} {what} for {len(outputs)} outputs")
    check_tensors(outputs, OUTPUTS)
    cotangents: dict[int, Tensor] = {}
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            if out.size != 1:
                raise RuntimeError(
                    f"grad can be created implicitly only for scalar outputs; output {i} has "
                    f"shape {out.shape}: pass grad_outputs (or backward(grad=...)) of that "
                    "shape")
            g = Tensor(backend.array_namespace(out.data).ones_like(out.data))
        g = g if isinstance(g, Tensor) else Tensor(g)
        if tuple(g.shape) != tuple(out.shape):
            raise ValueError(f"grad_outputs[{i}] has shape {g.shape} but output {i} has "
                             f"shape {out.shape}")
        g = cast_to_input(g, out)
        prev = cotangents.get(id(out))
        cotangents[id(out)] = g if prev is None else prev + g
    return cotangents


def propagate(steps: list[tuple], cotangents: dict[int, Tensor], wanted: set = frozenset(),
              stop_at_inputs: bool = False, leaves: dict | None = None) -> dict[int, Tensor]:
    """Run the rules along ``steps`` (a :func:`~npdeq.autodiff.graph.plan`) from
    ``cotangents`` (by id; consumed). Returns the cotangents by id of ``wanted`` and of the
    leaves reached (added to ``leaves``, when given); with ``stop_at_inputs`` nothing passes
    through a tensor in ``wanted``."""
    grads: dict[int, Tensor] = {}
    trace = call_tracing.trace
    for t, node, parents in steps:
        g = cotangents.pop(id(t), None)
        if g is None:
            continue
        node.check_live()
        if id(t) in wanted:
            grads[id(t)] = g
            if stop_at_inputs:
                continue
        node.check_saved(t)
        prim = node.primitive
        if prim.vjp_argnums is not None:
            rules = prim.vjp_argnums([a for a, _ in parents], g, t, *node.args, **node.kwargs)
        else:
            rules = [prim.vjps[a](g, t, *node.args, **node.kwargs) for a, _ in parents]
        if trace is not None:
            trace.check_rule(prim, rules)
        for (_, parent), c in zip(parents, rules):
            if c is None:  # the rule hands this parent nothing (a zero)
                continue
            c = unbroadcast(c if isinstance(c, Tensor) else Tensor(c), parent.shape)
            c = cast_to_input(c, parent)
            prev = cotangents.get(id(parent))
            cotangents[id(parent)] = c if prev is None else prev + c
            if leaves is not None and parent._node is None:
                leaves[id(parent)] = parent
        g = rules = c = None  # let this node's cotangents go before the next node's rules run
    grads.update(cotangents)  # what is left belongs to leaves
    return grads


def _run(outputs: tuple, grad_outputs: Any, inputs: tuple | None, retain_graph: bool | None,
         create_graph: bool, stop_at_inputs: bool = False, what: str = "grad_outputs"):
    """Seed, plan and propagate; free the graph unless it is retained (by default only with
    ``create_graph``: a recorded gradient refers to the graph's saved values)."""
    cotangents = seed(outputs, grad_outputs, what)
    leaves = {id(t): t for t in outputs if t._node is None}
    order, steps = plan(outputs, inputs, stop_at_inputs)
    wanted = frozenset() if inputs is None else {id(t) for t in inputs}
    with set_grad_enabled(create_graph):
        grads = propagate(steps, cotangents, wanted, stop_at_inputs, leaves)
    if not (create_graph if retain_graph is None else retain_graph):
        for t in order:
            t._node.free()
    return grads, leaves


def backward(tensors: Tensor | Sequence[Tensor], grad_tensors: Any = None,
             retain_graph: bool | None = None, create_graph: bool = False) -> None:
    """Accumulate gradients of ``tensors`` into ``.grad`` of every leaf that requires grad.

    Args:
        tensors: output Tensor(s).
        grad_tensors: cotangent(s) of the outputs; may be omitted for one-element outputs.
        retain_graph: keep the graph for another backward pass; defaults to
            ``create_graph``, else the graph is freed.
        create_graph: record the backward pass, so ``.grad`` itself can be differentiated.

    Raises:
        RuntimeError: a non-scalar output without a cotangent, an output with no graph, or
            a second backward through a freed graph.

    Example:
        >>> import npdeq
        >>> x = npdeq.tensor([3.0], requires_grad=True)
        >>> npdeq.backward((x * x).sum())
        >>> x.grad.item()
        6.0
    """
    grads, leaves = _run(as_tuple(tensors)[0], grad_tensors, None, retain_graph, create_graph,
                         what="gradients")
    for pid, leaf in leaves.items():
        g = grads.get(pid)
        if g is not None and leaf.requires_grad:
            g = g if create_graph else g.detach()
            leaf.grad = g if leaf.grad is None else leaf.grad + g


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False):
    """Gradients of ``outputs`` with respect to ``inputs``, without touching ``.grad``.

    Args:
        outputs: Tensor or sequence of Tensors.
        inputs: Tensor or sequence of Tensors (leaves or intermediate results).
        grad_outputs: cotangents of ``outputs`` (arrays or Tensors); may be omitted for
            one-element outputs.
        retain_graph: keep the graph after this call; defaults to ``create_graph``.
        create_graph: record this backward pass (for gradients of gradients).
        allow_unused: return ``None`` for an input the outputs do not depend on instead of
            raising.

    Returns:
        A Tensor when ``inputs`` is a single Tensor, else a tuple, each shaped like its input.

    Raises:
        RuntimeError: an input not in the graph (without ``allow_unused``), a non-scalar output
            without a cotangent, or a graph already freed.
        TypeError: an input that is not a floating-point Tensor.

    Example:
        >>> import npdeq
        >>> x = npdeq.tensor([1.0, 2.0], requires_grad=True)
        >>> npdeq.grad((x ** 2).sum(), x).data
        array([2., 4.])
    """
    ins, was_sequence = as_tuple(inputs)
    check_tensors(ins)
    grads, _ = _run(as_tuple(outputs)[0], grad_outputs, ins, retain_graph, create_graph)
    result = tuple(grads.get(id(t)) for t in ins)
    for i, (g, t) in enumerate(zip(result, ins)):
        if g is None and not allow_unused:
            raise unused_error(i, t)
    return result if was_sequence else result[0]


def unused_error(i: int, t: Tensor) -> RuntimeError:
    """The error for ``inputs[i]`` not reached from the outputs."""
    return RuntimeError(f"inputs[{i}] (shape {t.shape}) is not in the graph of the outputs; "
                        "pass allow_unused=True to get None for it")


def partial_grad(output: Tensor, inputs: Sequence[Tensor], grad_output: Any,
                 create_graph: bool = False) -> list:
    """Partial derivatives of ``output`` with respect to ``inputs``, holding each input fixed.

    Unlike :func:`grad`, the walk stops at every input: when one input depends on another,
    the second's result excludes the path through the first (rules that hand cotangents to
    their parents use this; the engine adds the indirect paths). The graph is retained; the
    pass is recorded only with ``create_graph=True``.

    Returns:
        One Tensor per input, or ``None`` where ``output`` does not depend on it.
    """
    grads, _ = _run((output,), (grad_output,), tuple(inputs), True, create_graph,
                    stop_at_inputs=True)
    return [grads.get(id(t)) for t in inputs]


def vjp(fn: Callable[..., Any], *primals: Any) -> tuple[Tensor, Callable[[Any], Any]]:
    """Evaluate ``fn(*primals)`` and return its value with a function computing VJPs.

    Args:
        fn: a function of Tensors returning one Tensor.
        *primals: arrays or Tensors; they are wrapped as fresh leaves that require grad.

    Returns:
        ``(out, vjp_fn)``: ``out`` is ``fn``'s value (detached); ``vjp_fn(g)`` returns the
        tuple of cotangents of ``primals`` for the output cotangent ``g`` and may be called
        repeatedly.

    Example:
        >>> import numpy as np, npdeq
        >>> out, vjp_fn = npdeq.vjp(npdeq.tanh, np.zeros(2))
        >>> vjp_fn(np.ones(2))[0].data
        array([1., 1.])
    """
    leaves = tuple(Tensor(p.data if isinstance(p, Tensor) else p, requires_grad=True)
                   for p in primals)
    with set_grad_enabled(True):
        out = fn(*leaves)

    def vjp_fn(g: Any) -> tuple:
        return grad(out, leaves, grad_outputs=g, retain_graph=True, allow_unused=True)

    return out.detach(), vjp_fn
