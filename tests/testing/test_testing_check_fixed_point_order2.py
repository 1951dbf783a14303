"""check_fixed_point_grads(order=2): the arguments, the report, PhantomGrad reported but not
asserted, and a rule that cannot record its backward pass refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq.testing import check, check_fixed_point_grads

W, B = 0.5 * np.eye(3), np.ones(3)


def tanh_map(z, W, b):
    return npdeq.tanh(z @ W + b)


def test_phantom_second_order_is_reported_not_asserted():
    report = check_fixed_point_grads(tanh_map, np.zeros((2, 3)), {"W": W, "b": B}, grad=3,
                                     order=2)
    assert [p.name for p in report.second_order] == ["W", "b"]
    assert all(np.isfinite(p.observed) and np.isfinite(p.expected) for p in report.second_order)
    assert "second order: the rule's Hessian-vector product" in str(report)
    first = check_fixed_point_grads(tanh_map, np.zeros((2, 3)), {"W": W, "b": B}, grad=3)
    assert first.second_order == [] and "second order" not in str(first)


def test_a_rule_without_second_derivatives_is_refused_clearly(monkeypatch):
    def first_order_only(*args, **kwargs):
        raise NotImplementedError("create_graph=True through this rule is not supported")

    monkeypatch.setattr(check, "hvp", first_order_only)
    with pytest.raises(NotImplementedError, match=r"order=2\) needs second derivatives "
                                                  r"through the ift rule.*not supported"):
        check_fixed_point_grads(tanh_map, np.zeros((1, 3)), {"W": W, "b": B}, order=2)


@pytest.mark.parametrize("order", [0, 3, True, 2.0])
def test_order_must_be_1_or_2(order):
    with pytest.raises(ValueError, match=f"order must be 1 or 2, got {order!r}"):
        check_fixed_point_grads(tanh_map, np.zeros((1, 3)), {"W": W, "b": B}, order=order)
