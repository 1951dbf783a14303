"""avg_pool1d, max_pool1d, max_pool2d and embedding: explicit-loop NumPy references, VJPs
against finite differences (order 2 through embedding's pair of primitives), max pooling's one
winner per window, the embedding gradient's scatter-add, and argument checking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import npdeq
from npdeq.testing import check_grads


def max_pool2d_reference(x, kernel, stride, padding, dilation):
    """Direct loop over output positions, padded with -inf (PyTorch semantics)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    ho = (xpad.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xpad.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xpad[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                         j * sw:j * sw + dw * (kw - 1) + 1:dw]
            out[:, :, i, j] = patch.max(axis=(2, 3))
    return out


def avg_pool1d_reference(x, k, s, p):
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p)))
    lo = (xpad.shape[2] - k) // s + 1
    return np.stack([xpad[:, :, i * s:i * s + k].mean(axis=2) for i in range(lo)], axis=2)


def distinct(rng, shape):
    """Values at least 0.1 apart, so no window has a tie within a finite-difference step."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0


sizes = st.integers(1, 3)


@given(size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       kernel=st.tuples(sizes, sizes), stride=st.none() | st.tuples(sizes, sizes),
       padding=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), seed=st.integers(0, 2 ** 16))
def test_max_pool2d_matches_loop_and_finite_differences(xp, to_xp, check_array, size, kernel,
                                                        stride, padding, dilation, seed):
    padding = tuple(min(p, k // 2) for p, k in zip(padding, kernel))
    assume(all(n + 2 * p >= d * (k - 1) + 1
               for n, p, k, d in zip(size, padding, kernel, dilation)))
    x = distinct(np.random.default_rng(seed), (2, 2) + size)
    expected = max_pool2d_reference(x, kernel, kernel if stride is None else stride, padding,
                                    dilation)
    assume(np.isfinite(expected).all())  # a dilated window can fall wholly in the padding
    out = npdeq.max_pool2d(to_xp(x), kernel, stride, padding, dilation)
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), expected)
    # Order 1: max pooling is piecewise linear (its second derivative is zero), and the
    # window primitives' order-2 rules are checked in test_ops_conv.py.
    check_grads(lambda a: npdeq.max_pool2d(a, kernel, stride, padding, dilation), to_xp(x),
                order=1, seed=seed)


@given(n=st.integers(1, 7), k=sizes, s=st.none() | sizes, p=st.integers(0, 1),
       d=st.integers(1, 2), seed=st.integers(0, 2 ** 16))
def test_1d_pools_match_references_and_finite_differences(xp, to_xp, check_array, n, k, s, p,
                                                          d, seed):
    p = min(p, k // 2)
    assume(n + 2 * p >= d * (k - 1) + 1)
    x = distinct(np.random.default_rng(seed), (1, 2, n))
    stride = k if s is None else s
    expected = max_pool2d_reference(x[:, :, None], (1, k), (1, stride), (0, p), (1, d))[:, :, 0]
    assume(np.isfinite(expected).all())  # a dilated window can fall wholly in the padding
    out = npdeq.max_pool1d(to_xp(x), k, s, p, d)
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), expected)
    check_grads(lambda a: npdeq.max_pool1d(a, k, s, p, d), to_xp(x), order=1, seed=seed)
    expected = avg_pool1d_reference(x, k, stride, p)
    out = npdeq.avg_pool1d(to_xp(x), (k,), None if s is None else (s,), (p,))
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    check_grads(lambda a: npdeq.avg_pool1d(a, k, s, p), to_xp(x), order=1, seed=seed)


def test_max_pool_gradient_goes_to_one_winner_on_ties(xp, to_xp, check_array):
    # Overlapping windows of a constant input: each output's gradient goes to the first
    # position of its window only (PyTorch's), never shared among the tied entries.
    x = npdeq.Tensor(to_xp(np.ones((1, 1, 3, 3))), requires_grad=True)
    npdeq.max_pool2d(x, 2, stride=1).sum().backward()
    check_array(x.grad, shape=(1, 1, 3, 3), dtype=xp.float64)
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    y = npdeq.Tensor(to_xp(np.array([[[2.0, 2.0, 1.0, 2.0]]])), requires_grad=True)
    npdeq.max_pool1d(y, 2).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [[[1.0, 0.0, 0.0, 1.0]]])


def test_max_pool_padding_never_wins_and_nan_propagates(xp, to_xp):
    x = to_xp(np.array([[[-5.0, -7.0, np.nan, 1.0]]]))
    out = npdeq.max_pool1d(x, 2, stride=1, padding=1).numpy()
    np.testing.assert_array_equal(out, [[[-5.0, -5.0, np.nan, np.nan, 1.0]]])


@pytest.mark.parametrize("op, shape, args, kwargs, match", [
    (npdeq.max_pool2d, (1, 1, 4, 4), (2,), {"padding": 2}, "at most half the kernel"),
    (npdeq.max_pool2d, (1, 1, 4, 4), (5,), {}, r"does not fit the input of shape \(1, 1, 4, 4"),
    (npdeq.max_pool2d, (1, 4, 4), (2,), {}, r"input must have shape \(B, C, H, W\)"),
    (npdeq.max_pool2d, (1, 1, 4, 4), (2,), {"ceil_mode": True}, "ceil_mode=True"),
    (npdeq.max_pool2d, (1, 1, 4, 4), (2,), {"return_indices": True}, "return_indices=True"),
    (npdeq.max_pool1d, (1, 1, 4), (0,), {}, "kernel_size must be >= 1"),
    (npdeq.max_pool1d, (1, 1, 4), (3,), {"dilation": 2}, r"does not fit the input of shape "
                                                         r"\(1, 1, 4\)"),
    (npdeq.max_pool1d, (1, 4), (2,), {}, r"input must have shape \(B, C, L\)"),
    (npdeq.avg_pool1d, (1, 1, 4), ((2, 2),), {}, "int or a 1-tuple"),
    (npdeq.avg_pool1d, (1, 1, 4), (2,), {"padding": 2}, "padding 2 must be at most half"),
])
def test_pools_reject_bad_arguments(xp, to_xp, op, shape, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        op(to_xp(np.zeros(shape)), *args, **kwargs)


# --- embedding ---------------------------------------------------------------------------


@given(rows=st.integers(1, 5), dim=st.integers(1, 3),
       shape=st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple),
       padding=st.none() | st.integers(-1, 0), seed=st.integers(0, 2 ** 16))
def test_embedding_picks_rows_and_scatter_adds_gradients(xp, to_xp, check_array, rows, dim,
                                                         shape, padding, seed):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((rows, dim))
    index = rng.integers(0, rows, size=shape)
    weight = npdeq.Tensor(to_xp(table), requires_grad=True)
    out = npdeq.embedding(to_xp(index), weight, padding_idx=padding)
    check_array(out, shape=shape + (dim,), dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), table[index])
    u = rng.standard_normal(shape + (dim,))
    (out * npdeq.Tensor(to_xp(u))).sum().backward()
    expected = np.zeros_like(table)
    np.add.at(expected, index.reshape(-1), u.reshape(-1, dim))
    if padding is not None:
        expected[padding % rows] = 0.0
    check_array(weight.grad, shape=table.shape, dtype=xp.float64)
    np.testing.assert_allclose(weight.grad.numpy(), expected, rtol=1e-12, atol=1e-12)
    # The padding row's gradient is zero by design, so finite differences run without it.
    check_grads(lambda w: npdeq.embedding(to_xp(index), w) ** 2, to_xp(table), order=1,
                seed=seed)


def test_embedding_second_order_through_the_scatter_add(xp, to_xp):
    # The gradient of the gradient runs the scatter-add's own rule (a gather).
    table = np.random.default_rng(0).standard_normal((3, 2))
    index = to_xp(np.array([[0, 2], [2, 2]]))
    check_grads(lambda w: npdeq.embedding(index, w) ** 3, to_xp(table), order=2, seed=0)


def test_embedding_rejects_bad_inputs(xp, to_xp):
    table = to_xp(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"index 4 is out of range for 4 embeddings"):
        npdeq.embedding(to_xp(np.array([0, 4])), table)
    with pytest.raises(ValueError, match=r"index -1 is out of range"):
        npdeq.embedding(to_xp(np.array([[-1]])), table)
    with pytest.raises(TypeError, match="input must be an array of integers"):
        npdeq.embedding(to_xp(np.array([0.0])), table)
    with pytest.raises(ValueError, match=r"padding_idx must be in \[-4, 4\).*got 4"):
        npdeq.embedding(to_xp(np.array([0])), table, padding_idx=4)
    with pytest.raises(ValueError, match="weight must have shape"):
        npdeq.embedding(to_xp(np.array([0])), to_xp(np.zeros(4)))
