"""npdeq.nn.utils: clip_grad_norm_ and clip_grad_value_ against PyTorch's rule, in every
namespace, leaving the old gradient arrays and the dtypes alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

import npdeq
from npdeq import backend, nn
from npdeq.autodiff import Tensor
from npdeq.nn.utils import clip_grad_norm_, clip_grad_value_


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


G1, G2 = np.array([3.0, -4.0, 1.0]), np.array([[2.0, 0.5], [-1.0, 6.0]])


def params(to_xp, dtype=None):
    a, b, c = (nn.Parameter(to_xp(np.zeros(s), dtype=dtype)) for s in (3, (2, 2), 2))
    a.grad, b.grad = Tensor(to_xp(G1, dtype=dtype)), to_xp(G2, dtype=dtype)  # c has none
    return [a, b, c]


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf])
def test_clip_grad_norm_matches_pytorchs_rule(xp, to_xp, check_array, norm_type):
    ps = params(to_xp, np.float32)
    held = ps[0].grad.data
    flat = np.concatenate([G1, G2.ravel()])
    total = np.linalg.norm(flat, ord=norm_type)
    got = clip_grad_norm_(iter(ps), max_norm=2.0, norm_type=norm_type)
    assert type(got) is float
    np.testing.assert_allclose(got, total, rtol=1e-6)
    scale = 2.0 / (total + 1e-6)
    for p, g in zip(ps, (G1, G2)):
        check_array(p.grad, shape=g.shape, dtype=xp.float32)
        np.testing.assert_allclose(host(p.grad), g * scale, rtol=1e-6)
    assert ps[2].grad is None
    np.testing.assert_array_equal(host(held), G1)  # the old array is not written


def test_clip_grad_norm_leaves_small_gradients_alone_and_takes_one_tensor():
    w = nn.Parameter(np.zeros(3))
    w.grad = Tensor(G1)
    before = w.grad
    assert clip_grad_norm_(w, max_norm=10.0) == pytest.approx(math.sqrt(26.0))
    assert w.grad is before
    assert clip_grad_norm_([nn.Parameter(np.zeros(1))], 1.0) == 0.0


def test_a_nonfinite_norm_raises_on_request_and_changes_nothing():
    w = nn.Parameter(np.zeros(2))
    w.grad = Tensor(np.array([np.inf, 1.0]))
    with pytest.raises(RuntimeError, match="inf"):
        clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(host(w.grad), [np.inf, 1.0])
    w.grad = Tensor(np.array([np.nan, 1.0]))
    assert math.isnan(clip_grad_norm_([w], 1.0))
    assert np.isnan(host(w.grad)).all()  # PyTorch's result too


@pytest.mark.parametrize("call, error, match", [
    (lambda ps: clip_grad_norm_(ps, -1.0), ValueError, "max_norm"),
    (lambda ps: clip_grad_norm_(ps, float("nan")), ValueError, "max_norm"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=0), ValueError, "norm_type"),
    (lambda ps: clip_grad_norm_(ps, 1.0, error_if_nonfinite=1), TypeError, "error_if"),
    (lambda ps: clip_grad_norm_([np.ones(2)], 1.0), TypeError, "position 0"),
    (lambda ps: clip_grad_value_(ps, -0.5), ValueError, "clip_value"),
])
def test_bad_arguments_are_named(call, error, match):
    ps = params(lambda a, dtype=None: np.asarray(a, dtype=dtype))
    with pytest.raises(error, match=match):
        call(ps)
    np.testing.assert_array_equal(host(ps[0].grad), G1)


def test_clip_grad_value(xp, to_xp, check_array):
    ps = params(to_xp)
    clip_grad_value_(ps, 1.5)
    for p, g in zip(ps, (G1, G2)):
        check_array(p.grad, shape=g.shape, dtype=xp.float64)
        np.testing.assert_array_equal(host(p.grad), np.clip(g, -1.5, 1.5))
    assert ps[2].grad is None and npdeq.nn.utils.clip_grad_value_ is clip_grad_value_
