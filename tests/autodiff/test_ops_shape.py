"""Shape ops: forward against NumPy, VJP against HIPS autograd and finite differences for
transpose/permute/swapaxes, reshape, flatten, broadcast_to, expand_dims, squeeze, concat,
stack, split and pad, and (to second order) NumPy's flip, roll, tile, repeat, triu, tril and
diagonal; Tensor methods; argument errors."""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq

from op_harness import SHAPES, Example, OpCase, arrays, axis_arg, check_op, unary

NON_EMPTY = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def _axes(shape):
    return st.fixed_dictionaries({"axes": st.one_of(
        st.none(), st.permutations(range(len(shape))).map(tuple))})


def _swap(shape):
    n = len(shape)
    return st.fixed_dictionaries({"axis1": st.integers(-n, n - 1),
                                  "axis2": st.integers(-n, n - 1)})


def _factorizations(n: int, parts: int):
    if parts == 1:
        return [(n,)]
    return [(d, *rest) for d in range(1, n + 1) if n % d == 0
            for rest in _factorizations(n // d, parts - 1)]


def _new_shape(shape):
    size = math.prod(shape)
    options = [f for parts in (1, 2, 3) for f in _factorizations(size, parts)]
    # Sometimes let one dimension be inferred (-1).
    return st.sampled_from(options).flatmap(lambda f: st.one_of(
        st.just(f), st.integers(0, len(f) - 1).map(
            lambda i: f[:i] + (-1,) + f[i + 1:]))).map(lambda s: {"shape": s})


def _flatten_dims(shape):
    n = max(len(shape), 1)
    return st.tuples(st.integers(-n, n - 1), st.integers(-n, n - 1)).filter(
        lambda t: t[0] % n <= t[1] % n).map(lambda t: {"start_dim": t[0], "end_dim": t[1]})


def _flatten_reference(a, start_dim, end_dim):
    if a.ndim == 0:
        return anp.reshape(a, (1,))
    start, end = start_dim % a.ndim, end_dim % a.ndim
    return anp.reshape(a, a.shape[:start] + (-1,) + a.shape[end + 1:])


@st.composite
def _broadcast_examples(draw):
    target = draw(SHAPES)
    # Drop some leading axes and set some of the others to 1.
    kept = target[draw(st.integers(0, len(target))):]
    shape = tuple(1 if draw(st.booleans()) else s for s in kept)
    return Example((draw(arrays(shape)),), {"shape": target})


def _expand_axis(shape):
    n = len(shape)
    return st.fixed_dictionaries({"axis": st.integers(-n - 1, n)})


def _squeeze_axis(shape):
    ones = [i for i, s in enumerate(shape) if s == 1]
    chosen = st.lists(st.sampled_from(ones), unique=True).map(tuple) if ones else st.just(())
    negate = st.booleans()
    return st.one_of(st.just({}), st.tuples(chosen, negate).map(lambda t: {"axis": tuple(
        a - len(shape) if t[1] else a for a in t[0])}))


@st.composite
def _concat_examples(draw):
    ndim = draw(st.integers(1, 3))
    base = list(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        base[axis] = draw(st.integers(1, 3))
        parts.append(draw(arrays(tuple(base))))
    return Example(tuple(parts), {"axis": axis})


@st.composite
def _stack_examples(draw):
    shape = draw(SHAPES)
    n = draw(st.integers(1, 3))
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    return Example(tuple(draw(arrays(shape)) for _ in range(n)), {"axis": axis})


@st.composite
def _split_examples(draw):
    shape = draw(NON_EMPTY)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    length = shape[axis]
    sections = draw(st.one_of(
        st.sampled_from([d for d in range(1, length + 1) if length % d == 0]),
        st.lists(st.integers(0, length), max_size=3).map(sorted)))
    return Example((draw(arrays(shape)),), {"sections": sections, "axis": axis})


def _weighted(parts, concat, axis):
    # Each part scaled differently, so a VJP that sends a cotangent to the wrong part fails.
    return concat([p * float(i + 1) for i, p in enumerate(parts)], axis=axis)


def _split(a, sections, axis):
    return _weighted(npdeq.split(a, sections, axis=axis), npdeq.concat, axis)


def _split_reference(a, sections, axis):
    return _weighted(anp.split(a, sections, axis=axis), anp.concatenate, axis)


@st.composite
def _pad_examples(draw):
    shape = draw(NON_EMPTY)
    widths = st.tuples(st.integers(0, 2), st.integers(0, 2))
    forms = [st.integers(0, 2), st.lists(widths, min_size=len(shape),
                                         max_size=len(shape)).map(tuple)]
    if len(shape) != 2:  # one (before, after) pair for every axis; ambiguous in 2-d
        forms.append(widths)
    return Example((draw(arrays(shape)),), {
        "pad_width": draw(st.one_of(*forms)),
        "value": draw(st.sampled_from([0.0, 1.5, -2.0]))})


CASES = [
    OpCase("transpose", unary(kwargs=_axes), npdeq.transpose, anp.transpose),
    OpCase("permute", unary(shapes=NON_EMPTY, kwargs=_axes).filter(
        lambda e: e.kwargs["axes"] is not None), npdeq.permute, anp.transpose),
    OpCase("swapaxes", unary(shapes=NON_EMPTY, kwargs=_swap), npdeq.swapaxes, anp.swapaxes),
    OpCase("T", unary(), lambda a: a.T, anp.transpose, arrays=False),
    OpCase("reshape", unary(kwargs=_new_shape), npdeq.reshape, anp.reshape),
    OpCase("flatten", unary(kwargs=_flatten_dims), npdeq.flatten, _flatten_reference),
    OpCase("broadcast_to", _broadcast_examples(), npdeq.broadcast_to,
           # autograd's broadcast_to rejects new leading axes; multiplying by ones broadcasts.
           lambda a, shape: a * np.ones(shape)),
    OpCase("expand_dims", unary(kwargs=_expand_axis), npdeq.expand_dims, anp.expand_dims),
    OpCase("squeeze", unary(shapes=hnp.array_shapes(min_dims=0, max_dims=4, max_side=2),
                            kwargs=_squeeze_axis), npdeq.squeeze, anp.squeeze),
    OpCase("concat", _concat_examples(), lambda *parts, axis: npdeq.concat(parts, axis=axis),
           lambda *parts, axis: anp.concatenate(parts, axis=axis)),
    OpCase("stack", _stack_examples(), lambda *parts, axis: npdeq.stack(parts, axis=axis),
           lambda *parts, axis: anp.stack(parts, axis=axis)),
    OpCase("split", _split_examples(), _split, _split_reference),
    OpCase("pad", _pad_examples(), npdeq.pad,
           lambda a, pad_width, value: anp.pad(a, pad_width, mode="constant",
                                               constant_values=value)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@given(data=st.data())
def test_op(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


@given(example=_split_examples())
def test_split_parts_match_numpy(xp, to_xp, check_array, example):
    (a,), kw = example.arrays, example.kwargs
    parts = npdeq.split(to_xp(a), kw["sections"], axis=kw["axis"])
    expected = np.split(a, kw["sections"], axis=kw["axis"])
    assert len(parts) == len(expected)
    for part, ref in zip(parts, expected):
        assert isinstance(part, npdeq.Tensor)
        check_array(part, shape=ref.shape, dtype=xp.float64)
        np.testing.assert_array_equal(part.numpy(), ref)


def test_tensor_shape_methods(xp, to_xp, check_array):
    a0 = np.arange(24.0).reshape(2, 3, 4)
    a = npdeq.Tensor(to_xp(a0), requires_grad=True)
    results = {
        "reshape(*shape)": (a.reshape(4, 6), a0.reshape(4, 6)),
        "reshape(shape)": (a.reshape((6, -1)), a0.reshape(6, -1)),
        "view": (a.view(24), a0.reshape(24)),
        "permute(*axes)": (a.permute(2, 0, 1), a0.transpose(2, 0, 1)),
        "permute(axes)": (a.permute((1, 2, 0)), a0.transpose(1, 2, 0)),
        "transpose()": (a.transpose(), a0.transpose()),
        "T": (a.T, a0.T),
        "mT": (a.mT, np.swapaxes(a0, -1, -2)),
        "swapaxes": (a.swapaxes(0, 2), np.swapaxes(a0, 0, 2)),
        "unsqueeze": (a.unsqueeze(1), a0[:, None]),
        "expand_dims": (a.expand_dims(-1), a0[..., None]),
        "squeeze": (a[:1].squeeze(0), a0[0]),
        "expand": (a[:, :1].expand((5, 2, 3, 4)), np.broadcast_to(a0[:, :1], (5, 2, 3, 4))),
        "broadcast_to": (a[:, :1].broadcast_to((2, 3, 4)), np.broadcast_to(a0[:, :1],
                                                                           (2, 3, 4))),
        "flatten": (a.flatten(1), a0.reshape(2, 12)),
    }
    total = None
    for name, (out, expected) in results.items():
        check_array(out, shape=expected.shape, dtype=xp.float64)
        np.testing.assert_array_equal(out.numpy(), expected, err_msg=name)
        assert out.requires_grad, name
        total = out.sum() if total is None else total + out.sum()
    (g,) = npdeq.grad(total, [a])
    # Every element appears once per view except in the three sliced/broadcast views.
    expected = np.full(a0.shape, len(results) - 3.0)
    expected[:1] += 1.0                      # squeeze of a[:1]
    expected[:, :1] += 5 * 3 + 3.0          # expand and broadcast_to of a[:, :1]
    np.testing.assert_array_equal(g.numpy(), expected)


def test_reshape_to_a_wrong_size_is_an_error(xp, to_xp):
    with pytest.raises((ValueError, TypeError)):
        npdeq.reshape(to_xp(np.zeros((2, 3))), (4, 2))


@pytest.mark.parametrize("sections", [0, 4, -1])
def test_split_into_unequal_sections_is_an_error(xp, to_xp, sections):
    with pytest.raises(ValueError, match=f"cannot split an axis of length 6 into {sections}"):
        npdeq.split(to_xp(np.zeros((2, 6))), sections, axis=1)


def test_pad_width_errors(xp, to_xp):
    a = to_xp(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ambiguous"):
        npdeq.pad(a, (1, 2))
    with pytest.raises(ValueError, match="3 entries for 2 dimensions"):
        npdeq.pad(a, [(1, 1)] * 3)


def test_concat_and_stack_of_mixed_tensors_and_arrays(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.ones((2, 2))), requires_grad=True)
    c = to_xp(np.zeros((1, 2)))
    out = npdeq.concat([a, c], axis=0)
    check_array(out, shape=(3, 2), dtype=xp.float64)
    (g,) = npdeq.grad((out * out).sum(), [a])
    np.testing.assert_array_equal(g.numpy(), 2 * np.ones((2, 2)))
    out = npdeq.stack([to_xp(np.zeros(2)), a[1], a[0]], axis=1)
    check_array(out, shape=(2, 3), dtype=xp.float64)
    (g,) = npdeq.grad(out[:, 1].sum(), [a])
    np.testing.assert_array_equal(g.numpy(), [[0.0, 0.0], [1.0, 1.0]])


# --- NumPy's rearrangements: flip, roll, tile, repeat, triu, tril, diagonal ----------------

MATRICES = hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4)


def _flip_axis(shape):
    return st.fixed_dictionaries({"axis": axis_arg(len(shape))})


def _flip_reference(a, axis):
    axes = range(a.ndim) if axis is None else [x % a.ndim for x in (
        (axis,) if isinstance(axis, int) else axis)]
    return a[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(a.ndim))]


def _roll_args(shape):
    n = len(shape)
    single = st.fixed_dictionaries({"shift": st.integers(-5, 5), "axis": st.one_of(
        st.none(), st.integers(-n, n - 1))})
    pair = st.tuples(st.integers(-n, n - 1), st.integers(-n, n - 1), st.integers(-3, 3),
                     st.integers(-3, 3)).map(lambda t: {"shift": t[2:], "axis": t[:2]})
    return st.one_of(single, pair)


def _roll_reference(a, shift, axis):
    if isinstance(shift, int):
        return anp.roll(a, shift, axis)
    for s, ax in zip(shift, axis):  # autograd's roll takes one axis at a time
        a = anp.roll(a, s, ax)
    return a


def _tile_reps(shape):
    return st.fixed_dictionaries({"reps": st.one_of(
        st.integers(1, 3), st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple))})


def _tile_reference(a, reps):
    # Copies concatenated axis by axis (autograd's tile has a broken VJP).
    reps = (reps,) if isinstance(reps, int) else reps
    n = max(a.ndim, len(reps))
    a = anp.reshape(a, (1,) * (n - a.ndim) + a.shape)
    for axis, r in enumerate((1,) * (n - len(reps)) + tuple(reps)):
        a = anp.concatenate([a] * r, axis=axis)
    return a


def _repeat_args(shape):
    n = len(shape)
    counts = st.integers(0, 3)
    if not n:
        return st.fixed_dictionaries({"repeats": counts, "axis": st.none()})
    return st.one_of(
        st.fixed_dictionaries({"repeats": counts, "axis": st.one_of(
            st.none(), st.integers(-n, n - 1))}),
        st.integers(-n, n - 1).flatmap(lambda ax: st.fixed_dictionaries({
            "repeats": st.lists(counts, min_size=shape[ax], max_size=shape[ax]).map(tuple),
            "axis": st.just(ax)})))


def _repeat_reference(a, repeats, axis):
    if axis is None:
        a, axis = anp.ravel(a), 0
    index = np.repeat(np.arange(a.shape[axis]), repeats)
    return a[(slice(None),) * (axis % a.ndim) + (index,)]


def _k(shape):
    return st.fixed_dictionaries({"k": st.integers(-3, 3)})


def _diagonal_args(shape):
    n = len(shape)
    axes = st.tuples(st.integers(-n, n - 1), st.integers(-n, n - 1)).filter(
        lambda t: t[0] % n != t[1] % n)
    return st.tuples(st.integers(-4, 4), axes).map(
        lambda t: {"offset": t[0], "axis1": t[1][0], "axis2": t[1][1]})


def diagonal_reference(a, offset, axis1, axis2):
    """``numpy.diagonal`` by fancy indexing (autograd's ``diagonal`` has only offset 0)."""
    ax1, ax2 = axis1 % a.ndim, axis2 % a.ndim
    rest = [i for i in range(a.ndim) if i not in (ax1, ax2)]
    moved = anp.transpose(a, rest + [ax1, ax2])
    n, m = a.shape[ax1], a.shape[ax2]
    rows = np.arange(max(0, -offset), max(0, min(n, m - offset)))
    return moved[..., rows, rows + offset]


ARRAY_CASES = [
    OpCase("flip", unary(kwargs=_flip_axis), npdeq.flip, _flip_reference, order=2),
    OpCase("roll", unary(shapes=NON_EMPTY, kwargs=_roll_args), npdeq.roll, _roll_reference,
           order=2),
    OpCase("tile", unary(kwargs=_tile_reps), npdeq.tile, _tile_reference, order=2),
    OpCase("repeat", unary(kwargs=_repeat_args), npdeq.repeat, _repeat_reference, order=2),
    OpCase("triu", unary(shapes=MATRICES, kwargs=_k), npdeq.triu, anp.triu, order=2),
    OpCase("tril", unary(shapes=MATRICES, kwargs=_k), npdeq.tril, anp.tril, order=2),
    OpCase("diagonal", unary(shapes=MATRICES, kwargs=_diagonal_args), npdeq.diagonal,
           diagonal_reference, order=2),
]


@pytest.mark.parametrize("case", ARRAY_CASES, ids=str)
@settings(max_examples=8)
@given(data=st.data())
def test_array_function(xp, to_xp, check_array, case, data):
    check_op(case, data.draw(case.examples, label="example"), xp, to_xp, check_array)


def test_flip_and_diagonal_methods(xp, to_xp, check_array):
    a0 = np.arange(24.0).reshape(2, 3, 4)
    a = npdeq.Tensor(to_xp(a0), requires_grad=True)
    for out, expected in [(a.flip(0), np.flip(a0, 0)), (a.flip((1, 2)), np.flip(a0, (1, 2))),
                          (a.diagonal(), np.diagonal(a0)),
                          (a.diagonal(1, 1, 2), np.diagonal(a0, 1, 1, 2))]:
        check_array(out, shape=expected.shape, dtype=xp.float64)
        np.testing.assert_array_equal(out.numpy(), expected)
        assert out.requires_grad


@pytest.mark.parametrize("call, message", [
    (lambda a: npdeq.flip(a, 3), "flip: axis=3 is out of range"),
    (lambda a: npdeq.tile(a, 1.5), "tile: reps must be an int, got 1.5"),
    (lambda a: npdeq.tile(a, (2, -1)), "tile: reps must be >= 0, got -1"),
    (lambda a: npdeq.repeat(a, -1), "repeat: repeats must be >= 0, got -1"),
    (lambda a: npdeq.repeat(a, [1, 2], axis=1), "repeat: 2 counts in repeats for an axis of "
                                                "length 3"),
    (lambda a: npdeq.repeat(a, 2, axis=2), "repeat: axis=2 is out of range"),
    (lambda a: npdeq.triu(a[0]), r"triu: needs an array of at least 2 dimensions, got shape "
                                 r"\(3,\)"),
    (lambda a: npdeq.diagonal(a, axis1=1, axis2=-1), "diagonal: axis1=1 and axis2=-1 are the "
                                                     "same axis"),
    (lambda a: npdeq.diagonal(a, axis2=2), "diagonal: axis2=2 is out of range"),
])
def test_array_function_errors(xp, to_xp, call, message):
    a = npdeq.Tensor(to_xp(np.zeros((2, 3))))
    with pytest.raises((ValueError, TypeError), match=message):
        call(a)
