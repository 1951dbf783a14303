"""apply_norm / reset_norm / remove_norm on whole models: which modules are normalised
(filters, registered types), where settings come from (args vs keyword arguments), errors,
baking the weights back, one weight computation per reset inside a DEQ solve, reset_deq,
and moving a model (the docstring examples run in tests/test_docstrings.py)."""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pytest

import npdeq
import npdeq.dropout
from npdeq.core import DEQConfig, get_deq, reset_deq
from npdeq.nn import Conv2d, Linear, Module, Sequential, Tanh
from npdeq.norm import (NormBase, SpectralNorm, WeightNorm, apply_norm, register_norm,
                        register_norm_module, registered_norms, remove_norm, reset_norm)
from npdeq.norm import apply as apply_module

from norm_problems import as_np, check_module_grads


class Block(Module):
    """encoder (Linear) -> cell (Linear, Conv2d) -> head (Linear)."""

    def __init__(self, xp=None, device=None):
        super().__init__()
        where = dict(xp=xp, device=device)
        self.encoder = Linear(4, 8, seed=0, **where)
        self.cell = Sequential(Linear(8, 8, seed=1, **where), Tanh(),
                               Conv2d(2, 2, 3, padding=1, seed=2, **where))
        self.head = Linear(8, 3, seed=3, **where)
        self.embedding = Linear(4, 4, seed=4, **where)

    def forward(self, x):
        z = self.cell[1](self.cell[0](self.encoder(x)))
        z = self.cell[2](z.reshape((z.shape[0], 2, 2, 2))).reshape((z.shape[0], 8))
        return self.head(z) + self.embedding(x)[:, :3]


def normalised(model):
    return sorted(name for name, m in model.named_modules() if "_deq_norm" in m.__dict__)


ALL = ["cell.0", "cell.2", "embedding", "encoder", "head"]


def test_every_registered_module_by_default():
    model = Block()
    assert sorted(apply_norm(model)) == ALL
    assert normalised(model) == ALL
    assert all(isinstance(m._deq_norm, WeightNorm) for n, m in model.named_modules()
               if n in ALL)


@pytest.mark.parametrize("prefix, names, expected", [
    ("cell", None, ["embedding", "encoder", "head"]),
    (["cell.2", "head"], None, ["cell.0", "embedding", "encoder"]),
    (None, "embedding", ["cell.0", "cell.2", "encoder", "head"]),
    (None, ["0", "ea"], ["cell.2", "embedding", "encoder"]),  # substrings of the names
    ("enc", ["bed"], ["cell.0", "cell.2", "head"]),
])
def test_filters(prefix, names, expected):
    model = Block()
    apply_norm(model, prefix_filter_out=prefix, filter_out=names)
    assert normalised(model) == expected


def test_settings_keyword_arguments_win_over_args():
    args = {"norm_no_scale": True, "norm_clip": True, "norm_clip_value": 2.0}
    for source in (dict(args), argparse.Namespace(**args, lr=0.1), DEQConfig(args)):
        layer = Linear(3, 2, seed=0)
        apply_norm(layer, args=source, norm_no_scale=False, norm_target_norm=3.0)
        norm = layer._deq_norm
        assert (norm.learn_scale, norm.clip, norm.clip_value, norm.target_norm) == (
            True, True, 2.0, 3.0)
        # args are read, never written
        assert source["norm_no_scale"] if not isinstance(source, argparse.Namespace) else (
            source.norm_no_scale and "norm_target_norm" not in vars(source))
    layer = Linear(3, 2, seed=0)
    apply_norm(layer, "spectral_norm", args={"sn_n_power_iters": 4})
    assert layer._deq_norm.n_power_iterations == 4


def test_norm_type_explicit_then_args_then_default():
    layer = Linear(3, 2, seed=0)
    apply_norm(layer, args={"norm_type": "spectral_norm"})
    assert isinstance(layer._deq_norm, SpectralNorm)
    layer = Linear(3, 2, seed=0)
    apply_norm(layer, "weight_norm", args={"norm_type": "spectral_norm"})
    assert isinstance(layer._deq_norm, WeightNorm)
    layer = Linear(3, 2, seed=0)
    assert apply_norm(layer, args={"norm_type": "none"}) == []
    assert apply_norm(layer, None) == [] and apply_norm(layer, "none") == []
    assert isinstance(layer.weight, npdeq.nn.Parameter)


def test_errors_name_the_argument():
    layer = Linear(3, 2, seed=0)
    with pytest.raises(ValueError, match="'batch_norm'.*'none', 'spectral_norm', 'weight_norm'"):
        apply_norm(layer, "batch_norm")
    with pytest.raises(ValueError, match="'clip'.*norm_clip"):
        apply_norm(layer, clip=True)
    with pytest.raises(ValueError, match="norm_clip_value"):
        apply_norm(layer, norm_clip_value="big")
    with pytest.raises(ValueError, match="norm_target_norm"):
        apply_norm(layer, norm_target_norm=-1.0)
    with pytest.raises(TypeError, match="model"):
        apply_norm([layer])
    with pytest.raises(TypeError, match="filter_out"):
        apply_norm(layer, filter_out=[1])
    assert isinstance(layer.weight, npdeq.nn.Parameter)  # nothing changed by the failures


def test_applying_twice_raises_before_changing_anything():
    model = Block()
    apply_norm(model, prefix_filter_out="head")
    with pytest.raises(ValueError, match="already normalised.*remove_norm"):
        apply_norm(model, "spectral_norm")
    assert isinstance(model.head.weight, npdeq.nn.Parameter)
    remove_norm(model)
    apply_norm(model, "spectral_norm")
    assert normalised(model) == ALL


@pytest.mark.parametrize("norm_type", ["weight_norm", "spectral_norm"])
def test_remove_norm_bakes_the_weights(xp, xp_device, to_xp, check_array, norm_type):
    model = Block(xp, xp_device)
    x = to_xp(np.random.default_rng(0).standard_normal((2, 4)))
    plain_names = sorted(n for n, _ in model.named_parameters())
    apply_norm(model, norm_type, norm_clip=True, norm_clip_value=1.5, seed=0)
    for p in model.parameters():  # move the norm's parameters away from their start
        p.data = p.data * 1.1
    reset_norm(model)
    before = as_np(model(x))
    remove_norm(model)
    np.testing.assert_allclose(as_np(model(x)), before, rtol=1e-12, atol=1e-14)
    assert sorted(n for n, _ in model.named_parameters()) == plain_names
    assert list(model.buffers()) == [] and normalised(model) == []
    for name in ALL:
        module = dict(model.named_modules())[name]
        assert isinstance(module.weight, npdeq.nn.Parameter)
        check_array(module.weight)
    reset_norm(model)  # nothing left to reset
    np.testing.assert_allclose(as_np(model(x)), before, rtol=1e-12, atol=1e-14)


def test_registering_norms_and_module_types():
    class Scale(Module):
        def __init__(self):
            super().__init__()
            self.scale = npdeq.nn.Parameter(np.array([[3.0, 4.0]]))

        def forward(self, x):
            return x * self.scale

    class MyLinear(Linear):
        pass

    class PlainWeightNorm(WeightNorm):
        pass

    model = Sequential(Scale(), MyLinear(2, 2, seed=0))
    try:
        register_norm("plain", PlainWeightNorm)
        assert "plain" in registered_norms()
        assert apply_norm(model, "plain") == ["1"]  # a Linear subclass matches
        remove_norm(model)
        register_norm_module(Scale, "plain", "scale", 0)
        assert apply_norm(model, "plain", args={"norm_no_scale": True}) == ["0", "1"]
        np.testing.assert_allclose(model[0].scale.data, [[0.6, 0.8]])
        assert Scale not in WeightNorm._target_modules  # registered for 'plain' only
    finally:
        apply_module._NORMS.pop("plain", None)
    with pytest.raises(ValueError, match="registered"):
        register_norm_module(Scale, "nope")
    with pytest.raises(TypeError, match="Module subclass"):
        register_norm_module(int, "weight_norm")
    with pytest.raises(ValueError, match="same length"):
        register_norm_module(Scale, "weight_norm", ["a", "b"], [0])
    with pytest.raises(TypeError, match="NormBase"):
        register_norm("mine", object)
    with pytest.raises(ValueError, match="none"):
        register_norm("none", WeightNorm)


class Counting:
    """Counts compute_weight calls of a norm class (patched by monkeypatch)."""

    def __init__(self, monkeypatch, cls):
        self.calls = 0
        original = cls.compute_weight

        def counted(norm, *args, **kwargs):
            self.calls += 1
            return original(norm, *args, **kwargs)

        monkeypatch.setattr(cls, "compute_weight", counted)


@pytest.mark.parametrize("norm_type, cls", [("weight_norm", WeightNorm),
                                             ("spectral_norm", SpectralNorm)])
@pytest.mark.parametrize("ift", [False, True])
def test_weight_is_computed_once_per_reset_in_a_deq(monkeypatch, xp, xp_device, to_xp,
                                                    norm_type, cls, ift):
    cell = Linear(3, 3, seed=0, xp=xp, device=xp_device)
    apply_norm(cell, norm_type, norm_no_scale=True, norm_target_norm=0.5, seed=0)
    x = to_xp(np.random.default_rng(0).standard_normal((2, 3)))
    counter = Counting(monkeypatch, cls)
    seen = []

    def f(z):
        seen.append(cell.weight)
        return npdeq.tanh(cell(z) + x)

    deq = get_deq(f_max_iter=30, f_tol=1e-10, ift=ift, grad=3)
    for step in range(2):
        reset_deq(deq)  # the cores hold no norm: nothing happens
        reset_deq(cell)
        assert counter.calls == step + 1
        seen.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            z_out, _ = deq(f, to_xp(np.zeros((2, 3))))
        z_out[-1].sum().backward()
        assert counter.calls == step + 1  # the solve and the backward pass reuse it
        assert len(seen) > 5 and all(w is seen[0] for w in seen)
        assert cell.weight_v.grad is not None if norm_type == "weight_norm" else (
            cell.weight_orig.grad is not None)


def test_gradient_through_a_deq_matches_finite_differences(xp, xp_device, to_xp):
    """IFT gradient of a weight-normalised DEQ w.r.t. v and g against central differences
    of the solved loss."""
    cell = Linear(3, 3, seed=0, xp=xp, device=xp_device)
    apply_norm(cell)
    cell.weight_g.data = cell.weight_g.data * 0 + 0.4  # rows of norm 0.4: contractive
    x = to_xp(np.random.default_rng(0).standard_normal((2, 3)))
    c = to_xp(np.random.default_rng(1).standard_normal((2, 3)))
    deq = get_deq(f_solver="anderson", f_max_iter=60, f_tol=1e-13, ift=True, b_tol=1e-13,
                  b_max_iter=60)

    def make_loss():
        reset_norm(cell)
        z_out, _ = deq(lambda z: npdeq.tanh(cell(z) + x), to_xp(np.zeros((2, 3))))
        return (z_out[-1] * c).sum()

    check_module_grads(cell, make_loss, ["weight_v", "weight_g", "bias"], rtol=1e-6,
                       atol=1e-8)


def test_reset_deq_resets_norms_and_dropout():
    drop = npdeq.dropout.VariationalDropout(0.5, seed=0)
    model = Sequential(Linear(3, 3, seed=0), drop)
    apply_norm(model)
    model(np.ones((2, 3)))
    weight, mask = model[0].weight, drop.mask
    assert mask is not None
    model(np.ones((2, 3)))
    assert model[0].weight is weight and drop.mask is mask
    reset_deq(model)
    assert model[0].weight is not weight and drop.mask is None
    np.testing.assert_allclose(model[0].weight.data, weight.data)


def test_reset_after_moving_the_model():
    import array_api_strict

    device = array_api_strict.Device("device1")
    model = Sequential(Linear(3, 2, seed=0), Linear(2, 2, seed=1))
    apply_norm(model, "spectral_norm", seed=0)
    before = model(np.ones((1, 3))).data
    model.to(device)
    reset_norm(model.eval())
    for m in model:
        assert m.weight.device == device and npdeq.backend.device(m.weight_u) == device
    x = array_api_strict.asarray(np.ones((1, 3)), device=device)
    np.testing.assert_allclose(as_np(model(x)), before, rtol=1e-12)


def test_norm_base_needs_subclass_hooks():
    class Bare(NormBase):
        _target_modules = {Linear: (("weight",), (0,))}

    with pytest.raises(NotImplementedError, match="_attach"):
        Bare.apply(Linear(2, 2, seed=0))
