"""Trigonometric and hyperbolic ops, their inverses, ``arctan2``, ``hypot`` and the angle
conversions: forward against NumPy, VJP against HIPS autograd, first and second order against
finite differences; the array API aliases; Python scalars; float32."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import npdeq
from npdeq.testing.gradcheck import check_grads

from op_harness import OpCase, away_from_zero, check_op, floats, nary, unary

# Each case runs on every namespace; a quarter of the profile's examples keeps the file fast.
FEW = settings(max_examples=max(5, settings().max_examples // 4))

CASES = [
    OpCase("sin", unary(), npdeq.sin, anp.sin, order=2),
    OpCase("cos", unary(), npdeq.cos, anp.cos, order=2),
    OpCase("tan", unary(floats(-1.2, 1.2)), npdeq.tan, anp.tan, order=2, rtol=1e-5),
    OpCase("arcsin", unary(floats(-0.9, 0.9)), npdeq.arcsin, anp.arcsin, order=2, rtol=1e-5),
    OpCase("arccos", unary(floats(-0.9, 0.9)), npdeq.arccos, anp.arccos, order=2, rtol=1e-5),
    OpCase("arctan", unary(), npdeq.arctan, anp.arctan, order=2),
    # Away from the origin and from the branch cut (y = 0, x < 0).
    OpCase("arctan2", nary(away_from_zero(0.5, 3.0), floats()), npdeq.arctan2, anp.arctan2,
           order=2, rtol=1e-5),
    OpCase("hypot", nary(away_from_zero(0.5, 3.0), floats()), npdeq.hypot, anp.hypot,
           order=2, rtol=1e-5),
    OpCase("sinh", unary(), npdeq.sinh, anp.sinh, order=2, rtol=1e-5),
    OpCase("cosh", unary(), npdeq.cosh, anp.cosh, order=2, rtol=1e-5),
    OpCase("arcsinh", unary(), npdeq.arcsinh, anp.arcsinh, order=2),
    OpCase("arccosh", unary(floats(1.2, 4.0)), npdeq.arccosh, anp.arccosh, order=2, rtol=1e-5),
    OpCase("arctanh", unary(floats(-0.8, 0.8)), npdeq.arctanh, anp.arctanh, order=2,
           rtol=1e-5),
    OpCase("deg2rad", unary(floats(-360.0, 360.0)), npdeq.deg2rad, anp.deg2rad, order=2),
    OpCase("rad2deg", unary(), npdeq.rad2deg, anp.rad2deg, order=2),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@FEW
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def test_array_api_names_are_the_numpy_ops():
    for alias, name in [("asin", "arcsin"), ("acos", "arccos"), ("atan", "arctan"),
                        ("atan2", "arctan2"), ("asinh", "arcsinh"), ("acosh", "arccosh"),
                        ("atanh", "arctanh")]:
        assert getattr(npdeq, alias) is getattr(npdeq, name)
        assert alias in npdeq.__all__ and name in npdeq.__all__


@pytest.mark.parametrize("op, reference", [(npdeq.arctan2, np.arctan2),
                                           (npdeq.hypot, np.hypot)], ids=["arctan2", "hypot"])
def test_binary_op_with_python_scalar_on_either_side(xp, to_xp, check_array, op, reference):
    a0 = np.array([[0.5, -1.25, 2.5], [1.0, 3.0, -0.3]])
    for fun, expected in [(lambda t: op(t, -1.5), reference(a0, -1.5)),
                          (lambda t: op(2.0, t), reference(2.0, a0))]:
        out = fun(npdeq.Tensor(to_xp(a0)))
        check_array(out, shape=a0.shape, dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-14)
        check_grads(fun, to_xp(a0), order=2, rtol=1e-5)


def test_float32_stays_float32(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.array([0.25, 0.5], dtype=np.float32)), requires_grad=True)
    two = npdeq.Tensor(to_xp(np.array([1.5, 2.0], dtype=np.float32)), requires_grad=True)
    for op in (npdeq.sin, npdeq.cos, npdeq.tan, npdeq.arcsin, npdeq.arccos, npdeq.arctan,
               npdeq.sinh, npdeq.cosh, npdeq.arcsinh, npdeq.arctanh, npdeq.deg2rad,
               npdeq.rad2deg, lambda t: npdeq.arccosh(t + 1.5), lambda t: npdeq.arctan2(t, two),
               lambda t: npdeq.hypot(two, t)):
        out = op(a)
        check_array(out, shape=(2,), dtype=xp.float32)
        for g in npdeq.grad(out.sum(), [a, two], allow_unused=True):
            if g is not None:
                check_array(g, shape=(2,), dtype=xp.float32)


def test_arctan2_quadrants(xp, to_xp):
    y = to_xp(np.array([1.0, 1.0, -1.0, -1.0]))
    x = to_xp(np.array([1.0, -1.0, -1.0, 1.0]))
    np.testing.assert_allclose(npdeq.atan2(y, x).numpy(),
                               np.pi * np.array([0.25, 0.75, -0.75, -0.25]), rtol=1e-15)
