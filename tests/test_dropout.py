"""Variational dropout: one mask per step (reused by every solver iteration, new after
reset_dropout/reset_deq), mask shapes of every class and layout, masks on the input's
namespace and device, scaling by 1/(1-p), identity in eval mode and at p=0, seeding, a new
mask when the batch changes, gradients, and bad input."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq import backend
from npdeq.core import get_deq, reset_deq
from npdeq.dropout import (VariationalDropout, VariationalDropout1d, VariationalDropout2d,
                           VariationalDropout3d, VariationalDropToken1d, VariationalDropToken2d,
                           VariationalDropToken3d, reset_dropout)
from npdeq.nn import Linear, Sequential
from npdeq.testing import check_grads

# class -> (input shape, mask shape channels first, mask shape with token_first=True)
SHAPES = {
    VariationalDropout1d: ((2, 3, 5), (2, 3, 1), (2, 1, 5)),
    VariationalDropout2d: ((2, 3, 4, 5), (2, 3, 1, 1), (2, 1, 1, 5)),
    VariationalDropout3d: ((2, 3, 2, 4, 5), (2, 3, 1, 1, 1), (2, 1, 1, 1, 5)),
    VariationalDropToken1d: ((2, 3, 5), (2, 1, 5), (2, 3, 1)),
    VariationalDropToken2d: ((2, 3, 4, 5), (2, 1, 4, 5), (2, 3, 4, 1)),
    VariationalDropToken3d: ((2, 3, 2, 4, 5), (2, 1, 2, 4, 5), (2, 3, 2, 4, 1)),
}


def as_np(x):
    return backend.to_numpy(x.data if isinstance(x, npdeq.Tensor) else x)


@pytest.mark.parametrize("token_first", [False, True])
@pytest.mark.parametrize("cls", list(SHAPES))
def test_mask_shapes_on_the_inputs_namespace(xp, to_xp, check_array, cls, token_first):
    shape, channels_first, tokens_first = SHAPES[cls]
    drop = cls(0.5, token_first=token_first, seed=0)
    x = to_xp(np.ones(shape))
    y = drop(x)
    check_array(y, shape, xp.float64)
    check_array(drop.mask, tokens_first if token_first else channels_first, xp.float64)
    # Entries sharing a mask entry are dropped together: y is the broadcast mask.
    np.testing.assert_array_equal(as_np(y), np.broadcast_to(as_np(drop.mask), shape))


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
def test_elementwise_mask_has_the_input_shape(shape):
    drop = VariationalDropout(0.3, seed=0)
    drop(np.ones(shape))
    assert drop.mask.shape == shape


@given(p=st.sampled_from([0.1, 0.25, 0.5, 0.8]), seed=st.integers(0, 2**16))
def test_scaling_keeps_the_mean(p, seed):
    drop = VariationalDropout(p, seed=seed)
    x = np.ones((400, 500))
    y = as_np(drop(x))
    assert set(np.unique(y).tolist()) <= {0.0, 1.0 / (1.0 - p)}
    # The mean of n independent entries has standard deviation sqrt(p / ((1 - p) n)).
    assert abs(y.mean() - 1.0) < 6 * np.sqrt(p / ((1 - p) * x.size))
    assert abs((y == 0).mean() - p) < 6 * np.sqrt(p * (1 - p) / x.size)


def test_one_mask_per_step_across_a_deq_solve(xp, xp_device, to_xp, check_array):
    drop = VariationalDropout1d(0.5, seed=0)
    cell = Linear(2, 2, seed=0, xp=xp, device=xp_device)  # acts on L of (B, C, L)
    model = Sequential(cell, drop)
    x = to_xp(np.random.default_rng(0).standard_normal((3, 4, 2)))
    masks = []

    def f(z):
        out = npdeq.tanh(0.5 * model(z) + x)
        masks.append(drop.mask)
        return out

    deq = get_deq(f_max_iter=20, f_tol=1e-10, grad=2)
    drawn = []
    for _ in range(2):
        reset_deq(model)
        assert drop.mask is None
        masks.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            z_out, _ = deq(f, to_xp(np.zeros((3, 4, 2))))
        z_out[-1].sum().backward()
        assert len(masks) > 5 and all(m is masks[0] for m in masks)
        check_array(masks[0], (3, 4, 1), xp.float64)
        drawn.append(as_np(masks[0]))
        assert cell.weight.grad is not None
    assert not np.array_equal(drawn[0], drawn[1])  # 12 channels: equal with chance 2^-12


def test_reset_dropout_draws_a_new_mask():
    drop = VariationalDropout2d(0.5, seed=0)
    model = Sequential(Linear(2, 2, seed=0), drop)
    x = np.ones((4, 8, 3, 3))
    first = as_np(drop(x))
    np.testing.assert_array_equal(as_np(drop(x)), first)
    reset_dropout(model)
    assert drop.mask is None
    assert not np.array_equal(as_np(drop(x)), first)  # 32 channels
    with pytest.raises(TypeError, match="modules"):
        reset_dropout(drop.mask)


def test_new_batch_shape_new_mask(xp, to_xp, check_array):
    drop = VariationalDropToken1d(0.5, seed=0)
    drop(to_xp(np.ones((2, 3, 5))))
    first = drop.mask
    drop(to_xp(np.ones((2, 3, 5))))
    assert drop.mask is first
    drop(to_xp(np.ones((4, 3, 5))))
    check_array(drop.mask, (4, 1, 5))
    drop(to_xp(np.ones((4, 3, 5), dtype=np.float32)))
    check_array(drop.mask, (4, 1, 5), xp.float32)


def test_identity_in_eval_and_at_zero():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    drop = VariationalDropout1d(0.5, seed=0).eval()
    assert drop(x) is x and drop.mask is None
    zero = VariationalDropout(0.0)
    assert zero(x) is x
    full = VariationalDropout(1.0)
    np.testing.assert_array_equal(as_np(full(x)), 0.0)


def test_input_is_not_modified(xp, to_xp):
    x_np = np.random.default_rng(0).standard_normal((3, 4))
    x = to_xp(x_np)
    VariationalDropout(0.5, seed=0)(x)
    np.testing.assert_array_equal(as_np(x), x_np)


def test_seeding():
    x = np.ones((4, 16, 3))
    a, b, c = VariationalDropout1d(0.5, seed=3), VariationalDropout1d(0.5, seed=3), \
        VariationalDropout1d(0.5, seed=4)
    first = [as_np(a(x)), as_np(b(x)), as_np(c(x))]
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[0], first[2])
    a.reset_mask()
    assert not np.array_equal(as_np(a(x)), first[0])  # the stream goes on
    masks = []
    for _ in range(2):
        npdeq.nn.manual_seed(11)
        masks.append(as_np(VariationalDropout1d(0.5)(x)))
    assert np.array_equal(*masks)
    gen = backend.make_generator(5)
    assert VariationalDropout1d(0.5, seed=gen)._generator is gen


def test_gradient_is_the_mask():
    drop = VariationalDropout2d(0.4, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 3))
    drop(x)
    check_grads(drop, x, modes=("rev", "fwd"))
    t = npdeq.Tensor(x, requires_grad=True)
    drop(t).sum().backward()
    np.testing.assert_array_equal(t.grad.data, np.broadcast_to(drop.mask, x.shape))


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5", None])
def test_bad_probability(bad):
    with pytest.raises(ValueError, match="dropout probability.*" + re.escape(repr(bad))):
        VariationalDropout(bad)


def test_bad_input():
    with pytest.raises(ValueError, match=r"VariationalDropout2d expects a 4-D input "
                                         r"\(B, C, H, W\), got shape \(2, 3\)"):
        VariationalDropout2d(0.5)(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(B, L, C\)"):
        VariationalDropToken1d(0.5, token_first=True)(np.ones((2, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        VariationalDropout(0.5)(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="token_first"):
        VariationalDropout1d(0.5, token_first=1)
    assert "dropout=0.25, token_first=True" in repr(VariationalDropout1d(0.25, True))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64(1.5)])
def test_non_finite_probability_is_refused(bad):
    for cls in (VariationalDropout, VariationalDropout2d, VariationalDropToken1d):
        with pytest.raises(ValueError, match="dropout probability"):
            cls(bad)


def test_numpy_scalars_are_accepted():
    x = np.ones((3, 4, 5))
    for p in (np.float32(0.25), np.float64(0.25)):
        a, b = VariationalDropout1d(p, seed=0), VariationalDropout1d(0.25, seed=0)
        assert type(a.dropout) is float
        np.testing.assert_allclose(as_np(a(x)), as_np(b(x)), rtol=1e-7)
    assert VariationalDropout1d(0.5, token_first=np.bool_(True)).token_first is True
