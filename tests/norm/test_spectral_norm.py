"""SpectralNorm: sigma against NumPy's SVD after enough power iterations, the formula with
the stored vectors, power iteration only in training, start vectors on the weight's
namespace/device (seeded), scale settings, and gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.nn import Linear
from npdeq.norm import SpectralNorm, reset_norm, spectral_normalize
from npdeq.norm.spectral_norm import power_iteration, weight_matrix
from npdeq.testing import check_grads

from norm_problems import as_np, check_module_grads, layer_input, make_layer, weight_shapes


def with_spectrum(shape, rng, top=2.5):
    """A weight of ``shape`` whose (out, -1) matrix has singular values top, top/2, ...
    (a clear gap, so a few dozen power iterations converge to rounding)."""
    h, w = shape[0], int(np.prod(shape[1:]))
    k = min(h, w)
    left, _ = np.linalg.qr(rng.standard_normal((h, k)))
    right, _ = np.linalg.qr(rng.standard_normal((w, k)))
    return ((left * (top / 2.0 ** np.arange(k))) @ right.T).reshape(shape)


@given(data=st.data())
def test_sigma_matches_the_largest_singular_value(xp, xp_device, to_xp, check_array, data):
    shape = data.draw(weight_shapes(), label="shape")
    target = data.draw(st.floats(0.2, 2.0), label="target_norm")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    w = with_spectrum(shape, rng)
    layer = make_layer(shape, xp, xp_device)
    layer.weight.data = to_xp(w)
    SpectralNorm.apply(layer, learn_scale=False, target_norm=target, n_power_iterations=60,
                       seed=0)
    for name in ("weight_u", "weight_v"):
        check_array(getattr(layer, name))
    check_array(layer.weight, shape)
    matrix = w.reshape(shape[0], -1)
    u, v = as_np(layer.weight_u), as_np(layer.weight_v)
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    np.testing.assert_allclose(u @ matrix @ v, sigma, rtol=1e-10)
    np.testing.assert_allclose(as_np(layer.weight), w * target / sigma, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(as_np(layer.weight).reshape(shape[0], -1), 2),
                               target, rtol=1e-9)


@given(data=st.data())
def test_formula_with_the_stored_vectors(data):
    shape = data.draw(weight_shapes(), label="shape")
    clip = data.draw(st.booleans(), label="clip")
    clip_value = data.draw(st.floats(0.1, 3.0), label="clip_value")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    layer = make_layer(shape)
    w = rng.standard_normal(shape)
    layer.weight.data = w
    SpectralNorm.apply(layer, clip=clip, clip_value=clip_value, target_norm=0.9, seed=1)
    g = rng.uniform(0.1, 2.0, (shape[0],) + (1,) * (len(shape) - 1))
    layer.weight_g.data = g
    layer.eval()  # keep u, v: the formula is checked at the stored vectors
    reset_norm(layer)
    u, v = layer.weight_u, layer.weight_v
    factor = g / (u @ w.reshape(shape[0], -1) @ v)
    expected = w * (np.minimum(clip_value, factor) if clip else factor)
    np.testing.assert_allclose(layer.weight.data, expected, rtol=1e-11, atol=1e-13)


def test_parameters_buffers_and_scale():
    layer = Linear(5, 3, seed=0)
    weight = layer.weight
    SpectralNorm.apply(layer, target_norm=0.5, seed=0)
    assert layer.weight_orig is weight
    assert [n for n, _ in layer.named_parameters()] == ["bias", "weight_orig", "weight_g"]
    assert [n for n, _ in layer.named_buffers()] == ["weight_u", "weight_v"]
    assert layer.weight_u.shape == (3,) and layer.weight_v.shape == (5,)
    np.testing.assert_allclose(layer.weight_g.data, np.full((3, 1), 0.5))
    np.testing.assert_allclose([np.linalg.norm(layer.weight_u), np.linalg.norm(layer.weight_v)],
                               1.0, rtol=1e-12)
    no_scale = Linear(5, 3, seed=0)
    SpectralNorm.apply(no_scale, learn_scale=False, seed=0)
    assert "weight_g" not in no_scale._parameters


def test_power_iteration_runs_once_per_reset_in_training_only():
    layer = Linear(6, 4, seed=0)
    SpectralNorm.apply(layer, n_power_iterations=2, seed=0)
    u0, v0 = layer.weight_u, layer.weight_v
    expected_u, expected_v = power_iteration(layer.weight_orig.data, u0, v0, 2)
    reset_norm(layer)
    u1, v1 = layer.weight_u, layer.weight_v
    np.testing.assert_allclose(u1, expected_u, rtol=1e-14)
    np.testing.assert_allclose(v1, expected_v, rtol=1e-14)
    assert u0 is not u1  # new arrays: the old buffer is not written in place
    weight = layer.weight
    for _ in range(3):  # calls between resets reuse the weight and the vectors
        layer(np.ones((2, 6)))
        assert layer.weight is weight and layer.weight_u is u1
    layer.eval()
    reset_norm(layer)
    assert layer.weight_u is u1 and layer.weight_v is v1
    assert layer.weight is not weight


def test_start_vectors_are_seeded():
    a, b, c = (Linear(6, 4, seed=0) for _ in range(3))
    SpectralNorm.apply(a, seed=7)
    SpectralNorm.apply(b, seed=7)
    SpectralNorm.apply(c, seed=8)
    assert np.array_equal(a.weight_u, b.weight_u) and np.array_equal(a.weight_v, b.weight_v)
    assert not np.array_equal(a.weight_u, c.weight_u)
    npdeq.nn.manual_seed(3)
    d = Linear(6, 4, seed=0)
    SpectralNorm.apply(d)
    npdeq.nn.manual_seed(3)
    e = Linear(6, 4, seed=0)
    SpectralNorm.apply(e)
    assert np.array_equal(d.weight_u, e.weight_u)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_weight_matrix_puts_dim_first(dim):
    w = np.arange(24.0).reshape(2, 3, 4)
    expected = np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)
    assert np.array_equal(weight_matrix(w, dim), expected)
    assert np.array_equal(weight_matrix(npdeq.Tensor(w), dim).data, expected)


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)])
def test_formula_gradients(shape, clip):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape)
    matrix = w.reshape(shape[0], -1)
    u, v = power_iteration(matrix, rng.standard_normal(shape[0]),
                           rng.standard_normal(matrix.shape[1]), 3)
    g = rng.uniform(0.5, 2.0, (shape[0],) + (1,) * (len(shape) - 1))
    factors = np.sort((g / (u @ matrix @ v)).ravel())
    clip_value = float(factors[:2].mean())  # between two factors, away from the kink
    check_grads(lambda w, g: spectral_normalize(w, u, v, g, clip=clip, clip_value=clip_value),
                w, g, modes=("rev", "fwd"), order=2)
    check_grads(lambda w: spectral_normalize(w, u, v, target_norm=0.7), w)


@pytest.mark.parametrize("learn", [True, False])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 3, 3)])
def test_module_gradients_match_finite_differences(xp, xp_device, to_xp, shape, learn):
    layer = make_layer(shape, xp, xp_device)
    SpectralNorm.apply(layer, learn_scale=learn, n_power_iterations=3, seed=0)
    layer.eval()  # no power-iteration step inside the finite differences
    x = layer_input(layer, to_xp)
    c = to_xp(np.random.default_rng(2).standard_normal(layer(x).shape))

    def make_loss():
        reset_norm(layer)
        return (npdeq.tanh(layer(x)) * c).sum()

    names = ["weight_orig", "bias"] + (["weight_g"] if learn else [])
    check_module_grads(layer, make_loss, names)


def test_bad_settings():
    layer = Linear(3, 2, seed=0)
    for bad in (dict(n_power_iterations=0), dict(n_power_iterations=1.5), dict(eps=0.0),
                dict(clip_value=-1.0), dict(learn_scale=None)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SpectralNorm.apply(layer, **bad)
    with pytest.raises(ValueError, match="output axis"):
        SpectralNorm.apply(layer, names="weight", dims=[None])
    assert isinstance(layer.weight, npdeq.nn.Parameter)


# --- hardening: an all-zero weight is an error, settings finite, NumPy scalars accepted --

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_an_all_zero_weight_is_refused_at_apply_and_the_module_is_unchanged(training):
    layer = Linear(3, 2, seed=0).train(training)
    layer.weight.data = np.zeros((2, 3))
    weight = layer.weight
    with pytest.raises(ValueError, match="SpectralNorm of Linear.weight_orig.*(all zero|0)"):
        SpectralNorm.apply(layer, seed=0)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight is weight and list(layer.named_buffers()) == []
    assert "_deq_norm" not in layer.__dict__


def test_a_weight_that_becomes_zero_is_refused_before_the_vectors_change():
    layer = Linear(3, 2, seed=0)
    SpectralNorm.apply(layer, seed=0)
    u, v, before = layer.weight_u, layer.weight_v, layer.weight
    layer.weight_orig.data = np.zeros((2, 3))
    with pytest.raises(ValueError, match="SpectralNorm of Linear.weight_orig.*all zero"):
        reset_norm(layer)
    assert layer.weight_u is u and layer.weight_v is v and layer.weight is before
    layer.eval()
    with pytest.raises(ValueError, match=r"sigma = u\^T W v is 0"):
        reset_norm(layer)


def test_spectral_normalize_of_a_zero_weight_raises(xp, to_xp):
    u, v = to_xp(np.array([1.0, 0.0])), to_xp(np.array([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="spectral_normalize.*spectral norm 0"):
        spectral_normalize(to_xp(np.zeros((2, 3))), u, v)
    with pytest.raises(ValueError, match="spectral_normalize.*finite"):
        spectral_normalize(to_xp(np.full((2, 3), np.nan)), u, v, clip=True)


@pytest.mark.parametrize("bad", [dict(n_power_iterations=NAN), dict(n_power_iterations=2.0),
                                 dict(n_power_iterations=True), dict(eps=NAN), dict(eps=INF),
                                 dict(target_norm=NAN), dict(clip_value=INF)])
def test_non_finite_settings_are_refused(bad):
    layer = Linear(3, 2, seed=0)
    with pytest.raises(ValueError, match=next(iter(bad))):
        SpectralNorm.apply(layer, **bad)
    assert isinstance(layer.weight, npdeq.nn.Parameter)


@pytest.mark.parametrize("kwargs, match", [({"n_iterations": -1}, "n_iterations"),
                                           ({"n_iterations": NAN}, "n_iterations"),
                                           ({"eps": NAN}, "eps"), ({"eps": 0.0}, "eps")])
def test_power_iteration_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        power_iteration(np.eye(2), np.ones(2), np.ones(2), **kwargs)


def test_numpy_scalars_are_accepted_as_settings():
    a, b = Linear(3, 2, seed=0), Linear(3, 2, seed=0)
    SpectralNorm.apply(a, n_power_iterations=np.int64(5), eps=np.float32(1e-12),
                       target_norm=np.float64(2.0), seed=0)
    SpectralNorm.apply(b, n_power_iterations=5, eps=1e-12, target_norm=2.0, seed=0)
    np.testing.assert_allclose(a.weight.data, b.weight.data, rtol=1e-12)
    u, _ = power_iteration(np.eye(2), np.ones(2) / 2**0.5, np.ones(2), np.int32(3))
    assert u.shape == (2,)
