"""WeightNorm: the formula against NumPy (learned scale, no_scale, clipping, dims), the
parameters it registers, gradients against finite differences, and bad settings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.nn import Linear
from npdeq.norm import WeightNorm, reset_norm, weight_normalize
from npdeq.norm.base import norm_except_dim, reduce_axes
from npdeq.testing import check_grads

from norm_problems import (as_np, check_module_grads, layer_input, make_layer, np_row_norms,
                           weight_shapes)


@given(data=st.data())
def test_formula_matches_numpy(xp, xp_device, to_xp, check_array, data):
    shape = data.draw(weight_shapes(), label="shape")
    clip = data.draw(st.booleans(), label="clip")
    learn = data.draw(st.booleans(), label="learn_scale")
    target = data.draw(st.floats(0.1, 3.0), label="target_norm")
    clip_value = data.draw(st.floats(0.1, 3.0), label="clip_value")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    v = rng.standard_normal(shape)
    layer = make_layer(shape, xp, xp_device)
    layer.weight.data = to_xp(v)
    WeightNorm.apply(layer, learn_scale=learn, target_norm=target, clip=clip,
                     clip_value=clip_value)
    norms = np_row_norms(v)
    g = norms if learn else target
    if learn:  # a learned g starts at ||v||; move it to check the formula at other values
        g = rng.uniform(0.1, 3.0, norms.shape)
        layer.weight_g.data = to_xp(g)
        check_array(layer.weight_g, norms.shape)
        reset_norm(layer)
    factor = np.minimum(clip_value, g / norms) if clip else g / norms
    check_array(layer.weight, shape)
    np.testing.assert_allclose(as_np(layer.weight), v * factor, rtol=1e-12, atol=1e-14)


@given(shape=weight_shapes())
def test_learned_scale_starts_at_the_weight(shape):
    layer = make_layer(shape)
    before = layer.weight.data.copy()
    WeightNorm.apply(layer)
    np.testing.assert_allclose(layer.weight.data, before, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.weight_g.data, np_row_norms(before), rtol=1e-12)
    assert layer.weight_g.shape == (shape[0],) + (1,) * (len(shape) - 1)


def test_no_scale_rows_take_the_target_norm():
    layer = Linear(5, 3, seed=0)
    WeightNorm.apply(layer, learn_scale=False, target_norm=0.7)
    assert "weight_g" not in layer._parameters
    np.testing.assert_allclose(np.linalg.norm(layer.weight.data, axis=1), 0.7, rtol=1e-12)


def test_clip_only_shrinks():
    v = np.array([[3.0, 4.0], [0.3, 0.4]])  # row norms 5 and 0.5
    layer = Linear(2, 2, seed=0)
    layer.weight.data = v.copy()
    WeightNorm.apply(layer, learn_scale=False, target_norm=1.0, clip=True, clip_value=1.0)
    # factors 1/5 and min(1, 1/0.5) = 1: the long row is normalised, the short one kept.
    np.testing.assert_allclose(layer.weight.data, [[0.6, 0.8], [0.3, 0.4]], rtol=1e-12)


@pytest.mark.parametrize("dim", [1, -1, None])
def test_other_dims(dim):
    v = np.random.default_rng(0).standard_normal((3, 4))
    g = norm_except_dim(v, dim).data * 2.0
    w = weight_normalize(v, g, dim=dim).data
    np.testing.assert_allclose(w, 2.0 * v, rtol=1e-12)
    axes = reduce_axes(2, dim)
    np.testing.assert_allclose(np.sqrt((w * w).sum(axis=axes)), np.squeeze(g, axes), rtol=1e-12)


def test_registers_the_same_parameter_object():
    layer = Linear(3, 2, seed=0)
    weight = layer.weight
    norm = WeightNorm.apply(layer)
    assert layer.weight_v is weight
    assert layer._deq_norm is norm
    assert [n for n, _ in layer.named_parameters()] == ["bias", "weight_g", "weight_v"]
    assert set(layer.state_dict()) == {"bias", "weight_g", "weight_v"}
    assert not isinstance(layer.weight, npdeq.nn.Parameter)
    assert layer.weight.requires_grad and not layer.weight.is_leaf


def test_frozen_weight_stays_frozen():
    layer = Linear(3, 2, seed=0)
    layer.weight.requires_grad_(False)
    WeightNorm.apply(layer)
    assert not layer.weight_v.requires_grad and not layer.weight_g.requires_grad


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)])
def test_formula_gradients(shape, clip):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(shape)
    g = rng.uniform(0.5, 2.0, np_row_norms(v).shape)
    # clip_value sits between two factors (away from the kink), so some rows are clipped
    # and some are not.
    factors = np.sort((g / np_row_norms(v)).ravel())
    clip_value = float(factors[:2].mean())
    check_grads(lambda v, g: weight_normalize(v, g, clip=clip, clip_value=clip_value), v, g,
                modes=("rev", "fwd"), order=2)
    check_grads(lambda v: weight_normalize(v, None, target_norm=0.5, clip=clip,
                                           clip_value=clip_value), v)


@pytest.mark.parametrize("learn", [True, False])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 3, 3)])
def test_module_gradients_match_finite_differences(xp, xp_device, to_xp, shape, learn):
    layer = make_layer(shape, xp, xp_device)
    norms = np_row_norms(as_np(layer.weight))
    rng = np.random.default_rng(3)
    # Factors g / ||v|| on both sides of clip_value = 1: some rows clipped, some not.
    WeightNorm.apply(layer, learn_scale=learn, target_norm=float(norms.mean()), clip=True,
                     clip_value=1.0)
    if learn:
        factors = np.where(np.arange(norms.size) % 2 == 0, 0.6, 1.4).reshape(norms.shape)
        layer.weight_g.data = to_xp(norms * factors)
    x = layer_input(layer, to_xp)
    c = to_xp(rng.standard_normal(layer(x).shape))

    def make_loss():
        reset_norm(layer)
        return (npdeq.tanh(layer(x)) * c).sum()

    names = ["weight_v", "bias"] + (["weight_g"] if learn else [])
    check_module_grads(layer, make_loss, names)


def test_bad_settings_leave_the_module_alone():
    layer = Linear(3, 2, seed=0)
    for bad in (dict(learn_scale=1), dict(target_norm=-1.0), dict(clip="yes"),
                dict(clip_value=0.0), dict(target_norm=float("nan"))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            WeightNorm.apply(layer, **bad)
        assert isinstance(layer.weight, npdeq.nn.Parameter)
    with pytest.raises(ValueError, match="dim"):
        WeightNorm.apply(layer, names="weight", dims=2)
    with pytest.raises(ValueError, match="not a Parameter"):
        WeightNorm.apply(layer, names="scale", dims=0)
    with pytest.raises(TypeError, match="Module"):
        WeightNorm.apply(object())
    WeightNorm.apply(layer)
    with pytest.raises(ValueError, match="already normalised"):
        WeightNorm.apply(layer)


# --- hardening: a zero direction is an error, settings finite, NumPy scalars accepted ----

NAN, INF = float("nan"), float("inf")


def _zero_row_linear():
    layer = Linear(3, 2, seed=0)
    w = np.array(layer.weight.data)
    w[1] = 0.0
    layer.weight.data = w
    return layer


@pytest.mark.parametrize("kwargs", [{}, {"learn_scale": False}, {"clip": True}],
                         ids=["learned", "no-scale", "clipped"])
def test_a_zero_row_is_refused_at_apply_and_the_module_is_unchanged(kwargs):
    layer = _zero_row_linear()
    weight, bias = layer.weight, layer.bias
    with pytest.raises(ValueError, match=r"WeightNorm of Linear.weight_v.*1 of 2 norm\(s\).*zero"):
        WeightNorm.apply(layer, **kwargs)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight is weight and layer.bias is bias and "_deq_norm" not in layer.__dict__
    assert "weight" not in layer.__dict__


def test_a_row_that_becomes_zero_is_refused_at_reset():
    layer = Linear(3, 2, seed=0)
    WeightNorm.apply(layer)
    before = layer.weight
    v = np.array(layer.weight_v.data)
    v[0] = 0.0
    layer.weight_v.data = v
    with pytest.raises(ValueError, match="WeightNorm of Linear.weight_v.*zero"):
        reset_norm(layer)
    assert layer.weight is before  # the last good weight stays
    layer.weight_v.data = np.full((2, 3), np.nan)
    with pytest.raises(ValueError, match="NaN or an infinity"):
        reset_norm(layer)


def test_weight_normalize_of_a_zero_row_raises(xp, to_xp):
    with pytest.raises(ValueError, match="weight_normalize.*zero"):
        weight_normalize(to_xp(np.zeros((2, 3))), to_xp(np.ones((2, 1))))
    with pytest.raises(ValueError, match="weight_normalize.*zero"):
        weight_normalize(to_xp(np.zeros((2, 3))), dim=None, clip=True)


def test_apply_norm_is_all_or_nothing_when_a_later_weight_is_zero():
    from npdeq.nn import Sequential
    from npdeq.norm import apply_norm
    model = Sequential(Linear(3, 3, seed=0), _zero_row_linear())
    before = [(n, id(p)) for n, p in model.named_parameters()]
    with pytest.raises(ValueError, match="zero"):
        apply_norm(model, "weight_norm")
    assert [(n, id(p)) for n, p in model.named_parameters()] == before
    assert all("_deq_norm" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("bad", [dict(target_norm=INF), dict(clip_value=NAN),
                                 dict(clip_value=INF), dict(target_norm=True)])
def test_non_finite_scale_settings_are_refused(bad):
    layer = Linear(3, 2, seed=0)
    with pytest.raises(ValueError, match=next(iter(bad))):
        WeightNorm.apply(layer, **bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        weight_normalize(np.ones((2, 3)), **bad)
    assert isinstance(layer.weight, npdeq.nn.Parameter)


def test_numpy_scalars_are_accepted_as_settings():
    a, b = Linear(3, 2, seed=0), Linear(3, 2, seed=0)
    WeightNorm.apply(a, names="weight", dims=np.int64(0), learn_scale=np.bool_(False),
                     target_norm=np.float32(2.0), clip=np.bool_(True), clip_value=np.int64(3))
    WeightNorm.apply(b, names="weight", dims=0, learn_scale=False, target_norm=2.0, clip=True,
                     clip_value=3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert reduce_axes(2, np.int64(-1)) == (0,)
