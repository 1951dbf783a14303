"""The declarative per-op harness shared by the ``test_ops_*`` modules.

An op is tested from one line, an :class:`OpCase`: its name, a hypothesis strategy of
:class:`Example` (the float64 inputs to differentiate plus fixed arguments), the npdeq call
and a reference written with ``autograd.numpy``. :func:`check_op` then checks, for one drawn
example in the namespace under test:

1. the forward value against the reference on NumPy, and the namespace, device, dtype and
   shape of the result, called on raw arrays (a Tensor without a graph) and on leaves;
2. the VJP for a random cotangent against HIPS autograd's VJP of the reference, and the
   namespace, device, dtype and shape of every cotangent;
3. the VJP (and, with ``order=2``, the gradient of the gradient) against central finite
   differences with :func:`npdeq.testing.gradcheck.check_grads`.

The strategies below keep inputs where the op is smooth (positive arguments for log and
sqrt, no values near the kinks of abs/relu, no ties for max/min) so finite differences are
meaningful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npdeq
from npdeq.testing.gradcheck import check_grads

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
MAX_DIMS = 3


# --- examples and cases ------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One drawn input: ``arrays`` are differentiated, ``kwargs`` are held fixed (NumPy arrays
    among them, also inside tuples, are moved to the namespace under test)."""

    arrays: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpCase:
    """One op under test: ``op(*tensors, **kwargs)`` and ``reference(*arrays, **kwargs)``.

    ``reference`` runs on NumPy; it is differentiated with HIPS autograd unless
    ``autograd=False`` (a plain NumPy reference for the forward value only). ``order`` is the
    highest derivative order checked against finite differences. ``arrays=False`` for an op
    spelled as a Tensor method, which raw arrays do not have.
    """

    name: str
    examples: Any
    op: Callable[..., Any]
    reference: Callable[..., Any]
    order: int = 1
    autograd: bool = True
    arrays: bool = True
    rtol: float = 1e-6
    atol: float = 1e-6

    def __str__(self) -> str:
        return self.name


def convert(obj: Any, to_xp: Callable[[Any], Any]) -> Any:
    """Move the NumPy arrays in ``obj`` (an array, or tuples/lists/dicts of them) to the
    namespace under test; everything else is kept."""
    if isinstance(obj, np.ndarray):
        return to_xp(obj)
    if isinstance(obj, tuple):
        return tuple(convert(o, to_xp) for o in obj)
    if isinstance(obj, dict):
        return {k: convert(v, to_xp) for k, v in obj.items()}
    return obj


def check_op(case: OpCase, example: Example, xp: Any, to_xp: Callable, check_array: Callable,
             seed: int = 0) -> None:
    """Forward, VJP against autograd, and finite differences for one example (see module)."""
    arrays, kwargs = example.arrays, example.kwargs
    xs = [to_xp(a) for a in arrays]
    xkwargs = convert(kwargs, to_xp)
    expected = np.asarray(case.reference(*arrays, **kwargs))

    # Raw arrays are accepted as well as Tensors: the result is a Tensor without a graph.
    if case.arrays:
        plain = case.op(*xs, **xkwargs)
        assert isinstance(plain, npdeq.Tensor) and not plain.requires_grad
        check_array(plain, shape=expected.shape, dtype=xp.float64)
        np.testing.assert_allclose(plain.numpy(), expected, rtol=1e-12, atol=1e-12)

    leaves = [npdeq.Tensor(x, requires_grad=True) for x in xs]
    out = case.op(*leaves, **xkwargs)
    check_array(out, shape=expected.shape, dtype=xp.float64)
    assert out.requires_grad
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)

    if case.autograd:
        import autograd

        u = np.random.default_rng(seed).standard_normal(expected.shape)
        grads = npdeq.grad(out, leaves, grad_outputs=to_xp(u), allow_unused=True)
        for argnum, (g, a) in enumerate(zip(grads, arrays)):
            vjp, _ = autograd.make_vjp(case.reference, argnum)(*arrays, **kwargs)
            reference = np.asarray(vjp(u))
            if g is None:  # the output does not depend on this input
                np.testing.assert_array_equal(reference, 0.0)
                continue
            check_array(g, shape=a.shape, dtype=xp.float64)
            np.testing.assert_allclose(g.numpy(), reference, rtol=1e-10, atol=1e-12)

    check_grads(lambda *ts: case.op(*ts, **xkwargs), *xs, order=case.order, rtol=case.rtol,
                atol=case.atol, seed=seed)


# --- element strategies ------------------------------------------------------------------


def floats(low: float = -3.0, high: float = 3.0):
    """Finite float64 values in ``[low, high]``."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def away_from_zero(low: float = 0.1, high: float = 3.0):
    """Values with ``low <= |x| <= high`` of either sign (clear of a kink at zero)."""
    return st.tuples(floats(low, high), st.booleans()).map(lambda t: t[0] if t[1] else -t[0])


def grid(step: float = 0.5, offset: float = 0.0, n: int = 8):
    """Values ``offset + k * step`` for ``|k| <= n``: two grids with different offsets never
    come closer than their offset difference (no ties, no near-ties)."""
    return st.integers(-n, n).map(lambda k: offset + k * step)


def arrays(shape: tuple, elements=None, unique: bool = False):
    return hnp.arrays(np.float64, shape, elements=floats() if elements is None else elements,
                      unique=unique)


# --- example strategies ------------------------------------------------------------------


def _no_kwargs(shape):
    return st.just({})


@st.composite
def unary(draw, elements=None, shapes=SHAPES, kwargs=_no_kwargs, unique=False):
    """One array of a drawn shape, and ``kwargs(shape)`` drawn after it."""
    shape = draw(shapes)
    a = draw(arrays(shape, elements, unique=unique))
    return Example((a,), draw(kwargs(shape)))


@st.composite
def nary(draw, *elements, kwargs=_no_kwargs, min_dims=0):
    """One array per element strategy, with mutually broadcastable shapes."""
    shapes = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=len(elements), min_dims=min_dims, max_dims=MAX_DIMS, max_side=4))
    drawn = tuple(draw(arrays(s, e)) for s, e in zip(shapes.input_shapes, elements))
    return Example(drawn, draw(kwargs(shapes.result_shape)))


def axis_arg(ndim: int, allow_none: bool = True):
    """An ``axis`` argument: None, one (possibly negative) int, or a tuple of distinct axes."""
    options = [hnp.valid_tuple_axes(ndim)]
    if ndim:
        options.append(st.integers(-ndim, ndim - 1))
    if allow_none:
        options.append(st.none())
    return st.one_of(*options)


def reduction_kwargs(shape):
    return st.fixed_dictionaries({"axis": axis_arg(len(shape)), "keepdims": st.booleans()})


def reduced_count(shape: tuple, axis: Any) -> int:
    """Number of elements each output of a reduction over ``axis`` sums over."""
    if axis is None:
        axes = range(len(shape))
    else:
        axes = {a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)}
    return math.prod(shape[a] for a in axes)
