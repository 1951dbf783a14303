"""Dense derivatives for small problems: ``jacobian`` (forward or reverse mode) and
``hessian``, in :func:`torch.autograd.functional.jacobian`'s layout.

A Jacobian is built column by column (forward mode: one JVP per input component) or row by
row (reverse mode: one VJP per output component); both record ``fn`` once and share that
recording (and, forward, the first transpose of the double-VJP trick) across all
columns or rows. ``batched=True`` gives per-sample Jacobians of a function whose samples
are independent (a DEQ layer's): differentiating the batch sum costs as much as one
sample's Jacobian.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

from npdeq.autodiff.ops import moveaxis, reshape, stack
from npdeq.autodiff.tensor import Tensor
from npdeq.autodiff.transforms import (as_arguments, call, make_leaves, recorded_gradient,
                                       repeated_vjp, settle_graph, transposed_vjp,
                                       wants_graph, zeros_of)
from npdeq.backend.checks import check_bool

__all__ = ["jacobian", "hessian", "MODES", "FORWARD_COST"]

MODES = ("auto", "forward", "reverse")
# A JVP column costs about this many VJP rows once the first transpose is recorded (one VJP
# of the recorded VJP graph: measured 0.9 to 1.1 on tanh MLPs and matmul chains); that
# recording costs about one more VJP, once. 'auto' weighs columns by it.
FORWARD_COST = 1.0


def _basis(t: Tensor, lead: tuple, size: int) -> Iterator:
    """The ``size`` unit arrays of shape ``lead + s`` with ``s`` the trailing shape of
    ``t`` (``lead`` the batch axis, repeated: the same unit vector in every sample), made
    one at a time (a batched basis is as large as the Jacobian)."""
    xp = t.xp
    eye = xp.eye(size, dtype=t.data.dtype, device=t.device)
    tail = tuple(t.shape[len(lead):])
    ones = xp.ones(lead + tail, dtype=t.data.dtype, device=t.device)
    for k in range(size):
        yield ones * xp.reshape(eye[k, ...], (1,) * len(lead) + tail)


def _assemble(parts: list, lead: tuple, out: Tensor, inp: Tensor, rows: bool) -> Tensor:
    """Stack per-component derivatives into ``lead + out_shape + in_shape``. ``rows``: each
    part is shaped like ``inp`` (one per output component), else like ``out``."""
    n_lead = len(lead)
    out_tail, in_tail = tuple(out.shape[n_lead:]), tuple(inp.shape[n_lead:])
    if not parts:  # an input or output with no components
        return Tensor(out.xp.zeros(lead + out_tail + in_tail, dtype=out.data.dtype,
                                   device=out.device))
    # Parts are stacked on the axis after the batch: (lead, k, tail) -> lead + out + in.
    stacked = stack(parts, axis=n_lead)
    if rows:
        return reshape(stacked, lead + out_tail + in_tail)
    # Columns: (lead, n_in, out_tail) -> move the input axis last.
    moved = moveaxis(stacked, n_lead, -1) if out_tail else stacked
    return reshape(moved, lead + out_tail + in_tail)


def _batch(tensors: tuple, name: str) -> tuple:
    sizes = {tuple(t.shape[:1]) for t in tensors}
    if any(t.ndim == 0 for t in tensors) or len(sizes) != 1:
        raise ValueError(f"batched=True needs every {name} to have the same leading batch "
                         f"axis, got shapes {[tuple(t.shape) for t in tensors]}")
    return sizes.pop()


def _check_mode(mode: Any) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")


def _nest(blocks: list, tuple_out: bool, tuple_in: bool) -> Any:
    """``blocks[i][j]`` in torch's nesting: a tuple level only where there was a tuple."""
    rows = [tuple(r) if tuple_in else r[0] for r in blocks]
    return tuple(rows) if tuple_out else rows[0]


def _rows(targets: tuple, leaves: tuple, cotangent_sets: Iterator,
          differentiable: bool) -> list:
    """For each ``(i, cotangents)`` set, ``(i, VJP of targets)`` (one Tensor per input;
    zeros where unused). One walk of the graph for all sets unless the result is to be
    recorded."""
    live = [i for i, t in enumerate(targets) if t is not None and t.requires_grad]
    if not live:
        return [(i, [zeros_of(x) for x in leaves]) for i, _ in cotangent_sets]
    vjp_of = repeated_vjp([targets[i] for i in live], leaves, differentiable)
    out = []
    for index, cotangents in cotangent_sets:
        gs = vjp_of([cotangents[i] for i in live])
        out.append((index, [zeros_of(x) if g is None else g for g, x in zip(gs, leaves)]))
    return out


def _unit_sets(targets: tuple, lead: tuple) -> Iterator:
    """``(i, cotangents)`` pairs, one at a time: the unit vector of each component of
    ``targets[i]``, with zeros for the other targets."""
    zeros = [u.xp.zeros_like(u.data) for u in targets] if len(targets) > 1 else []
    for i, t in enumerate(targets):
        for e in _basis(t, lead, math.prod(t.shape[len(lead):])):
            yield i, [e if j == i else z for j, z in enumerate(zeros)] or [e]


def jacobian(fn: Callable[..., Any], x: Any, *, mode: str = "auto", batched: bool = False,
             create_graph: bool | None = None) -> Any:
    """The dense Jacobian of ``fn`` at ``x``, of shape ``out.shape + in.shape``.

    Reverse mode runs one VJP per output component (``M`` in all), forward mode one JVP per
    input component (``N``: after one recorded VJP, each JVP is one VJP of that VJP's
    graph, about ``FORWARD_COST`` VJPs); both call ``fn`` once. So reverse costs one
    forward and ``M`` VJPs, forward one forward and about ``N + 1`` VJPs. ``'auto'`` picks forward
    when ``FORWARD_COST * N < M`` (wide outputs, few inputs), else reverse. Both modes give
    the same matrix to rounding. For small problems: the result is dense.

    Args:
        fn: a function of Tensors returning a Tensor or a tuple of Tensors.
        x: the point: one array (or Tensor), or a tuple of them.
        mode: ``'auto'``, ``'forward'`` or ``'reverse'``.
        batched: per-sample Jacobians. Every input and output has the same leading batch
            axis B and sample b's outputs depend only on sample b's inputs (true of a DEQ
            layer's map; not of batch normalisation over the batch). The Jacobian of the
            batch sum then holds every sample's: shape ``(B,) + out.shape[1:] +
            in.shape[1:]``, at the cost of one sample's Jacobian (``M`` and ``N`` count
            one sample's components).
        create_graph: record the result so it can be differentiated; default as in
            :func:`~npdeq.autodiff.transforms.jvp`.

    Returns:
        A Tensor for one input and one output; for tuples, torch's nesting: ``J[i][j]`` is
        output i's Jacobian with respect to input j (one level only where ``fn`` or ``x``
        is a tuple).

    Raises:
        ValueError: an unknown ``mode``; with ``batched``, a missing or mismatched batch axis.
        TypeError: ``fn`` does not return Tensors; an input that is not a floating-point
            array.

    Example:
        >>> import numpy as np, npdeq
        >>> jacobian(lambda x: x ** 2, np.array([1.0, 2.0])).data
        array([[2., 0.],
               [0., 4.]])
    """
    _check_mode(mode)
    check_bool("batched", batched)
    xs, tuple_in = as_arguments(x, "x")
    differentiable = wants_graph(create_graph, xs)
    leaves = make_leaves(xs, differentiable)
    outs, tuple_out = call(fn, leaves)
    differentiable = settle_graph(create_graph, differentiable, outs, leaves)
    lead = _batch(xs, "input") if batched else ()
    if batched and _batch(outs, "output") != lead:
        raise ValueError(f"batched=True: fn's outputs have batch size {outs[0].shape[0]} but "
                         f"its inputs have {lead[0]}")
    n_in = sum(t.data.size // max(1, math.prod(lead)) for t in xs)
    n_out = sum(t.data.size // max(1, math.prod(lead)) for t in outs)
    forward = mode == "forward" or (mode == "auto" and FORWARD_COST * n_in < n_out)
    blocks = [[None] * len(xs) for _ in outs]
    if forward:
        push = transposed_vjp(outs, leaves, differentiable)
        columns = [(j, push(tangents)) for j, tangents in _unit_sets(xs, lead)]
        for i, o in enumerate(outs):
            for j, xj in enumerate(xs):
                parts = [c[i] for jj, c in columns if jj == j]
                blocks[i][j] = _assemble(parts, lead, o, xj, rows=False)
    else:
        rows = _rows(outs, leaves, _unit_sets(outs, lead), differentiable)
        for i, o in enumerate(outs):
            for j, xj in enumerate(xs):
                parts = [r[j] for ii, r in rows if ii == i]
                blocks[i][j] = _assemble(parts, lead, o, xj, rows=True)
    if not differentiable:
        blocks = [[b.detach() for b in r] for r in blocks]
    return _nest(blocks, tuple_out, tuple_in)


def hessian(fn: Callable[..., Any], x: Any, *, create_graph: bool | None = None) -> Any:
    """The dense Hessian of a scalar ``fn`` at ``x``, of shape ``x.shape + x.shape``.

    Reverse over reverse: the gradient is recorded once, then differentiated by one VJP
    of its graph per input component. Cost: one forward call, one recorded VJP and ``N``
    VJPs of the gradient's graph (about 2 VJPs each), ``N`` the number of input components.
    For small inputs; use :func:`~npdeq.autodiff.transforms.hvp` for products with large
    ones.

    Args:
        fn: a function of Tensors returning a one-element Tensor.
        x: the point: one array (or Tensor), or a tuple of them.
        create_graph: record the result so it can be differentiated; default as in
            :func:`~npdeq.autodiff.transforms.jvp`.

    Returns:
        A Tensor for one input; for a tuple, ``H[i][j]`` of shape ``x[i].shape +
        x[j].shape`` (torch's nesting).

    Raises:
        ValueError: ``fn``'s value has more than one element.
        TypeError: as :func:`jacobian`'s.

    Example:
        >>> import numpy as np, npdeq
        >>> hessian(lambda x: (x ** 3).sum(), np.array([1.0, 2.0])).data
        array([[ 6.,  0.],
               [ 0., 12.]])
    """
    xs, tuple_in = as_arguments(x, "x")
    differentiable = wants_graph(create_graph, xs)
    leaves = make_leaves(xs, differentiable)
    y, gs = recorded_gradient(fn, leaves)
    differentiable = settle_graph(create_graph, differentiable, (y,), leaves)
    targets = tuple(zeros_of(t) if g is None else g for g, t in zip(gs, xs))
    rows = _rows(targets, leaves, _unit_sets(targets, ()), differentiable)
    blocks = [[_assemble([r[j] for ii, r in rows if ii == i], (), xi, xj, rows=True)
               for j, xj in enumerate(xs)] for i, xi in enumerate(xs)]
    if not differentiable:
        blocks = [[b.detach() for b in r] for r in blocks]
    return _nest(blocks, tuple_in, tuple_in)
