"""Elementwise ops: forward against NumPy, VJP against HIPS autograd, first and second order
against finite differences with broadcasting; Python scalar operands; edge cases."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import expit
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq
from npdeq import backend
from npdeq.testing.gradcheck import check_grads

from op_harness import OpCase, away_from_zero, check_op, floats, grid, nary, unary


def _bool_arrays(shape):
    # The condition broadcasts too: a trailing slice of the result's shape.
    return st.integers(0, len(shape)).flatmap(
        lambda k: hnp.arrays(np.bool_, shape[k:]))


@st.composite
def _clip_bounds(draw, shape):
    # Bounds on the 0.5-grid, values on the grid shifted by 0.25: never at a bound.
    low, high = sorted(draw(st.lists(grid(0.5), min_size=2, max_size=2)))
    which = draw(st.sampled_from(["both", "min", "max"]))
    return {"min": None if which == "max" else low, "max": None if which == "min" else high}


def _clip_reference(a, min=None, max=None):
    if min is not None:
        a = anp.maximum(a, min)
    if max is not None:
        a = anp.minimum(a, max)
    return a


def _where_reference(a, b, condition):
    # autograd's rule for where does not sum broadcast cotangents back to the input's shape;
    # broadcasting both branches with an addition first lets autograd's add do it.
    zeros = np.zeros(np.broadcast_shapes(np.shape(a), np.shape(b), condition.shape))
    return anp.where(condition, a + zeros, b + zeros)


def _softplus_reference(a, beta=1.0):
    return anp.logaddexp(0.0, beta * a) / beta


SCALARS = st.sampled_from([2, 3, -1, 0.5, 1.5, -2.5])

CASES = [
    OpCase("add", nary(floats(), floats()), npdeq.add, anp.add, order=2),
    OpCase("sub", nary(floats(), floats()), npdeq.sub, anp.subtract, order=2),
    OpCase("mul", nary(floats(), floats()), npdeq.mul, anp.multiply, order=2),
    OpCase("div", nary(floats(), away_from_zero(0.5, 3.0)), npdeq.div, anp.divide, order=2,
           rtol=1e-5),
    OpCase("neg", unary(), npdeq.neg, anp.negative, order=2),
    OpCase("pow", nary(floats(0.5, 2.0), floats(-2.0, 2.0)), npdeq.pow, anp.power, order=2,
           rtol=1e-5),
    OpCase("pow_scalar_exponent",
           unary(floats(0.5, 2.0), kwargs=lambda s: st.fixed_dictionaries({"p": SCALARS})),
           lambda a, p: npdeq.pow(a, p), lambda a, p: anp.power(a, p), order=2, rtol=1e-5),
    OpCase("pow_scalar_base",
           unary(floats(-2.0, 2.0), kwargs=lambda s: st.fixed_dictionaries(
               {"base": st.sampled_from([0.5, 2.0, 3.0])})),
           lambda b, base: npdeq.pow(base, b), lambda b, base: anp.power(base, b), order=2,
           rtol=1e-5),
    OpCase("exp", unary(floats(-3.0, 3.0)), npdeq.exp, anp.exp, order=2, rtol=1e-5),
    OpCase("log", unary(floats(0.2, 5.0)), npdeq.log, anp.log, order=2, rtol=1e-5),
    OpCase("sqrt", unary(floats(0.2, 5.0)), npdeq.sqrt, anp.sqrt, order=2, rtol=1e-5),
    OpCase("abs", unary(away_from_zero()), npdeq.abs, anp.abs, order=2),
    OpCase("tanh", unary(floats(-4.0, 4.0)), npdeq.tanh, anp.tanh, order=2),
    OpCase("sigmoid", unary(floats(-8.0, 8.0)), npdeq.sigmoid, expit, order=2),
    OpCase("relu", unary(away_from_zero()), npdeq.relu, lambda a: anp.maximum(a, 0.0),
           order=2),
    OpCase("leaky_relu",
           unary(away_from_zero(), kwargs=lambda s: st.fixed_dictionaries(
               {"negative_slope": floats(0.0, 0.5)})),
           npdeq.leaky_relu, lambda a, negative_slope: anp.where(a > 0, a, negative_slope * a),
           order=2),
    OpCase("softplus",
           unary(floats(-6.0, 6.0), kwargs=lambda s: st.fixed_dictionaries(
               {"beta": floats(0.5, 2.0)})),
           npdeq.softplus, _softplus_reference, order=2, rtol=1e-5),
    OpCase("maximum", nary(grid(0.5), grid(0.5, offset=0.25)), npdeq.maximum, anp.maximum,
           order=2),
    OpCase("minimum", nary(grid(0.5), grid(0.5, offset=0.25)), npdeq.minimum, anp.minimum,
           order=2),
    OpCase("where", nary(floats(), floats(), kwargs=lambda s: st.fixed_dictionaries(
        {"condition": _bool_arrays(s)})),
        lambda a, b, condition: npdeq.where(condition, a, b),
        _where_reference, order=2),
    OpCase("clip", unary(grid(0.5, offset=0.25), kwargs=_clip_bounds), npdeq.clip,
           _clip_reference, order=2),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


# The logarithm/exponential family and simple powers, with a quarter of the profile's examples.
MATH_CASES = [
    OpCase("log1p", unary(floats(-0.5, 3.0)), npdeq.log1p, anp.log1p, order=2, rtol=1e-5),
    OpCase("expm1", unary(), npdeq.expm1, anp.expm1, order=2, rtol=1e-5),
    OpCase("log2", unary(floats(0.2, 5.0)), npdeq.log2, anp.log2, order=2, rtol=1e-5),
    OpCase("log10", unary(floats(0.2, 5.0)), npdeq.log10, anp.log10, order=2, rtol=1e-5),
    OpCase("exp2", unary(), npdeq.exp2, anp.exp2, order=2, rtol=1e-5),
    OpCase("logaddexp", nary(floats(-5.0, 5.0), floats(-5.0, 5.0)), npdeq.logaddexp,
           anp.logaddexp, order=2, rtol=1e-5),
    OpCase("square", unary(), npdeq.square, anp.square, order=2),
    OpCase("reciprocal", unary(away_from_zero(0.5, 3.0)), npdeq.reciprocal, anp.reciprocal,
           order=2, rtol=1e-5),
]


@pytest.mark.parametrize("case", MATH_CASES, ids=str)
@settings(max_examples=max(5, settings().max_examples // 4))
@given(data=st.data())
def test_math_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


# --- Python scalars and constants on either side -----------------------------------------


@pytest.mark.parametrize("op, reference", [
    (npdeq.add, np.add), (npdeq.sub, np.subtract), (npdeq.mul, np.multiply),
    (npdeq.div, np.divide), (npdeq.maximum, np.maximum), (npdeq.minimum, np.minimum),
], ids=["add", "sub", "mul", "div", "maximum", "minimum"])
@pytest.mark.parametrize("scalar", [2, 0.75, -1.5])
def test_binary_op_with_python_scalar_on_either_side(xp, to_xp, check_array, op, reference,
                                                     scalar):
    a0 = np.array([[0.5, -1.25, 2.5], [1.0, 3.0, -0.3]])  # clear of the scalars (ties)
    a = npdeq.Tensor(to_xp(a0), requires_grad=True)
    for out, expected, fun in [
        (op(a, scalar), reference(a0, scalar), lambda t: op(t, scalar)),
        (op(scalar, a), reference(scalar, a0), lambda t: op(scalar, t)),
    ]:
        check_array(out, shape=a0.shape, dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-15)
        check_grads(fun, to_xp(a0), order=2)


def test_logaddexp_with_python_scalar_and_large_arguments(xp, to_xp, check_array):
    a0 = np.array([-800.0, -1.0, 0.0, 2.5, 800.0])
    a = npdeq.Tensor(to_xp(a0), requires_grad=True)
    for out, expected in [(npdeq.logaddexp(a, 0.5), np.logaddexp(a0, 0.5)),
                          (npdeq.logaddexp(0.5, a), np.logaddexp(0.5, a0))]:
        check_array(out, shape=a0.shape, dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-15)
        (g,) = npdeq.grad(out.sum(), [a])
        with np.errstate(over="ignore"):
            np.testing.assert_allclose(g.numpy(), 1.0 / (1.0 + np.exp(0.5 - a0)), rtol=1e-14)


def test_constant_array_operand_gets_no_gradient(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    c = to_xp(np.array([3.0, -1.0]))
    out = npdeq.mul(a, c)
    assert [argnum for argnum, _ in out._node.parents] == [0]
    (g,) = npdeq.grad(out.sum(), [a])
    check_array(g, shape=(2,), dtype=xp.float64)
    np.testing.assert_array_equal(g.numpy(), [3.0, -1.0])


def test_float32_stays_float32(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.array([0.5, 1.5], dtype=np.float32)), requires_grad=True)
    for op in (npdeq.exp, npdeq.tanh, npdeq.sigmoid, npdeq.relu, npdeq.softplus, npdeq.sqrt,
               lambda t: t * 2.0, lambda t: 1.0 / t, lambda t: t ** 2, lambda t: npdeq.clip(
                   t, 0.0, 1.0), npdeq.log1p, npdeq.expm1, npdeq.log2, npdeq.log10, npdeq.exp2,
               npdeq.square, npdeq.reciprocal, lambda t: npdeq.logaddexp(t, t * 2.0)):
        out = op(a)
        check_array(out, shape=(2,), dtype=xp.float32)
        (g,) = npdeq.grad(out.sum(), [a])
        check_array(g, shape=(2,), dtype=xp.float32)


# --- edges: large arguments, ties, the domain boundary -----------------------------------


def test_sigmoid_and_softplus_do_not_overflow(xp, to_xp):
    big = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    x = npdeq.Tensor(to_xp(big), requires_grad=True)
    s = npdeq.sigmoid(x)
    np.testing.assert_allclose(s.numpy(), [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-14,
                               atol=0.0)
    (g,) = npdeq.grad(s.sum(), [x])
    assert np.all(np.isfinite(g.numpy()))
    sp = npdeq.softplus(x)
    np.testing.assert_allclose(sp.numpy(), np.logaddexp(0.0, big), rtol=1e-14)
    (g,) = npdeq.grad(sp.sum(), [x])
    np.testing.assert_allclose(g.numpy(), [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-14)


def test_softplus_threshold_is_identity_above(xp, to_xp):
    x = npdeq.Tensor(to_xp(np.array([10.5, 11.0])), requires_grad=True)
    out = npdeq.softplus(x, beta=2.0, threshold=21.0)
    # beta * x = 21 is not above the threshold, 22 is: identity there, gradient exactly 1.
    np.testing.assert_allclose(out.numpy(), [np.logaddexp(0.0, 21.0) / 2.0, 11.0], rtol=1e-15)
    (g,) = npdeq.grad(out.sum(), [x])
    assert g.numpy()[1] == 1.0


@pytest.mark.parametrize("op, share_a", [(npdeq.maximum, 0.5), (npdeq.minimum, 0.5)])
def test_max_min_split_the_gradient_at_ties(xp, to_xp, op, share_a):
    a = npdeq.Tensor(to_xp(np.array([1.0, 2.0, 3.0])), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.array([1.0, 0.0, 4.0])), requires_grad=True)
    ga, gb = npdeq.grad(op(a, b).sum(), [a, b])
    first_wins = op is npdeq.maximum
    np.testing.assert_array_equal(ga.numpy(), [share_a, 1.0 if first_wins else 0.0,
                                               0.0 if first_wins else 1.0])
    np.testing.assert_array_equal(ga.numpy() + gb.numpy(), [1.0, 1.0, 1.0])


def test_pow_gradient_of_exponent_at_zero_base(xp, to_xp):
    # d(0**b)/db is 0 for b > 0: the rule must not produce 0 * log(0) = nan.
    a = npdeq.Tensor(to_xp(np.array([0.0, 2.0])), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.array([2.0, 3.0])), requires_grad=True)
    ga, gb = npdeq.grad(npdeq.pow(a, b).sum(), [a, b])
    np.testing.assert_allclose(ga.numpy(), [0.0, 12.0])
    np.testing.assert_allclose(gb.numpy(), [0.0, 8.0 * np.log(2.0)])


def test_relu_and_abs_use_zero_subgradient_at_zero(xp, to_xp):
    x = npdeq.Tensor(to_xp(np.array([0.0, -1.0, 1.0])), requires_grad=True)
    (g,) = npdeq.grad(npdeq.relu(x).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 1.0])
    (g,) = npdeq.grad(npdeq.abs(x).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, -1.0, 1.0])


def test_where_with_scalar_branches(xp, to_xp, check_array):
    x = npdeq.Tensor(to_xp(np.array([-1.0, 2.0, -3.0])), requires_grad=True)
    cond = to_xp(np.array([True, False, True]))
    out = npdeq.where(cond, x, 0.0)
    check_array(out, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), [-1.0, 0.0, -3.0])
    (g,) = npdeq.grad(out.sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [1.0, 0.0, 1.0])
    out = npdeq.where(cond, 1.0, x)
    (g,) = npdeq.grad(out.sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, 1.0, 0.0])


def test_sign_is_piecewise_constant(xp, to_xp, check_array):
    t = npdeq.Tensor(to_xp(np.array([-2.0, 0.0, 3.0])), requires_grad=True)
    out = npdeq.sign(t)
    np.testing.assert_array_equal(out.numpy(), [-1.0, 0.0, 1.0])
    (g,) = npdeq.grad(out.sum(), [t])
    check_array(g, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 0.0])


def test_relu_keeps_nan_as_torch_does(xp, to_xp):
    # A NaN input is a NaN output (never a silent 0); the gradient there is 0, as torch's.
    a = npdeq.Tensor(to_xp(np.array([-1.0, np.nan, 2.0])), requires_grad=True)
    out = npdeq.relu(a)
    np.testing.assert_array_equal(backend.to_numpy(out.data), [0.0, np.nan, 2.0])
    (g,) = npdeq.grad(out.sum(), [a])
    np.testing.assert_array_equal(backend.to_numpy(g.data), [0.0, 0.0, 1.0])
