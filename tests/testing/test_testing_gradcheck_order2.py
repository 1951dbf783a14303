"""check_grads at order 2 and above: both modes, a rule invisible to second order, third order."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq.testing import check_grads

# exp whose rule is right at first order but computed on raw arrays: its result carries no
# graph, so the second derivative seen through it is zero.
_raw_exp = npdeq.primitive(lambda x: npdeq.backend.array_namespace(x).exp(x), name="raw_exp")
npdeq.defvjp(_raw_exp, lambda g, ans, x: npdeq.Tensor(g.data * ans.data))

_bad_square = npdeq.primitive(lambda x: x * x, name="bad_square2")
npdeq.defvjp(_bad_square, lambda g, ans, x: g * x)  # should be 2 g x
_cube = npdeq.primitive(lambda x: x * x * x, name="cube_with_bad_second_derivative2")
npdeq.defvjp(_cube, lambda g, ans, x: g * 3.0 * _bad_square(x))


def test_a_rule_on_raw_arrays_passes_order_1_and_fails_order_2(xp, to_xp):
    x = to_xp(np.array([0.3, -0.7, 1.1]))
    check_grads(_raw_exp, x, modes=("rev",), order=1)
    with pytest.raises(AssertionError, match="order 2"):
        check_grads(_raw_exp, x, modes=("rev",), order=2)
    # Forward mode transposes the rule, which it cannot: it says so instead of giving 0.
    with pytest.raises(RuntimeError, match="does not record its own backward pass"):
        check_grads(_raw_exp, x, modes=("fwd",), order=1)


def test_forward_mode_catches_a_wrong_second_derivative(to_xp):
    x = to_xp(np.array([0.5, -1.0, 2.0]))
    with pytest.raises(AssertionError, match="fwd-mode derivative of order 2"):
        check_grads(_cube, x, modes=("fwd",), order=2, seed=3)


def test_third_order_in_both_modes(to_xp):
    rng = np.random.default_rng(0)
    a, b = to_xp(rng.standard_normal((2, 3))), to_xp(rng.standard_normal((3, 2)))
    check_grads(lambda a, b: npdeq.logsumexp(npdeq.tanh(a @ b), axis=1), a, b,
                modes=("rev", "fwd"), order=3, rtol=1e-5, atol=1e-6)
