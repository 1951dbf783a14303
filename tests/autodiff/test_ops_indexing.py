"""getitem and its adjoint index_add_zeros: basic slicing and integer-array indexing (repeated
indices add up in the VJP) against NumPy, HIPS autograd and finite differences, including
the second order through the scatter-add rule; Tensor indexing forms. NumPy's take,
take_along_axis and sort (argsort) the same way, their gradients adding at the indices."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq

from op_harness import SHAPES, Example, OpCase, arrays, check_op, grid, unary

NON_EMPTY = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def _slice(size):
    # Bounds the array API standard specifies (array_api_strict refuses the others).
    start = st.one_of(st.none(), st.integers(-size, size - 1))
    stop = st.one_of(st.none(), st.integers(-size, size))
    step = st.sampled_from([None, 1, 2, 3, -1, -2])
    return st.builds(slice, start, stop, step)


@st.composite
def basic_keys(draw, shape):
    """Ints, slices, ``None`` and at most one Ellipsis, possibly leaving out trailing axes."""
    per_axis = [draw(st.one_of(st.integers(-s, s - 1), _slice(s))) for s in shape]
    if per_axis and draw(st.booleans()):  # an Ellipsis standing for a run of axes
        i = draw(st.integers(0, len(per_axis)))
        j = draw(st.integers(i, len(per_axis)))
        per_axis[i:j] = [Ellipsis]
    elif per_axis and draw(st.booleans()):  # leave out trailing axes
        per_axis = per_axis[:draw(st.integers(0, len(per_axis)))]
    for _ in range(draw(st.integers(0, 2))):
        per_axis.insert(draw(st.integers(0, len(per_axis))), None)
    return tuple(per_axis)


@st.composite
def integer_array_keys(draw, shape):
    """One integer array (or int) per axis, arrays broadcasting together, with repeats."""
    index_shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))
    axes_with_array = draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))
    key = []
    for axis, size in enumerate(shape):
        if axis in axes_with_array:
            # A trailing part of the index shape, some sides 1: arrays broadcast together.
            sub = index_shape[draw(st.integers(0, len(index_shape) - 1)):]
            sub = tuple(1 if draw(st.booleans()) else n for n in sub)
            key.append(draw(hnp.arrays(np.int64, sub, elements=st.integers(-size, size - 1))))
        else:
            key.append(draw(st.integers(-size, size - 1)))
    return tuple(key)


def _getitem_examples(keys, shapes=SHAPES):
    return shapes.flatmap(lambda shape: st.builds(
        lambda a, key: Example((a,), {"key": key}), arrays(shape), keys(shape)))


@st.composite
def _scatter_examples(draw):
    shape = draw(NON_EMPTY)
    key = draw(integer_array_keys(shape))
    selected = np.zeros(shape)[key].shape
    return Example((draw(arrays(selected)),), {"shape": shape, "key": key})


def _index_add_zeros_reference(v, shape, key):
    out = np.zeros(shape)
    np.add.at(out, key, v)
    return out


CASES = [
    OpCase("getitem_basic", _getitem_examples(basic_keys), npdeq.getitem,
           lambda a, key: a[key]),
    OpCase("getitem_integer_arrays", _getitem_examples(integer_array_keys, NON_EMPTY),
           npdeq.getitem, lambda a, key: a[key]),
    # Nonlinear after indexing: the second order runs through index_add_zeros' own rule.
    OpCase("getitem_squared", _getitem_examples(integer_array_keys, NON_EMPTY),
           lambda a, key: npdeq.getitem(a, key) ** 2, lambda a, key: a[key] ** 2, order=2),
    OpCase("getitem_operator", _getitem_examples(basic_keys), lambda a, key: a[key],
           lambda a, key: a[key], arrays=False),
    OpCase("index_add_zeros", _scatter_examples(), npdeq.index_add_zeros,
           _index_add_zeros_reference, autograd=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def test_repeated_indices_add_up_in_the_gradient(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.arange(5.0)), requires_grad=True)
    idx = to_xp(np.array([0, 3, 0, 0, -1, 3]))
    out = a[idx]
    check_array(out, shape=(6,), dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), [0.0, 3.0, 0.0, 0.0, 4.0, 3.0])
    (g,) = npdeq.grad(out, [a], grad_outputs=to_xp(np.array([1.0, 10.0, 100.0, 1e3, 1e4, 1e5])))
    check_array(g, shape=(5,), dtype=xp.float64)
    np.testing.assert_array_equal(g.numpy(), [1101.0, 0.0, 0.0, 100010.0, 1e4])


def test_list_and_tensor_keys(xp, to_xp, check_array):
    a0 = np.arange(12.0).reshape(3, 4)
    a = npdeq.Tensor(to_xp(a0), requires_grad=True)
    rows = npdeq.Tensor(to_xp(np.array([2, 2, 0])))
    for out, expected in [(a[[2, 2, 0], [1, 1, 3]], a0[[2, 2, 0], [1, 1, 3]]),
                          (a[rows, 1], a0[[2, 2, 0], 1])]:
        check_array(out, shape=expected.shape, dtype=xp.float64)
        np.testing.assert_array_equal(out.numpy(), expected)
    (g,) = npdeq.grad(a[[2, 2, 0], [1, 1, 3]].sum(), [a])
    expected = np.zeros((3, 4))
    expected[2, 1], expected[0, 3] = 2.0, 1.0
    np.testing.assert_array_equal(g.numpy(), expected)


def test_partial_keys_index_leading_axes(xp, to_xp, check_array):
    a0 = np.arange(24.0).reshape(2, 3, 4)
    a = npdeq.Tensor(to_xp(a0), requires_grad=True)
    for key in [0, -1, (1, 2), slice(None, 1), (None, 0), (slice(None), None, 1)]:
        out = a[key]
        check_array(out, shape=a0[key].shape, dtype=xp.float64)
        np.testing.assert_array_equal(out.numpy(), a0[key])
        (g,) = npdeq.grad(out.sum(), [a])
        expected = np.zeros_like(a0)
        expected[key] = 1.0
        np.testing.assert_array_equal(g.numpy(), expected)


def test_iterating_a_tensor_yields_differentiable_rows(xp, to_xp):
    a = npdeq.Tensor(to_xp(np.arange(6.0).reshape(3, 2)), requires_grad=True)
    rows = list(a)
    assert len(rows) == len(a) == 3
    total = rows[0] * 1.0 + rows[2] * 3.0
    (g,) = npdeq.grad(total.sum(), [a])
    np.testing.assert_array_equal(g.numpy(), [[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]])
    with pytest.raises(TypeError, match="0-d"):
        len(npdeq.Tensor(to_xp(np.array(1.0))))


def test_mixed_slices_and_arrays_on_numpy():
    # NumPy's full advanced indexing (arrays beside slices, arrays split by a slice); the
    # array API standard does not have it, so this runs on NumPy only.
    a0 = np.random.default_rng(0).standard_normal((3, 4, 5))
    i, j = np.array([[0, 0], [2, 1]]), np.array([4, 4])
    for key in [(slice(None), i), (i, slice(1, 3), j), (Ellipsis, j), (i, None)]:
        a = npdeq.Tensor(a0, requires_grad=True)
        out = a[key]
        np.testing.assert_array_equal(out.numpy(), a0[key])
        (g,) = npdeq.grad(out.sum(), [a])
        expected = np.zeros_like(a0)
        np.add.at(expected, key, 1.0)
        np.testing.assert_array_equal(g.numpy(), expected)


def test_out_of_range_index_is_an_error(xp, to_xp):
    a = npdeq.Tensor(to_xp(np.zeros((2, 3))), requires_grad=True)
    with pytest.raises(IndexError):
        a[2]


# --- take, take_along_axis, sort ---------------------------------------------------------


@st.composite
def _take_examples(draw):
    shape = draw(NON_EMPTY)
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    n = int(np.prod(shape)) if axis is None else shape[axis]
    index_shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    indices = draw(hnp.arrays(np.int64, index_shape, elements=st.integers(-n, n - 1)))
    return Example((draw(arrays(shape)),), {"indices": indices, "axis": axis})


def _take_reference(a, indices, axis):
    # autograd has no VJP for take; its indexing VJP adds at repeated indices.
    if axis is None:
        a, axis = anp.ravel(a), 0
    return a[(slice(None),) * (axis % a.ndim) + (indices,)]


@st.composite
def _take_along_examples(draw):
    shape = draw(NON_EMPTY)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    # The other axes of the indices are the array's or 1 (they broadcast).
    index_shape = tuple(draw(st.integers(1, 4)) if i == axis % len(shape)
                        else draw(st.sampled_from([1, s])) for i, s in enumerate(shape))
    n = shape[axis]
    indices = draw(hnp.arrays(np.int64, index_shape, elements=st.integers(-n, n - 1)))
    return Example((draw(arrays(shape)),), {"indices": indices, "axis": axis})


def _take_along_reference(a, indices, axis):
    axis %= a.ndim
    shape = np.broadcast_shapes(indices.shape, a.shape[:axis] + (1,) + a.shape[axis + 1:])
    key = list(np.ogrid[tuple(slice(n) for n in shape)])
    key[axis] = np.broadcast_to(indices, shape)
    return a[tuple(key)]


def _sort_reference(a, axis):
    # autograd sorts 1-d arrays only: gather by the sorting permutation instead.
    if axis is None:
        a, axis = anp.ravel(a), 0
    return _take_along_reference(a, anp.argsort(a, axis=axis), axis)


def _sort_axis(shape):
    n = len(shape)
    return st.fixed_dictionaries({"axis": st.one_of(st.none(), st.integers(-n, n - 1))
                                  if n else st.none()})


GATHER_CASES = [
    OpCase("take", _take_examples(), npdeq.take, _take_reference),
    # Squared: the second order runs through the index-add rule.
    OpCase("take_squared", _take_examples(), lambda a, **kw: npdeq.take(a, **kw) ** 2,
           lambda a, **kw: _take_reference(a, **kw) ** 2, order=2),
    OpCase("take_along_axis_squared", _take_along_examples(),
           lambda a, **kw: npdeq.take_along_axis(a, **kw) ** 2,
           lambda a, **kw: _take_along_reference(a, **kw) ** 2, order=2),
    OpCase("sort_squared", unary(grid(), kwargs=_sort_axis, unique=True),  # no near-ties
           lambda a, axis: npdeq.sort(a, axis=axis) ** 2,
           lambda a, axis: _sort_reference(a, axis) ** 2, order=2),
]


@pytest.mark.parametrize("case", GATHER_CASES, ids=str)
@settings(max_examples=8)
@given(data=st.data())
def test_gather(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def test_take_gradient_adds_at_repeated_indices(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.arange(6.0).reshape(2, 3)), requires_grad=True)
    out = npdeq.take(a, to_xp(np.array([2, 0, 2, -1])), axis=1)
    check_array(out, shape=(2, 4), dtype=xp.float64)
    (g,) = npdeq.grad(out.sum(), [a])
    np.testing.assert_array_equal(g.numpy(), [[1.0, 0.0, 3.0]] * 2)
    perm = npdeq.argsort(to_xp(np.array([[3.0, 1.0, 2.0]])), axis=1)
    check_array(perm, shape=(1, 3), dtype=xp.int64)
    assert not perm.requires_grad
    np.testing.assert_array_equal(perm.numpy(), [[1, 2, 0]])
    s = npdeq.take_along_axis(a[:1], perm, axis=1)
    (g,) = npdeq.grad((s * to_xp(np.array([[1.0, 10.0, 100.0]]))).sum(), [a])
    np.testing.assert_array_equal(g.numpy(), [[100.0, 1.0, 10.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("call, error, message", [
    (lambda a, xp: npdeq.take(a, [0, 3], axis=1), IndexError,
     "take: an index is out of bounds for an axis of length 3"),
    (lambda a, xp: npdeq.take(a, [0.5], axis=1), TypeError, "take: indices must be integers"),
    (lambda a, xp: npdeq.take(a, xp.asarray([0.0]), axis=1), TypeError,
     "take: indices must be an integer array"),
    (lambda a, xp: npdeq.take(a, [0], axis=2), ValueError, "take: axis=2 is out of range"),
    (lambda a, xp: npdeq.take(a, [0], axis=1.0), TypeError, "take: axis must be an int, got 1.0"),
    (lambda a, xp: npdeq.take_along_axis(a, xp.asarray([0]), axis=1), ValueError,
     r"take_along_axis: indices of shape \(1,\) need as many dimensions"),
    (lambda a, xp: npdeq.take_along_axis(a, xp.asarray([[-4]]), axis=1), IndexError,
     "take_along_axis: an index is out of bounds"),
    (lambda a, xp: npdeq.sort(a, axis=-3), ValueError, "sort: axis=-3 is out of range"),
])
def test_gather_errors(xp, to_xp, call, error, message):
    a = npdeq.Tensor(to_xp(np.zeros((2, 3))), requires_grad=True)
    with pytest.raises(error, match=message):
        call(a, xp)
