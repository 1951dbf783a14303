"""NumPy's names and the rest of HIPS autograd's VJP table (numpy_compat, numpy_products,
numpy_shape): one harness line per op (forward against NumPy, VJP against autograd, finite
differences), the aliases, NaN/infinity handling and bad arguments."""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq
from npdeq.testing.gradcheck import check_grads

from op_harness import (Example, OpCase, arrays, away_from_zero, check_op, floats, grid, nary,
                        unary)


@st.composite
def fixed(draw, *options):
    """Random values for one of ``options``: a tuple of shapes, or ``(shapes, kwargs)``."""
    chosen = draw(st.sampled_from(options))
    shapes, kw = chosen if len(chosen) == 2 and isinstance(chosen[1], dict) else (chosen, {})
    return Example(tuple(draw(arrays(s)) for s in shapes), kw)


def _split_op(split):
    # Parts weighted by their position and joined again: checks every part's place and VJP.
    def op(a, **kwargs):
        parts = split(a, **kwargs)
        axis = kwargs.get("axis", 0)
        return npdeq.concatenate([p * (i + 1.0) for i, p in enumerate(parts)], axis=axis)
    return op


def _split_ref(split):
    def ref(a, indices_or_sections, axis=0):
        kwargs = {"axis": axis}
        parts = split(a, indices_or_sections, axis=axis)  # autograd's rule: positional
        axis = kwargs.get("axis", 0)
        return anp.concatenate([p * (i + 1.0) for i, p in enumerate(parts)], axis=axis)
    return ref


def _named_split(npdeq_split, anp_split, axis):
    return (lambda a, n: npdeq.concatenate([p * (i + 1.0) for i, p in enumerate(
                npdeq_split(a, n))], axis=min(axis, a.ndim - 1)),
            lambda a, n: anp.concatenate([p * (i + 1.0) for i, p in enumerate(
                anp_split(a, n))], axis=min(axis, a.ndim - 1)))


def _concatenate_reference(a, b, axis):
    # autograd's rule for concatenate takes no axis=None (NumPy's flattening).
    if axis is None:
        return anp.concatenate([anp.ravel(a), anp.ravel(b)])
    return anp.concatenate([a, b], axis=axis)


def _cross_reference(a, b, **kwargs):
    # autograd's rule for cross does not sum a broadcast cotangent back to b's shape; adding
    # zeros first lets autograd's add do it.
    if not kwargs and a.shape != b.shape:
        b = b + np.zeros(a.shape)
    return anp.cross(a, b, **kwargs)


def _k(low, high):
    return st.integers(low, high)


D1 = hnp.array_shapes(min_dims=1, max_dims=1, min_side=1, max_side=4)
D2 = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=4)
ND = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
QUOTIENTS = st.sampled_from([1.0, -1.0, 2.0, -2.0])  # a on the 0.25-offset grid: a/b clear of ints

hsplit_op, hsplit_ref = _named_split(npdeq.hsplit, anp.hsplit, 1)
vsplit_op, vsplit_ref = _named_split(npdeq.vsplit, anp.vsplit, 0)
dsplit_op, dsplit_ref = _named_split(npdeq.dsplit, anp.dsplit, 2)

CASES = [
    # elementwise
    OpCase("mod", nary(grid(0.5, offset=0.25), QUOTIENTS), npdeq.mod, anp.mod, order=2),
    OpCase("remainder", nary(grid(0.5, offset=0.25), QUOTIENTS), npdeq.remainder,
           anp.remainder, order=2),
    OpCase("fmax", nary(grid(0.5), grid(0.5, offset=0.25)), npdeq.fmax, anp.fmax, order=2),
    OpCase("fmin", nary(grid(0.5), grid(0.5, offset=0.25)), npdeq.fmin, anp.fmin, order=2),
    OpCase("nan_to_num", unary(), npdeq.nan_to_num, anp.nan_to_num, order=2),
    OpCase("logaddexp2", nary(floats(-5.0, 5.0), floats(-5.0, 5.0)), npdeq.logaddexp2,
           anp.logaddexp2, order=2, rtol=1e-5),
    OpCase("sinc", unary(away_from_zero(0.05, 3.0)), npdeq.sinc, anp.sinc, order=2, rtol=1e-5),
    OpCase("fabs", unary(away_from_zero()), npdeq.fabs, anp.fabs, order=2),
    OpCase("concatenate", fixed((((2, 3), (1, 3)), {"axis": 0}), (((2, 1), (2, 3)), {"axis": -1}),
                                (((2, 2), (3,)), {"axis": None})),
           lambda a, b, axis: npdeq.concatenate([a, b], axis=axis),
           _concatenate_reference, order=2),
    # products
    OpCase("dot", fixed(((), (3,)), ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)),
                        ((2, 3), (3, 4)), ((2, 2, 3), (3,)), ((3,), (2, 3, 2)),
                        ((2, 1, 3), (2, 3, 2))), npdeq.dot, anp.dot, order=2),
    OpCase("tensordot", fixed((((2, 3, 4), (3, 4, 2)), {"axes": 2}),
                              (((2, 3), (4,)), {"axes": 0}),
                              (((2, 3, 4), (4, 2, 3)), {"axes": ([1, 2], [2, 0])}),
                              (((3, 2), (3, 4)), {"axes": (0, 0)})),
           npdeq.tensordot, anp.tensordot, order=2),
    OpCase("inner", fixed(((3,), (3,)), ((2, 3), (4, 3)), ((), (2, 2)), ((2, 2, 3), (3,))),
           npdeq.inner, anp.inner, order=2),
    OpCase("kron", fixed(((2,), (3,)), ((2, 3), (2, 2)), ((2,), (2, 3)), ((2, 1, 2), (3, 2))),
           npdeq.kron, anp.kron, order=2),
    OpCase("cross", fixed((((3,), (3,)), {}), (((4, 3), (1, 3)), {}),
                          (((3, 2), (2, 3)), {"axisa": 0, "axisb": -1, "axisc": 0}),
                          (((2, 3), (2, 3)), {"axis": 1})),
           npdeq.cross, _cross_reference, order=2),
    # rearrangements
    OpCase("diag_of_vector", unary(shapes=D1, kwargs=lambda s: st.fixed_dictionaries(
        {"k": _k(-2, 2)})), npdeq.diag, anp.diag, order=2),
    # autograd's rule for the diagonal of a non-square matrix is wrong (a square cotangent).
    OpCase("diag_of_matrix", unary(shapes=D2, kwargs=lambda s: st.fixed_dictionaries(
        {"k": _k(-2, 2)})), npdeq.diag, np.diag, order=2, autograd=False),
    OpCase("diff", unary(shapes=ND, kwargs=lambda s: st.fixed_dictionaries(
        {"n": _k(0, 2), "axis": _k(-len(s), len(s) - 1)})), npdeq.diff, anp.diff, order=2),
    OpCase("diff_prepend_append",
           fixed((((3, 4), (3, 1)), {"axis": 1}), (((2, 3), (1, 3)), {"axis": 0})),
           lambda a, b, axis: npdeq.diff(a, axis=axis, prepend=1.5, append=b),
           lambda a, b, axis: np.diff(a, axis=axis, prepend=1.5, append=b), order=2,
           autograd=False),
    OpCase("moveaxis", unary(shapes=hnp.array_shapes(min_dims=3, max_dims=3, max_side=3),
                             kwargs=lambda s: st.sampled_from([
                                 {"source": 0, "destination": -1},
                                 {"source": [0, 1], "destination": [2, 0]}])),
           npdeq.moveaxis, anp.moveaxis, order=2),
    OpCase("ravel", unary(), npdeq.ravel, anp.ravel, order=2),
    OpCase("atleast_1d", unary(), npdeq.atleast_1d, anp.atleast_1d, order=2),
    OpCase("atleast_2d", unary(), npdeq.atleast_2d, anp.atleast_2d, order=2),
    OpCase("atleast_3d", unary(), npdeq.atleast_3d, anp.atleast_3d, order=2),
    OpCase("fliplr", unary(shapes=D2), npdeq.fliplr, anp.fliplr, order=2),
    OpCase("flipud", unary(shapes=ND), npdeq.flipud, anp.flipud, order=2),
    OpCase("rot90", unary(shapes=hnp.array_shapes(min_dims=2, max_dims=3, max_side=3),
                          kwargs=lambda s: st.fixed_dictionaries({"k": _k(-1, 4)})),
           npdeq.rot90, anp.rot90, order=2),
    # autograd's rule for rot90 takes no axes: forward against NumPy, VJP by differences.
    OpCase("rot90_axes", unary(shapes=hnp.array_shapes(min_dims=2, max_dims=3, max_side=3),
                               kwargs=lambda s: st.fixed_dictionaries(
                                   {"k": _k(-1, 4), "axes": st.sampled_from([(1, 0),
                                                                             (-1, 0)])})),
           npdeq.rot90, np.rot90, order=2, autograd=False),
    OpCase("array_split", unary(shapes=D2, kwargs=lambda s: st.fixed_dictionaries(
        {"indices_or_sections": st.one_of(_k(1, 3), st.just([1, 3])), "axis": _k(-2, 1)})),
        _split_op(npdeq.array_split), _split_ref(anp.array_split), order=2),
    OpCase("hsplit", fixed((((3, 4),), {"n": 2}), (((2, 6),), {"n": [2, 5]})),
           hsplit_op, hsplit_ref, order=2),
    OpCase("vsplit", fixed((((4, 2),), {"n": 2}),), vsplit_op, vsplit_ref, order=2),
    OpCase("dsplit", fixed((((1, 2, 3),), {"n": 3}),), dsplit_op, dsplit_ref, order=2),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@settings(max_examples=3)
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def test_aliases_are_the_ops():
    pairs = {"absolute": "abs", "amax": "max", "amin": "min", "divide": "div",
             "true_divide": "div", "multiply": "mul", "subtract": "sub", "negative": "neg",
             "power": "pow", "degrees": "rad2deg", "radians": "deg2rad", "remainder": "mod"}
    for alias, op in pairs.items():
        assert getattr(npdeq, alias) is getattr(npdeq, op), alias
    for name in ("mean", "var", "concat", "split"):
        assert callable(getattr(npdeq, name))


# --- NaN, infinities, and the kinks ------------------------------------------------------


@pytest.mark.parametrize("op, reference", [(npdeq.fmax, anp.fmax), (npdeq.fmin, anp.fmin)],
                         ids=["fmax", "fmin"])
def test_fmax_fmin_ignore_nan(xp, to_xp, check_array, op, reference):
    import autograd

    a0 = np.array([np.nan, 1.0, np.nan, 2.0, -np.inf])
    b0 = np.array([3.0, np.nan, np.nan, 2.0, np.nan])
    a, b = (npdeq.Tensor(to_xp(v), requires_grad=True) for v in (a0, b0))
    out = op(a, b)
    check_array(out, shape=(5,), dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), reference(a0, b0))
    ga, gb = npdeq.grad(out, [a, b], grad_outputs=to_xp(np.ones(5)))
    for g, argnum in ((ga, 0), (gb, 1)):
        vjp, _ = autograd.make_vjp(reference, argnum)(a0, b0)
        np.testing.assert_array_equal(g.numpy(), vjp(np.ones(5)))


def test_nan_to_num_replaces_and_stops_the_gradient(xp, to_xp, check_array):
    x0 = np.array([np.nan, np.inf, -np.inf, 1.5])
    x = npdeq.Tensor(to_xp(x0), requires_grad=True)
    out = npdeq.nan_to_num(x)
    np.testing.assert_array_equal(out.numpy(), np.nan_to_num(x0))
    out = npdeq.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0)
    np.testing.assert_array_equal(out.numpy(), [-1.0, 9.0, -9.0, 1.5])
    (g,) = npdeq.grad(out.sum(), [x])
    check_array(g, shape=(4,), dtype=xp.float64)
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 0.0, 1.0])
    assert np.isnan(x.numpy()[0])  # the input is untouched
    f32 = npdeq.nan_to_num(to_xp(np.array([np.inf], dtype=np.float32)))
    check_array(f32, dtype=xp.float32)
    assert f32.numpy()[0] == np.finfo(np.float32).max


def test_sinc_derivatives_at_zero_are_finite_and_exact(xp, to_xp):
    x = npdeq.Tensor(to_xp(np.array([0.0, 1e-3, -0.02, 0.7])), requires_grad=True)
    out = npdeq.sinc(x)
    np.testing.assert_allclose(out.numpy(), np.sinc(x.numpy()), rtol=1e-15)
    (g,) = npdeq.grad(out.sum(), [x], create_graph=True)
    t = np.pi * x.numpy()[1:]
    np.testing.assert_allclose(g.numpy(), [0.0, *((t * np.cos(t) - np.sin(t)) / (t * t)
                                                 * np.pi)], rtol=1e-9, atol=1e-15)
    (h,) = npdeq.grad(g.sum(), [x])
    assert h.numpy()[0] == pytest.approx(-np.pi ** 2 / 3, rel=1e-12)
    check_grads(npdeq.sinc, to_xp(np.array([0.0, 0.01, -0.031831])), order=2, rtol=1e-5)


def test_mod_follows_the_sign_of_the_divisor(xp, to_xp):
    a = to_xp(np.array([5.5, -5.5, 5.5, -5.5]))
    b = to_xp(np.array([2.0, 2.0, -2.0, -2.0]))
    np.testing.assert_array_equal(npdeq.mod(a, b).numpy(), [1.5, 0.5, -0.5, -1.5])


# --- bad arguments ------------------------------------------------------------------------

M = np.ones((2, 3))


@pytest.mark.parametrize("call, error, match", [
    (lambda: npdeq.tensordot(M, M, axes=1), ValueError, r"axis 1 of a has length 3, axis 0"),
    (lambda: npdeq.tensordot(M, M, axes=3), ValueError, r"axes=3 must be between 0"),
    (lambda: npdeq.tensordot(M, M, axes=([0], [0, 1])), ValueError, r"pairs 1 axes of a with 2"),
    (lambda: npdeq.tensordot(M, M, axes=1.5), TypeError, r"axes must be an int"),
    (lambda: npdeq.dot(M, M), ValueError, r"3 \(last dimension of a\) != 2"),
    (lambda: npdeq.cross(M[:, :1], M), ValueError, r"a must have 2 or 3 components"),
    (lambda: npdeq.diag(np.ones((2, 2, 2))), ValueError, r"v must be 1-d or 2-d, got shape"),
    (lambda: npdeq.diag(M, k=0.5), TypeError, r"k must be an int, got 0.5"),
    (lambda: npdeq.diff(M, n=-1), ValueError, r"n must be >= 0, got -1"),
    (lambda: npdeq.diff(M, axis=2), ValueError, r"axis=2 is out of range"),
    (lambda: npdeq.diff(M, prepend="x"), TypeError, r"prepend must be a number or an array"),
    (lambda: npdeq.moveaxis(M, [0, 1], [0]), ValueError, r"same number of elements"),
    (lambda: npdeq.moveaxis(M, [0, 0], [0, 1]), ValueError, r"repeated axis in source"),
    (lambda: npdeq.rot90(M, axes=(0, 0)), ValueError, r"two different axes"),
    (lambda: npdeq.rot90(M, axes=(0, 1, 2)), ValueError, r"must be two axes"),
    (lambda: npdeq.fliplr(np.ones(3)), ValueError, r"at least 2 dimensions, got shape \(3,\)"),
    (lambda: npdeq.array_split(M, 0), ValueError, r"must be >= 1 sections, got 0"),
    (lambda: npdeq.vsplit(np.ones(4), 2), ValueError, r"at least 2 dimensions"),
    (lambda: npdeq.fabs(np.ones(2, dtype=complex)), TypeError, r"x must be real"),
    (lambda: npdeq.nan_to_num(M, copy=False), ValueError, r"copy=False is not supported"),
    (lambda: npdeq.nan_to_num(M, nan="0"), TypeError, r"nan must be a real Python number"),
    (lambda: npdeq.concatenate(M), TypeError, r"must be a sequence of arrays"),
    (lambda: npdeq.atleast_1d(), TypeError, r"needs at least one array"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_counts_and_axes_accept_numpy_integers_but_not_bools():
    # Counts as everywhere else (backend.checks): what operator.index accepts, bools excepted.
    v = np.arange(1.0, 4.0)
    np.testing.assert_array_equal(npdeq.diag(v, k=np.int64(1)).numpy(), np.diag(v, k=1))
    np.testing.assert_array_equal(npdeq.tile(v, np.int32(2)).numpy(), np.tile(v, 2))
    np.testing.assert_array_equal(npdeq.diff(v, n=np.array(2)).numpy(), np.diff(v, n=2))
    with pytest.raises(TypeError, match=r"rot90: k must be an int, got True"):
        npdeq.rot90(M, k=True)
    m = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(npdeq.repeat(m, 2, axis=np.int64(1)).numpy(),
                                  np.repeat(m, 2, axis=1))
    with pytest.raises(TypeError, match=r"repeat: axis must be an int, got 1.0"):
        npdeq.repeat(m, 2, axis=1.0)
    assert float(npdeq.trace(m, offset=np.int64(1)).numpy()) == np.trace(m, offset=1)
    with pytest.raises(TypeError, match=r"trace: offset must be an int, got 1.0"):
        npdeq.trace(m, offset=1.0)  # named as the caller's op, not diagonal


def test_a_zero_dimensional_integer_seed_draws_the_int_seed_stream():
    from npdeq.backend.random import make_generator

    np.testing.assert_array_equal(make_generator(np.array(3)).random(4),
                                  make_generator(3).random(4))
    with pytest.raises(TypeError, match="seed must be None, an int or a numpy.random.Generator"):
        make_generator(3.0)


def test_sinc_series_matches_numpy_at_the_switch():
    # Both sides of |pi x| = 0.1, where the series hands over to sin(t)/t.
    x = np.array([0.1 / math.pi * (1 - 1e-12), 0.1 / math.pi * (1 + 1e-12), 0.1 / math.pi])
    np.testing.assert_allclose(npdeq.sinc(x).numpy(), np.sinc(x), rtol=2e-16)


def test_tensor_methods_and_the_mod_operator(xp, to_xp, check_array):
    a0 = np.array([[5.5, -5.5], [1.25, 3.0]])
    t = npdeq.Tensor(to_xp(a0), requires_grad=True)
    for got, expected in [
        (t % 2.0, np.mod(a0, 2.0)), (7.0 % t, np.mod(7.0, a0)), (t % t.T, np.mod(a0, a0.T)),
        (t.dot(t), a0 @ a0), (t.ravel(), a0.ravel()), (t.inner(t), np.inner(a0, a0)),
        (t.kron(t), np.kron(a0, a0)), (t.moveaxis(0, 1), a0.T), (t.fliplr(), a0[:, ::-1]),
        (t.flipud(), a0[::-1]), (t.rot90(), np.rot90(a0)), (t.diff(), np.diff(a0)),
        (t.diag(), np.diag(a0)), (t.nan_to_num(), a0), (t.sinc(), np.sinc(a0)),
        (t.fmax(2.0), np.fmax(a0, 2.0)), (t.fmin(2.0), np.fmin(a0, 2.0)),
        (t.remainder(2.0), np.mod(a0, 2.0)), (t.logaddexp2(t), np.logaddexp2(a0, a0)),
    ]:
        assert got.requires_grad
        check_array(got, shape=expected.shape, dtype=xp.float64)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-13)
    (g,) = npdeq.grad((7.0 % t).sum(), [t])
    np.testing.assert_array_equal(g.numpy(), -np.floor(7.0 / a0))
