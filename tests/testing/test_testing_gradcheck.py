"""check_grads / check_vjp: they pass on correct rules and catch wrong ones, orders 1 and 2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq
from npdeq.testing import (check_grads, check_vjp, default_eps, numerical_jacobian,
                           numerical_vjp)

# A cube whose first derivative is right but whose rule uses a square with a wrong rule:
# first order passes, second order must not.
_bad_square = npdeq.primitive(lambda x: x * x, name="bad_square")
npdeq.defvjp(_bad_square, lambda g, ans, x: g * x)  # should be 2 g x
_cube = npdeq.primitive(lambda x: x * x * x, name="cube_with_bad_second_derivative")
npdeq.defvjp(_cube, lambda g, ans, x: g * 3.0 * _bad_square(x))

# A sine whose rule is 1 % too large.
_wrong_sin = npdeq.primitive(lambda x: npdeq.backend.array_namespace(x).sin(x), name="wrong_sin")
_cos = npdeq.primitive(lambda x: npdeq.backend.array_namespace(x).cos(x), name="cos")
npdeq.defvjp(_wrong_sin, lambda g, ans, x: 1.01 * g * _cos(x))
npdeq.defvjp(_cos, lambda g, ans, x: -g * _wrong_sin(x))

_values = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
                     elements=st.floats(-2, 2))


@given(x=_values, seed=st.integers(0, 2**16))
def test_correct_rules_pass_orders_1_and_2(xp, to_xp, x, seed):
    check_grads(lambda t: npdeq.tanh(t) * t + npdeq.exp(0.3 * t), to_xp(x),
                modes=("rev", "fwd"), order=2, seed=seed)


def test_several_arguments_order_2(xp, to_xp):
    rng = np.random.default_rng(0)
    a, b = to_xp(rng.standard_normal((3, 4))), to_xp(rng.standard_normal((4, 2)))
    check_grads(lambda a, b: npdeq.tanh(a @ b), a, b, modes=("rev", "fwd"), order=2)


@given(x=_values, seed=st.integers(0, 2**16))
def test_wrong_first_derivative_is_caught(xp, to_xp, x, seed):
    # sin's rule is 1 % too large: both modes must see it.
    for mode in ("rev", "fwd"):
        with pytest.raises(AssertionError, match=f"seed={seed}"):
            check_grads(_wrong_sin, to_xp(x + 0.1), modes=(mode,), seed=seed)


def test_wrong_second_derivative_is_caught_only_at_order_2(xp, to_xp):
    x = to_xp(np.array([0.5, -1.0, 2.0]))
    check_grads(_cube, x, modes=("rev", "fwd"), order=1)
    with pytest.raises(AssertionError, match="order 2") as err:
        check_grads(_cube, x, order=2, seed=5)
    message = str(err.value)
    assert "tape gives" in message and "finite differences give" in message
    assert "seed=5" in message


def test_failure_replays_with_reported_seed(to_xp):
    x = to_xp(np.linspace(0.1, 1.0, 4))
    with pytest.raises(AssertionError, match="seed=7"):
        check_grads(_wrong_sin, x, seed=7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown mode"):
        check_grads(npdeq.tanh, np.ones(2), modes=("sideways",))
    with pytest.raises(ValueError, match="order must be >= 1"):
        check_grads(npdeq.tanh, np.ones(2), order=0)
    with pytest.raises(ValueError, match="one per argument"):
        check_vjp(np.sin, [np.ones(2)], lambda u: [u, u])


def test_check_vjp_for_raw_functions():
    x = np.linspace(-1.0, 1.0, 5)
    check_vjp(np.sin, [x], lambda u: [u * np.cos(x)])
    with pytest.raises(AssertionError, match="seed=3"):
        check_vjp(np.sin, [x], lambda u: [u * np.cos(x) * 1.001], seed=3)


def test_numerical_helpers(xp, to_xp, check_array):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 4))
    x = to_xp(rng.standard_normal(4))
    J = numerical_jacobian(lambda t: npdeq.tanh(t @ npdeq.Tensor(to_xp(A)).T), x)
    xn = npdeq.backend.to_numpy(x)
    expected = (1 - np.tanh(A @ xn) ** 2)[:, None] * A
    assert J.shape == (3, 4)
    np.testing.assert_allclose(J, expected, rtol=1e-7, atol=1e-9)
    u, v = rng.standard_normal(3), rng.standard_normal(4)
    got = numerical_vjp(lambda t: npdeq.tanh(t @ npdeq.Tensor(to_xp(A)).T), [x], to_xp(u),
                        [to_xp(v)])
    assert got == pytest.approx(u @ expected @ v, rel=1e-7)
    assert default_eps(to_xp(np.float32([1.0]))) > default_eps(x)
