"""Reductions and the softmax family: forward against NumPy, VJP against HIPS autograd, first
and second order against finite differences over every ``axis``/``keepdims`` form; ties,
infinities and axis errors."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import npdeq

from npdeq.testing.gradcheck import check_grads

from op_harness import (OpCase, away_from_zero, axis_arg, check_op, floats, grid,
                        reduced_count, reduction_kwargs, unary)

NON_EMPTY = st.integers(1, 3).flatmap(
    lambda n: st.lists(st.integers(1, 4), min_size=n, max_size=n).map(tuple))


def _var_kwargs(shape):
    # The unbiased estimate needs at least two elements per output.
    return reduction_kwargs(shape).flatmap(lambda kw: st.sampled_from(
        [0.0, 1.0] if reduced_count(shape, kw["axis"]) > 1 else [0.0]).map(
            lambda c: {**kw, "correction": c}))


def _softmax_kwargs(shape):
    return st.fixed_dictionaries({"axis": st.integers(-len(shape), len(shape) - 1)})


def _logsumexp_reference(a, axis=None, keepdims=False):
    # The textbook formula (inputs stay in [-5, 5]); autograd's own logsumexp returns shape
    # (1,) for a 0-d input reduced over axis=().
    return anp.log(anp.sum(anp.exp(a), axis=axis, keepdims=keepdims))


def _log_softmax_reference(a, axis):
    return a - _logsumexp_reference(a, axis=axis, keepdims=True)


# max/min: distinct values on a 1/8 grid, so no two elements are within the FD step.
DISTINCT = dict(elements=grid(0.125, n=40), unique=True, kwargs=reduction_kwargs)

CASES = [
    OpCase("sum", unary(kwargs=reduction_kwargs), npdeq.sum, anp.sum, order=2),
    OpCase("mean", unary(kwargs=reduction_kwargs), npdeq.mean, anp.mean, order=2),
    OpCase("var", unary(kwargs=_var_kwargs), npdeq.var,
           lambda a, axis, keepdims, correction: anp.var(a, axis=axis, keepdims=keepdims,
                                                         ddof=correction), order=2),
    OpCase("max", unary(**DISTINCT), npdeq.max, anp.max, order=2),
    OpCase("min", unary(**DISTINCT), npdeq.min, anp.min, order=2),
    OpCase("logsumexp", unary(floats(-5.0, 5.0), kwargs=reduction_kwargs), npdeq.logsumexp,
           _logsumexp_reference, order=2, rtol=1e-5),
    OpCase("softmax", unary(floats(-5.0, 5.0), shapes=NON_EMPTY, kwargs=_softmax_kwargs),
           npdeq.softmax, lambda a, axis: anp.exp(_log_softmax_reference(a, axis)), order=2,
           rtol=1e-5),
    OpCase("log_softmax", unary(floats(-5.0, 5.0), shapes=NON_EMPTY, kwargs=_softmax_kwargs),
           npdeq.log_softmax, _log_softmax_reference, order=2, rtol=1e-5),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def _std_kwargs(shape):
    # At least two distinct values per output: a zero deviation has an infinite gradient.
    return _var_kwargs(shape).filter(lambda kw: reduced_count(shape, kw["axis"]) > 1)


def _cumulative_kwargs(shape):
    return st.fixed_dictionaries({"axis": st.one_of(st.none(), st.integers(
        -len(shape), len(shape) - 1)) if shape else st.none()})


def _cumprod_reference(a, axis=None):
    # autograd has no rule for cumprod: the signs times exp of the cumulative log-magnitudes.
    sign = np.cumprod(np.sign(a), axis=axis)
    return sign * anp.exp(anp.cumsum(anp.log(anp.abs(a)), axis=axis))


TWO_OR_MORE = st.integers(1, 3).flatmap(
    lambda n: st.lists(st.integers(2, 4), min_size=n, max_size=n).map(tuple))

# The new reductions, with a quarter of the profile's examples.
MORE_CASES = [
    OpCase("std", unary(grid(0.125, n=40), shapes=TWO_OR_MORE, kwargs=_std_kwargs,
                        unique=True), npdeq.std,
           lambda a, axis, keepdims, correction: anp.std(a, axis=axis, keepdims=keepdims,
                                                         ddof=correction), order=2, rtol=1e-5),
    OpCase("prod", unary(away_from_zero(0.5, 1.5), kwargs=reduction_kwargs), npdeq.prod,
           anp.prod, order=2, rtol=1e-5),
    OpCase("cumsum", unary(kwargs=_cumulative_kwargs), npdeq.cumsum, anp.cumsum, order=2),
    OpCase("cumprod", unary(away_from_zero(0.5, 1.5), kwargs=_cumulative_kwargs),
           npdeq.cumprod, _cumprod_reference, order=2, rtol=1e-5),
]


@pytest.mark.parametrize("case", MORE_CASES, ids=str)
@settings(max_examples=max(5, settings().max_examples // 4))
@given(data=st.data())
def test_more_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


@pytest.mark.parametrize("values, expected", [
    ([2.0, 0.0, 3.0, 4.0], [0.0, 24.0, 0.0, 0.0]),   # one zero: the product of the others
    ([0.0, 2.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]),    # two zeros: all 0
    ([0.5, -2.0, 3.0, 4.0], [-24.0, 6.0, -4.0, -3.0]),
])
def test_prod_gradient_with_zeros(xp, to_xp, check_array, values, expected):
    a = npdeq.Tensor(to_xp(np.array([values, [1.0, 2.0, 3.0, 4.0]])), requires_grad=True)
    out = npdeq.prod(a, axis=1)
    np.testing.assert_array_equal(out.numpy(), [np.prod(values), 24.0])
    (g,) = npdeq.grad(out.sum(), [a])
    check_array(g, shape=(2, 4), dtype=xp.float64)
    np.testing.assert_allclose(g.numpy(), [expected, [24.0, 12.0, 8.0, 6.0]], rtol=1e-15)
    # Gradients of gradients are exact with at most one zero per slice.
    if values.count(0.0) <= 1:
        check_grads(lambda t: npdeq.prod(t, axis=1), a.data, order=2)


@pytest.mark.parametrize("values", [[2.0, 0.0, 3.0, -1.5], [0.0, 2.0, 0.0, 3.0],
                                    [0.0, 0.0, 0.0, 1.0], [1.5, 2.0, 3.0, 0.0]])
def test_cumprod_gradient_with_zeros(xp, to_xp, check_array, values):
    a = to_xp(np.array([values, values[::-1]]))
    out = npdeq.cumprod(npdeq.Tensor(a), axis=1)
    np.testing.assert_array_equal(out.numpy(), np.cumprod([values, values[::-1]], axis=1))
    # A polynomial: finite differences are exact enough at zeros too.
    check_grads(lambda t: npdeq.cumprod(t, axis=1), a, order=1)
    if values.count(0.0) <= 1:
        check_grads(lambda t: npdeq.cumprod(t, axis=1), a, order=2)


def test_cumulative_axis_none_flattens_and_bad_axis_is_an_error(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.arange(1.0, 7.0).reshape(2, 3)), requires_grad=True)
    for op, reference in [(npdeq.cumsum, np.cumsum), (npdeq.cumprod, np.cumprod)]:
        out = op(a)
        check_array(out, shape=(6,), dtype=xp.float64)
        np.testing.assert_array_equal(out.numpy(), reference(np.arange(1.0, 7.0)))
        check_array(op(npdeq.Tensor(to_xp(np.array(2.5)))), shape=(1,), dtype=xp.float64)
        with pytest.raises(ValueError, match="axis 2 is out of range"):
            op(a, axis=2)
        with pytest.raises(TypeError, match=r"axis must be an int or None, got \(0, 1\)"):
            op(a, axis=(0, 1))


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "max", "min", "prod",
                                  "logsumexp"])
def test_tensor_methods_match_functions(xp, to_xp, name):
    a = npdeq.Tensor(to_xp(np.arange(6.0).reshape(2, 3)))
    for kwargs in ({}, {"axis": 1}, {"axis": 0, "keepdims": True}):
        np.testing.assert_array_equal(getattr(a, name)(**kwargs).numpy(),
                                      getattr(npdeq, name)(a, **kwargs).numpy())


@pytest.mark.parametrize("op", [npdeq.max, npdeq.min])
def test_max_min_share_the_gradient_among_ties(xp, to_xp, check_array, op):
    a = npdeq.Tensor(to_xp(np.array([[1.0, 3.0, 3.0], [-2.0, -2.0, -2.0]])), requires_grad=True)
    out = op(a, axis=1)
    (g,) = npdeq.grad(out.sum(), [a])
    check_array(g, shape=(2, 3), dtype=xp.float64)
    expected_first = [0.0, 0.5, 0.5] if op is npdeq.max else [1.0, 0.0, 0.0]
    np.testing.assert_array_equal(g.numpy(), [expected_first, [1 / 3, 1 / 3, 1 / 3]])


def test_logsumexp_is_stable_and_handles_minus_infinity(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.array([[1000.0, 1000.0], [-np.inf, -np.inf], [-np.inf, 0.0]])),
                     requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) on the all -inf row
        out = npdeq.logsumexp(a, axis=1)
        check_array(out, shape=(3,), dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), [1000.0 + np.log(2.0), -np.inf, 0.0])
        (g,) = npdeq.grad(out[2], [a], retain_graph=True)
        # (The derivative on the all -inf row is undefined, as in other frameworks.)
        np.testing.assert_array_equal(g.numpy()[[0, 2]], [[0.0, 0.0], [0.0, 1.0]])
        (g,) = npdeq.grad(out[0], [a])
        np.testing.assert_allclose(g.numpy()[[0, 2]], [[0.5, 0.5], [0.0, 0.0]], rtol=1e-15)
    s = npdeq.softmax(npdeq.Tensor(to_xp(np.array([1000.0, 0.0, -1000.0]))))
    np.testing.assert_allclose(s.numpy(), [1.0, 0.0, 0.0], atol=1e-300)


@given(x=unary(floats(-5.0, 5.0), shapes=NON_EMPTY,
               kwargs=lambda s: st.fixed_dictionaries({"axis": axis_arg(len(s), False)})))
def test_softmax_sums_to_one(xp, to_xp, x):
    axis = x.kwargs["axis"]
    axis = axis if isinstance(axis, int) else (axis[0] if axis else -1)
    s = npdeq.softmax(to_xp(x.arrays[0]), axis=axis)
    np.testing.assert_allclose(np.sum(s.numpy(), axis=axis), 1.0, rtol=1e-14)


@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
def test_cumulative_methods_match_functions(xp, to_xp, name):
    a = npdeq.Tensor(to_xp(np.arange(6.0).reshape(2, 3)))
    for kwargs in ({}, {"axis": 1}, {"axis": -2}):
        np.testing.assert_array_equal(getattr(a, name)(**kwargs).numpy(),
                                      getattr(npdeq, name)(a, **kwargs).numpy())


def test_reductions_keep_float32(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)),
                     requires_grad=True)
    for op in (npdeq.sum, npdeq.mean, npdeq.var, npdeq.std, npdeq.max, npdeq.logsumexp,
               npdeq.prod, npdeq.cumsum, npdeq.cumprod):
        out = op(a, axis=0)
        check_array(out, shape=(2, 3) if op in (npdeq.cumsum, npdeq.cumprod) else (3,),
                    dtype=xp.float32)
        (g,) = npdeq.grad(out.sum(), [a])
        check_array(g, shape=(2, 3), dtype=xp.float32)


@pytest.mark.parametrize("axis", [2, -3, (0, 2)])
def test_axis_out_of_range_is_an_error(xp, to_xp, axis):
    a = npdeq.Tensor(to_xp(np.ones((2, 3))), requires_grad=True)
    for op in (npdeq.mean, npdeq.std, npdeq.prod):
        with pytest.raises((ValueError, IndexError), match="axis"):
            op(a, axis=axis)
