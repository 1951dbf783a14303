"""einsum, outer and trace: forward against NumPy, VJP against HIPS autograd, first and second
order against finite differences for explicit and implicit outputs, '...', repeated labels
(diagonals) and labels summed in one operand only; subscript errors."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq

from op_harness import Example, OpCase, arrays, check_op
from test_ops_shape import MATRICES, _diagonal_args, diagonal_reference

# Subscripts and the number of '...' axes of each operand (None: no '...').
SPECS = ["ij,jk->ik", "ij,jk", "i,i->", "i,j->ij", "ij->", "ijk->kj", "bij,bjk->bik",
         "ij,ij->ij", "ij,j", "ijk,ik->j"]
ELLIPSIS_SPECS = ["...ij,...jk->...ik", "...i->...", "...ij,jk", "i...->...i", "...,...->..."]
# Repeated labels inside one operand: autograd's einsum refuses them.
DIAGONAL_SPECS = ["ii->i", "ii", "iij->ji", "ii,i->i", "iji->j"]


@st.composite
def _einsum_examples(draw, specs):
    spec = draw(st.sampled_from(specs))
    inputs = spec.split("->")[0].split(",")
    size = {c: draw(st.integers(1, 3)) for c in sorted(set("".join(inputs)) - {"."})}
    lead = draw(st.lists(st.integers(1, 3), max_size=2))  # the '...' axes
    operands = []
    for term in inputs:
        # Each operand gets a trailing part of the '...' axes (they broadcast).
        ell = lead[draw(st.integers(0, len(lead))):] if "..." in term else []
        head, _, tail = term.partition("...")
        shape = ([size[c] for c in head] + ell + [size[c] for c in tail]) if "..." in term \
            else [size[c] for c in term]
        operands.append(draw(arrays(tuple(shape))))
    return Example(tuple(operands), {"subscripts": spec})


def _einsum(*operands, subscripts):
    return npdeq.einsum(subscripts, *operands)


def _reference(*operands, subscripts):
    return anp.einsum(subscripts, *operands)


@st.composite
def _two(draw):
    return Example((draw(arrays(draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)))),
                    draw(arrays(draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))))))


CASES = [
    OpCase("einsum", _einsum_examples(SPECS), _einsum, _reference, order=2),
    OpCase("einsum_ellipsis", _einsum_examples(ELLIPSIS_SPECS), _einsum, _reference, order=2),
    OpCase("einsum_diagonal", _einsum_examples(DIAGONAL_SPECS), _einsum, _reference, order=2,
           autograd=False),
    OpCase("outer", _two(), npdeq.outer,
           lambda a, b: anp.ravel(a)[:, None] * anp.ravel(b)[None, :], order=2),
    OpCase("trace", MATRICES.flatmap(lambda shape: st.builds(
        lambda a, kw: Example((a,), kw), arrays(shape), _diagonal_args(shape))),
           npdeq.trace, lambda a, **kw: anp.sum(diagonal_reference(a, **kw), axis=-1), order=2),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@settings(max_examples=10)
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def test_implicit_output_is_alphabetical_and_trace_method(xp, to_xp, check_array):
    a0 = np.arange(6.0).reshape(2, 3)
    out = npdeq.einsum("ba", to_xp(a0))
    check_array(out, shape=(3, 2), dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), np.einsum("ba", a0))
    m = npdeq.Tensor(to_xp(np.arange(9.0).reshape(3, 3)), requires_grad=True)
    t = m.trace()
    check_array(t, shape=(), dtype=xp.float64)
    assert float(t.numpy()) == 12.0
    (g,) = npdeq.grad(t, [m])
    np.testing.assert_array_equal(g.numpy(), np.eye(3))


@pytest.mark.parametrize("subscripts, shapes, message", [
    ("ij,jk->ik", [(2, 3)], "name 2 operands, got 1"),
    ("ij->i", [(2, 3, 4)], r"subscript 'ij' does not fit an operand of shape \(2, 3, 4\)"),
    ("ij,jk->ik", [(2, 3), (4, 5)], "subscript 'j' has size 3 in one operand and 4"),
    ("ij->ii", [(2, 2)], "output subscript 'i' of 'ij->ii' must appear once"),
    ("ij->k", [(2, 2)], "output subscript 'k'"),
    ("i1->i", [(2, 2)], "may hold letters"),
])
def test_einsum_errors(xp, to_xp, subscripts, shapes, message):
    with pytest.raises(ValueError, match=message):
        npdeq.einsum(subscripts, *[to_xp(np.zeros(s)) for s in shapes])
    with pytest.raises(TypeError, match="subscripts must be a str"):
        npdeq.einsum(to_xp(np.zeros(2)))
