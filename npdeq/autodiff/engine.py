"""Reverse-mode traversal of the tape: ``backward``, ``grad`` and ``vjp``.

The walk is iterative (a child-count topological order), never recursive, because unrolled
solvers make deep graphs. Cotangents are summed per tensor; each rule is called only for
parents that need a gradient, and ``grad(..., inputs)`` prunes the walk to the part of the
graph that reaches ``inputs``. Rules run under ``no_grad`` unless ``create_graph=True``, in
which case the backward pass is itself recorded (gradients of gradients). Summing a
broadcast cotangent down to its input's shape happens here, once, for every op.

Dtypes. An op mixing float32 and float64 operands computes in float64, the array API and
NumPy promotion rule (a Python scalar never promotes: ``float32 tensor * 2.0`` stays
float32; a 0-d array or Tensor is an array and does, as in NumPy 2 and the array API, unlike
PyTorch, so write ``x * 2.0`` or make the constant in ``x.dtype``). Gradients do not
follow the promotion: every cotangent handed to an input is cast to that input's dtype, here,
where it is summed down to the input's shape (PyTorch does the same), so a leaf's ``.grad``
always has the leaf's dtype and a float32 parameter used with a float64 operand gets a
float32 gradient. Only real floating dtypes are cast (float32 and float64); a cotangent
that is complex, or meant for a complex input, is passed on unchanged, and integer inputs
never receive one (only floating-point tensors can require gradients).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff.graph import needed, topological_order
from npdeq.autodiff.mode import set_grad_enabled
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor, ones_like

__all__ = ["backward", "grad", "vjp", "partial_grad", "vjp_program", "VJPProgram"]


def _as_tuple(x):
    if isinstance(x, (tuple, list)):
        return tuple(x), True
    return (x,), False


def _call_rules(node, ans, g, parents):
    """The cotangents of ``parents`` (``(argnum, Tensor)`` pairs) for output cotangent g."""
    node.check_saved(ans)
    prim = node.primitive
    if prim.vjp_argnums is not None:
        return prim.vjp_argnums([a for a, _ in parents], g, ans, *node.args, **node.kwargs)
    return [prim.vjps[a](g, ans, *node.args, **node.kwargs) for a, _ in parents]


def _freed_error(node) -> RuntimeError:
    return RuntimeError(
        f"trying to backward through the graph a second time (at '{node.primitive.name}'), "
        "but its saved values were freed by the first backward: pass retain_graph=True to "
        "the first backward/grad call")


def unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a cotangent down to ``shape`` (the inverse of broadcasting), with tape ops."""
    gshape = tuple(g.shape)
    if gshape == tuple(shape):
        return g
    from npdeq.autodiff.ops import reshape, sum as sum_

    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and gshape[lead + i] != 1)
    if axes:
        g = sum_(g, axis=axes)
    return reshape(g, tuple(shape)) if tuple(g.shape) != tuple(shape) else g


# The cast of a cotangent to its input's dtype, recorded under create_graph like any rule.
_cast = primitive(lambda a, dtype: backend.array_namespace(a).astype(a, dtype), name="astype")
defvjp(_cast, lambda g, ans, a, dtype: _cast(g, dtype=a.dtype))


def cast_to_input(g: Tensor, parent: Tensor) -> Tensor:
    """``g`` in ``parent``'s dtype when both are real floating and differ (float64
    cotangent of a float32 input, from an op that promoted); otherwise ``g`` itself."""
    dtype = parent.data.dtype
    if g.data.dtype == dtype:
        return g
    xp = backend.array_namespace(g.data)
    if xp.isdtype(dtype, "real floating") and xp.isdtype(g.data.dtype, "real floating"):
        return _cast(g, dtype=dtype)
    return g


def _check_grad_output(out: Tensor, g: Any, index: int) -> Tensor:
    if g is None:
        if out.size != 1:
            raise RuntimeError(
                f"grad can be created implicitly only for scalar outputs; output {index} has "
                f"shape {out.shape}: pass grad_outputs (or backward(grad=...)) of that shape")
        return ones_like(out)
    g = g if isinstance(g, Tensor) else Tensor(g)
    if tuple(g.shape) != tuple(out.shape):
        raise ValueError(
            f"grad_outputs[{index}] has shape {g.shape} but output {index} has shape {out.shape}")
    return cast_to_input(g, out)


def _run(outputs, grad_outputs, inputs, retain_graph, create_graph, stop_at_inputs=False):
    """Propagate cotangents from ``outputs``.

    Returns:
        ``(grads, leaves)``: ``grads`` maps ``id(t)`` to the total cotangent of every leaf
        reached and of every tensor in ``inputs``; ``leaves`` maps ``id`` to the leaf Tensor.
    """
    cotangents: dict[int, Tensor] = {}
    leaves: dict[int, Tensor] = {}
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(out, Tensor):
            raise TypeError(f"output {i} is a {type(out).__name__}, not a Tensor")
        if not out.requires_grad:
            raise RuntimeError(
                f"output {i} does not require grad and has no graph: nothing it depends on "
                "requires grad, or it was computed under no_grad()")
        g = _check_grad_output(out, g, i)
        prev = cotangents.get(id(out))
        cotangents[id(out)] = g if prev is None else prev + g
        if out._node is None:
            leaves[id(out)] = out

    wanted = None if inputs is None else {id(t) for t in inputs}
    order = topological_order(outputs, wanted if stop_at_inputs else None)
    needed_ids = None if wanted is None else needed(order, wanted)

    grads: dict[int, Tensor] = {}
    with set_grad_enabled(create_graph):
        for t in order:
            g = cotangents.pop(id(t), None)
            if g is None:
                continue
            node = t._node
            if node.freed:
                raise _freed_error(node)
            if wanted is not None and id(t) in wanted:
                grads[id(t)] = g
                if stop_at_inputs:
                    continue
            parents = node.parents if needed_ids is None else [
                (argnum, p) for argnum, p in node.parents if id(p) in needed_ids]
            for (argnum, parent), contribution in zip(parents, _call_rules(node, t, g, parents)):
                if contribution is None:  # the rule hands this parent nothing (a zero)
                    continue
                pid = id(parent)
                if not isinstance(contribution, Tensor):
                    contribution = Tensor(contribution)
                contribution = cast_to_input(unbroadcast(contribution, parent.shape), parent)
                prev = cotangents.get(pid)
                cotangents[pid] = contribution if prev is None else prev + contribution
                if parent._node is None:
                    leaves[pid] = parent
    if not retain_graph:
        for t in order:
            t._node.free()
    for pid, g in cotangents.items():  # what is left belongs to leaves
        grads[pid] = g
    return grads, leaves


def backward(tensors: Tensor | Sequence[Tensor], grad_tensors: Any = None,
             retain_graph: bool | None = None, create_graph: bool = False) -> None:
    """Accumulate gradients of ``tensors`` into ``.grad`` of every leaf that requires grad.

    Args:
        tensors: output Tensor(s).
        grad_tensors: cotangent(s) of the outputs; may be omitted for one-element outputs.
        retain_graph: keep the graph for another backward pass; defaults to
            ``create_graph`` (the recorded ``.grad`` refers to the graph's saved values, so
            differentiating it needs them), else the graph is freed.
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
    outputs, _ = _as_tuple(tensors)
    if grad_tensors is None:
        grad_tensors = (None,) * len(outputs)
    else:
        grad_tensors, _ = _as_tuple(grad_tensors)
    if len(grad_tensors) != len(outputs):
        raise ValueError(f"got {len(grad_tensors)} gradients for {len(outputs)} outputs")
    if retain_graph is None:
        retain_graph = create_graph
    grads, leaves = _run(outputs, grad_tensors, None, retain_graph, create_graph)
    for pid, leaf in leaves.items():
        g = grads.get(pid)
        if g is None or not leaf.requires_grad:
            continue
        if not create_graph:
            g = g.detach()
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
    outs, _ = _as_tuple(outputs)
    ins, was_sequence = _as_tuple(inputs)
    _check_inputs(ins)
    grad_outputs = _grad_outputs_tuple(grad_outputs, len(outs))
    if retain_graph is None:
        retain_graph = create_graph
    grads, _ = _run(outs, grad_outputs, ins, retain_graph, create_graph)
    result = []
    for i, t in enumerate(ins):
        g = grads.get(id(t))
        if g is None and not allow_unused:
            raise _unused_error(i, t)
        result.append(g)
    return tuple(result) if was_sequence else result[0]


def _check_inputs(ins: tuple) -> None:
    for i, t in enumerate(ins):
        if not isinstance(t, Tensor):
            raise TypeError(f"inputs[{i}] is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(
                f"inputs[{i}] (shape {t.shape}) does not require grad, so it is not in any graph")


def _grad_outputs_tuple(grad_outputs: Any, n: int) -> tuple:
    grad_outputs = (None,) * n if grad_outputs is None else _as_tuple(grad_outputs)[0]
    if len(grad_outputs) != n:
        raise ValueError(f"got {len(grad_outputs)} grad_outputs for {n} outputs")
    return grad_outputs


def _unused_error(i: int, t: Tensor) -> RuntimeError:
    return RuntimeError(f"inputs[{i}] (shape {t.shape}) is not in the graph of the outputs; "
                        "pass allow_unused=True to get None for it")


def partial_grad(output: Tensor, inputs: Sequence[Tensor], grad_output: Any,
                 create_graph: bool = False) -> list:
    """Partial derivatives of ``output`` with respect to ``inputs``, holding each input fixed.

    Unlike :func:`grad`, the walk stops at every input: when one input depends on another,
    the second's result excludes the path through the first. Gradient rules that hand
    cotangents to their parents use this (the engine then adds the indirect paths). The
    graph is retained; the pass is recorded only with ``create_graph=True`` (a rule's own
    backward under ``create_graph``).

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
