"""matmul: forward against NumPy, VJP against HIPS autograd, first and second order against
finite differences for vectors, matrices and broadcast batches; operators; shape errors."""

from __future__ import annotations

import re

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq
from npdeq.testing.gradcheck import check_grads

from op_harness import Example, OpCase, arrays, check_op


@st.composite
def matmul_examples(draw):
    # NumPy's signature: 1-d operands are promoted and their axis dropped again; the batch
    # axes in front of the core ones broadcast.
    shapes = draw(hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=2, max_side=4))
    return Example(tuple(draw(arrays(s)) for s in shapes.input_shapes))


CASES = [
    OpCase("matmul", matmul_examples(), npdeq.matmul, anp.matmul, order=2, rtol=1e-5),
    OpCase("matmul_operator", matmul_examples(), lambda a, b: a @ b, anp.matmul, order=2,
           rtol=1e-5, arrays=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def test_matmul_with_a_constant_operand_on_either_side(xp, to_xp, check_array):
    rng = np.random.default_rng(0)
    w0, x0 = rng.standard_normal((3, 4)), rng.standard_normal((5, 4, 2))
    w = npdeq.Tensor(to_xp(w0), requires_grad=True)
    x = to_xp(x0)
    # d/dw[i, k] of sum(w @ x) and of sum(x^T @ w^T) is sum over b, j of x[b, k, j].
    expected_grad = np.broadcast_to(x0.sum(axis=(0, 2)), (3, 4))
    for out, expected in [(npdeq.matmul(w, x), w0 @ x0),
                          (npdeq.matmul(npdeq.swapaxes(x, -1, -2), w.T),
                           np.swapaxes(x0, -1, -2) @ w0.T)]:
        check_array(out, shape=expected.shape, dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-13)
        (g,) = npdeq.grad(out.sum(), [w])
        check_array(g, shape=(3, 4), dtype=xp.float64)
        np.testing.assert_allclose(g.numpy(), expected_grad, rtol=1e-13)


@given(seed=st.integers(0, 2 ** 16))
def test_second_order_of_a_bilinear_form(xp, to_xp, seed):
    rng = np.random.default_rng(seed)
    a, m, b = (to_xp(rng.standard_normal(s)) for s in [(3,), (3, 4), (4,)])
    check_grads(lambda a, m, b: npdeq.tanh(a @ m @ b), a, m, b, order=2, modes=("rev", "fwd"),
                seed=seed)


@pytest.mark.parametrize("shape_a, shape_b", [
    ((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)), ((5, 2, 3), (2, 2)), ((4,), (3, 5, 2)),
    ((2, 3, 4), (3, 4, 5)), ((2, 3, 3, 4), (2, 4, 5)),
])
def test_mismatched_shapes_name_both_shapes(xp, to_xp, shape_a, shape_b):
    a = npdeq.Tensor(to_xp(np.zeros(shape_a)), requires_grad=True)
    b = to_xp(np.zeros(shape_b))
    message = (f"matmul: shapes {re.escape(str(shape_a))} and {re.escape(str(shape_b))} are "
               "not aligned")
    with pytest.raises(ValueError, match=message):
        npdeq.matmul(a, b)
    with pytest.raises(ValueError, match=message):
        a @ npdeq.Tensor(b)


def test_zero_dimensional_operand_is_an_error(xp, to_xp):
    with pytest.raises(ValueError, match=r"at least one dimension.*\(\) and \(3,\)"):
        npdeq.matmul(to_xp(np.array(2.0)), to_xp(np.ones(3)))
