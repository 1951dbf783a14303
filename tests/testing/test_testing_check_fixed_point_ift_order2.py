"""check_fixed_point_grads(order=2) through the IFT rule: second derivatives of a fixed point
match finite differences of its gradient, and a wrong second derivative is caught."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq.testing import check_fixed_point_grads

# tanh whose first derivative is right but whose second is 10 % off: the rule records
# 1 - _bad_square(ans), and _bad_square's own rule is wrong.
_bad_square = npdeq.primitive(lambda x: x * x, name="bad_square_fp")
npdeq.defvjp(_bad_square, lambda g, ans, x: 1.8 * g * x)  # should be 2 g x
_tanh2 = npdeq.primitive(lambda x: npdeq.backend.array_namespace(x).tanh(x),
                         name="tanh_with_bad_second_derivative")
npdeq.defvjp(_tanh2, lambda g, ans, x: g * (1.0 - _bad_square(ans)))


def test_ift_second_order_matches_finite_differences(xp, to_xp):
    rng = np.random.default_rng(2)
    W = to_xp(0.4 * np.linalg.qr(rng.standard_normal((3, 3)))[0])
    b, z0 = to_xp(rng.standard_normal(3)), to_xp(np.zeros((2, 3)))
    report = check_fixed_point_grads(lambda z, W, b: npdeq.tanh(z @ W + b), z0,
                                     {"W": W, "b": b}, order=2, seed=1)
    assert report.passed and [p.name for p in report.second_order] == ["W", "b"]
    assert all(p.passed and abs(p.expected) > 1e-6 for p in report.second_order)


@pytest.mark.parametrize("b_solver", ["fixed_point_iter", "gmres"])
def test_a_wrong_second_derivative_is_caught(b_solver):
    W, b = 0.5 * np.eye(3) + 0.1, np.linspace(0.5, 1.5, 3)
    f = lambda z, W, b: _tanh2(z @ W + b)  # noqa: E731
    check_fixed_point_grads(f, np.zeros((1, 3)), {"W": W, "b": b}, b_solver=b_solver)
    with pytest.raises(AssertionError, match="second order") as err:
        check_fixed_point_grads(f, np.zeros((1, 3)), {"W": W, "b": b}, order=2,
                                b_solver=b_solver, seed=4)
    assert "NO" in str(err.value).split("second order")[1]
