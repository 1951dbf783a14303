"""matmul: forward against NumPy, VJP against HIPS autograd, first and second order against
finite differences for vectors, matrices and broadcast batches; operators; shape errors.
npdeq.linalg the same way: vector and matrix norms (gradient 0 at zero, to second order),
solve, inv, det, slogdet, cholesky, eigh, eigvalsh; argument errors."""

from __future__ import annotations

import re

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
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


# --- npdeq.linalg: norms, solve, inv, det, slogdet ---------------------------------------

import npdeq.linalg  # noqa: E402  (the module, as ``import numpy.linalg``)
from op_harness import away_from_zero, floats, grid, unary  # noqa: E402

NON_EMPTY = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
SMALL = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3)
ORDS = [2, 1, 3, 1.5, np.inf, -np.inf]


def _vector_norm_args(shape):
    return st.fixed_dictionaries({
        "axis": st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                          hnp.valid_tuple_axes(len(shape), min_size=1)),
        "keepdims": st.booleans(), "ord": st.sampled_from(ORDS)})


def _vector_norm_reference(x, axis, keepdims, ord):
    # The reduced axes moved to the end and merged; the norms written out (autograd's norm
    # has no gradient for some orders).
    axes = tuple(range(x.ndim)) if axis is None else tuple(
        a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    rest = [i for i in range(x.ndim) if i not in axes]
    flat = anp.reshape(anp.transpose(x, rest + list(axes)), [x.shape[i] for i in rest] + [-1])
    if ord in (np.inf, -np.inf):
        out = (anp.max if ord > 0 else anp.min)(anp.abs(flat), axis=-1)
    else:
        out = anp.sum(anp.abs(flat) ** ord, axis=-1) ** (1.0 / ord)
    return anp.reshape(out, [1 if i in axes else s for i, s in enumerate(x.shape)]) \
        if keepdims else out


def _matrix_norm_reference(x, ord, axis, keepdims):
    r, c = axis
    if ord == "fro":
        out = anp.sqrt(anp.sum(x * x, axis=(r, c), keepdims=True))
    else:
        inner, outer = (r, c) if ord in (1, -1) else (c, r)
        sums = anp.sum(anp.abs(x), axis=inner, keepdims=True)
        out = (anp.max if ord > 0 else anp.min)(sums, axis=outer, keepdims=True)
    return out if keepdims else anp.squeeze(out, axis=(r, c))


@st.composite
def _matrix_norm_examples(draw):
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4))
    n = len(shape)
    axis = draw(st.tuples(st.integers(-n, n - 1), st.integers(-n, n - 1)).filter(
        lambda t: t[0] % n != t[1] % n))
    # A grid without ties: the max/min over column sums has one winner.
    x = draw(arrays(shape, st.integers(1, 40).map(lambda k: k * 0.1 + k * k * 1e-3),
                    unique=True))
    return Example((x,), {"ord": draw(st.sampled_from(["fro", 1, -1, np.inf, -np.inf])),
                          "axis": axis, "keepdims": draw(st.booleans())})


@st.composite
def _square(draw, batch=True):
    n = draw(st.integers(1, 3))
    lead = tuple(draw(st.lists(st.integers(1, 2), max_size=1 if batch else 0)))
    # Diagonally dominant: well conditioned, det away from 0.
    return draw(arrays(lead + (n, n), floats(-1.0, 1.0))) + 4.0 * np.eye(n)


@st.composite
def _solve_examples(draw):
    a = draw(_square())
    n = a.shape[-1]
    if draw(st.booleans()):
        b = draw(arrays((n,)))
    else:
        batch = tuple(draw(st.sampled_from([(), a.shape[:-2], (2,) * (a.ndim - 2)])))
        b = draw(arrays(batch + (n, draw(st.integers(1, 3)))))
    return Example((a, b))


def _solve_reference(a, b):
    # autograd's solve VJP does not unbroadcast batches; inv and matmul's VJPs do.
    return anp.matmul(anp.linalg.inv(a), b)


@st.composite
def _symmetric(draw):
    # Eigenvalues near 1, 3, 6 (gaps of about 2): eigenvectors' gradients are well defined.
    n = draw(st.integers(1, 3))
    lead = tuple(draw(st.lists(st.integers(1, 2), max_size=1)))
    return Example((np.diag([1.0, 3.0, 6.0][:n]) + draw(arrays(lead + (n, n),
                                                               floats(-0.3, 0.3))),))


def _sym(a, lib):
    # lib.add, not +: a raw array_api_strict array does not add a Tensor.
    return lib.add(a, lib.swapaxes(a, -1, -2)) * 0.5


LINALG_CASES = [
    # Distinct magnitudes, none near 0: one winner for the inf-norms, no kink of |x|.
    OpCase("vector_norm", unary(grid(0.37, 0.2), shapes=SMALL, kwargs=_vector_norm_args,
                                unique=True),
           npdeq.linalg.vector_norm, _vector_norm_reference, order=2, rtol=1e-5),
    OpCase("norm_matrix", _matrix_norm_examples(),
           lambda x, **kw: npdeq.linalg.norm(x, **kw), _matrix_norm_reference, order=2,
           rtol=1e-5),
    OpCase("matrix_norm", _matrix_norm_examples().filter(
        lambda e: {a % e.arrays[0].ndim for a in e.kwargs["axis"]} == {
            e.arrays[0].ndim - 2, e.arrays[0].ndim - 1}).map(lambda e: Example(e.arrays, {
                "ord": e.kwargs["ord"], "keepdims": e.kwargs["keepdims"]})),
           npdeq.linalg.matrix_norm, lambda x, ord, keepdims: _matrix_norm_reference(
               x, ord, (x.ndim - 2, x.ndim - 1), keepdims), order=2, rtol=1e-5),
    OpCase("norm_flat", unary(away_from_zero(), shapes=NON_EMPTY), npdeq.linalg.norm,
           lambda x: anp.sqrt(anp.sum(x * x)), order=2, rtol=1e-5),
    OpCase("solve", _solve_examples(), npdeq.linalg.solve, _solve_reference, order=2, rtol=1e-5),
    OpCase("inv", st.builds(lambda a: Example((a,)), _square()), npdeq.linalg.inv,
           anp.linalg.inv, order=2, rtol=1e-5),
    OpCase("det", st.builds(lambda a: Example((a,)), _square()), npdeq.linalg.det,
           anp.linalg.det, order=2, rtol=1e-5),
    OpCase("slogdet", st.builds(lambda a: Example((a * np.where(np.arange(a.shape[-1]) == 0,
                                                                -1.0, 1.0),)), _square()),
           lambda a: npdeq.linalg.slogdet(a).logabsdet, lambda a: anp.linalg.slogdet(a)[1],
           order=2, rtol=1e-5),
    # The decompositions read one triangle: checked through symmetric functions of the input.
    OpCase("cholesky", st.builds(lambda a: Example((a,)), _square()),
           lambda a: npdeq.linalg.cholesky(npdeq.matmul(a, npdeq.swapaxes(a, -1, -2))),
           lambda a: anp.linalg.cholesky(a @ anp.swapaxes(a, -1, -2)), order=2, rtol=1e-5),
    OpCase("eigvalsh", _symmetric(), lambda a: npdeq.linalg.eigvalsh(_sym(a, npdeq)),
           lambda a: anp.linalg.eigh(_sym(a, anp))[0], order=2, rtol=1e-5),
    OpCase("eigh_vectors", _symmetric(),
           lambda a: npdeq.linalg.eigh(_sym(a, npdeq)).eigenvectors ** 2,  # sign-free
           lambda a: anp.linalg.eigh(_sym(a, anp))[1] ** 2, order=2, rtol=1e-5),
]


@pytest.mark.parametrize("case", LINALG_CASES, ids=str)
@settings(max_examples=8)
@given(data=st.data())
def test_linalg(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


@pytest.mark.parametrize("norm", [
    lambda x: npdeq.linalg.norm(x), lambda x: npdeq.linalg.norm(x, axis=-1),
    lambda x: npdeq.linalg.vector_norm(x, ord=3), lambda x: npdeq.linalg.matrix_norm(x),
    lambda x: x.norm(), lambda x: x.norm(dim=1, keepdim=True)],
    ids=["norm", "norm_axis", "ord3", "fro", "method", "method_dim"])
def test_norm_gradient_at_zero_is_zero_to_second_order(xp, to_xp, check_array, norm):
    # One row zero, one not: the zero row gets gradient 0 (not NaN), the other x/|x|.
    x0 = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]])
    x = npdeq.Tensor(to_xp(x0), requires_grad=True)
    (g,) = npdeq.grad(norm(x).sum(), [x], create_graph=True)
    check_array(g, shape=(2, 3), dtype=xp.float64)
    assert np.all(np.isfinite(g.numpy()))
    np.testing.assert_array_equal(g.numpy()[0], 0.0)
    (h,) = npdeq.grad((g * g).sum() + g.sum(), [x])
    check_array(h, shape=(2, 3), dtype=xp.float64)
    assert np.all(np.isfinite(h.numpy()))


def test_slogdet_sign_and_tensor_norm(xp, to_xp, check_array):
    a = to_xp(np.diag([-2.0, 3.0, 0.5]))
    sign, logdet = npdeq.linalg.slogdet(a)
    check_array(sign, shape=(), dtype=xp.float64)
    assert not sign.requires_grad
    assert float(sign.numpy()) == -1.0
    np.testing.assert_allclose(logdet.numpy(), np.log(3.0))
    x0 = np.arange(6.0).reshape(2, 3) - 2.0
    x = npdeq.Tensor(to_xp(x0))
    for out, expected in [(x.norm(), np.linalg.norm(x0)),
                          (x.norm(p=1, dim=0), np.abs(x0).sum(axis=0)),
                          (x.norm(dim=-1, keepdim=True), np.linalg.norm(x0, axis=-1,
                                                                        keepdims=True))]:
        check_array(out, shape=np.shape(expected), dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-14)


@pytest.mark.parametrize("call, message", [
    (lambda x: npdeq.linalg.norm(x, ord="nuc"), "ord='nuc' is not a supported matrix norm"),
    (lambda x: npdeq.linalg.norm(x, ord="fro", axis=0), "ord='fro' is a matrix norm"),
    (lambda x: npdeq.linalg.vector_norm(x, ord="fro"), "ord='fro' is not a vector norm order"),
    (lambda x: npdeq.linalg.norm(x, axis=(0, 0)), r"axis=\(0, 0\) names the same axis"),
    (lambda x: npdeq.linalg.matrix_norm(x[0]), "matrix_norm: needs at least 2 dimensions"),
    (lambda x: npdeq.linalg.inv(x), r"inv: needs square matrices .* shape \(2, 3\)"),
    (lambda x: npdeq.linalg.solve(x[:, :2], x[0]), r"solve: b of shape \(3,\) does not match"),
    (lambda x: npdeq.linalg.det(x[0]), r"det: needs square matrices"),
])
def test_linalg_errors(xp, to_xp, call, message):
    with pytest.raises(ValueError, match=message):
        call(npdeq.Tensor(to_xp(np.ones((2, 3)))))


def test_linalg_is_a_module_like_numpy_linalg():
    import importlib

    assert importlib.import_module("npdeq.linalg") is npdeq.linalg
    assert npdeq.linalg.matmul is npdeq.matmul
    for name in ("norm", "solve", "inv", "det", "slogdet"):
        assert not hasattr(npdeq, name) or name == "norm", name  # npdeq.norm: TorchDEQ's
    assert npdeq.norm is not npdeq.linalg.norm
