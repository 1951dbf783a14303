"""Conv1d, the pooling layers, BatchNorm1d/2d and Embedding: forward values against NumPy
closed forms of PyTorch's formulas, gradients into inputs and Parameters against central
differences, PyTorch's initialisation, BatchNorm's train/eval rules and buffers (state_dict
round trip, ``Module.to``), and weight/spectral norm on the layers with a weight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npdeq import nn
from npdeq.norm import WeightNorm, apply_norm, register_norm_module, reset_norm

from test_layers import check_uniform, check_layer_grads, host, set_params, where


def test_conv1d_matches_closed_form_and_finite_differences(xp, xp_device, to_xp, check_array):
    layer = nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, seed=0,
                      **where(xp, xp_device))
    check_array(layer.weight, shape=(6, 2, 3), dtype=xp.float64)
    x = np.random.default_rng(1).standard_normal((2, 4, 9))
    w, b = host(layer.weight), host(layer.bias)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    expected = np.zeros((2, 6, 4))
    for o in range(6):
        g = o // 3
        for i in range(4):
            taps = xpad[:, 2 * g:2 * g + 2, 2 * i:2 * i + 5:2]
            expected[:, o, i] = np.sum(taps * w[o], axis=(1, 2)) + b[o]
    out = layer(to_xp(x))
    check_array(out, shape=(2, 6, 4), dtype=xp.float64)
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)
    check_layer_grads(layer, to_xp(x), 2)


def test_conv1d_default_init_is_pytorchs():
    layer = nn.Conv1d(8, 300, 5, groups=2, seed=0)
    bound = 1 / math.sqrt(4 * 5)
    check_uniform(host(layer.weight), bound, "Conv1d.weight")
    check_uniform(host(layer.bias), bound, "Conv1d.bias")
    assert (layer.kernel_size, layer.stride, layer.padding) == ((5,), (1,), (0,))
    assert nn.Conv1d(1, 1, 3, padding="same").padding == "same"
    with pytest.raises(ValueError, match="Conv1d: kernel_size must be an int or a 1-tuple"):
        nn.Conv1d(1, 1, (3, 3))
    with pytest.raises(ValueError, match="needs stride 1"):
        nn.Conv1d(1, 1, 3, stride=2, padding="same")


def test_pooling_layers_match_the_ops_and_pass_gradients(xp, to_xp, check_array):
    rng = np.random.default_rng(0)
    seq = rng.permutation(2 * 3 * 8).reshape(2, 3, 8) * 0.1
    img = rng.permutation(2 * 3 * 36).reshape(2, 3, 6, 6) * 0.1
    cases = [(nn.MaxPool1d(3, stride=2, padding=1), seq, (2, 3, 4)),
             (nn.AvgPool1d(2), seq, (2, 3, 4)),
             (nn.MaxPool2d(2), img, (2, 3, 3, 3)),
             (nn.MaxPool2d((3, 2), stride=1, padding=(1, 0), dilation=(1, 2)), img,
              (2, 3, 6, 4))]
    for layer, x, shape in cases:
        out = layer(to_xp(x))
        check_array(out, shape=shape, dtype=xp.float64)
        check_layer_grads(layer, to_xp(x), 1)
    expected = img.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(host(cases[2][0](to_xp(img))), expected)
    np.testing.assert_allclose(host(cases[1][0](to_xp(seq))),
                               seq.reshape(2, 3, 4, 2).mean(axis=3), rtol=1e-12)
    assert nn.MaxPool2d(3).stride == 3 and nn.MaxPool1d(2).stride == (2,)
    with pytest.raises(ValueError, match="MaxPool2d: padding"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="ceil_mode=True is not supported"):
        nn.MaxPool1d(2, ceil_mode=True)


# --- BatchNorm -----------------------------------------------------------------------------


def batch_norm_reference(x, mean, var, weight, bias, eps):
    kept = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - mean.reshape(kept)) / np.sqrt(var.reshape(kept) + eps) * weight.reshape(kept)
            + bias.reshape(kept))


@pytest.mark.parametrize("make, shape", [(nn.BatchNorm1d, (5, 3)), (nn.BatchNorm1d, (4, 3, 2)),
                                         (nn.BatchNorm2d, (2, 3, 2, 3))])
def test_batch_norm_train_and_eval_follow_pytorch(xp, xp_device, to_xp, check_array, make,
                                                  shape):
    layer = make(3, momentum=0.3, **where(xp, xp_device))
    set_params(layer, to_xp, np.random.default_rng(0))
    w, b = host(layer.weight), host(layer.bias)
    axes = (0,) + tuple(range(2, len(shape)))
    n = math.prod(shape[a] for a in axes)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(2):  # batch statistics, running update with the unbiased variance
        x = np.random.default_rng(step + 1).standard_normal(shape) * 2 + 1
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        out = layer(to_xp(x))
        check_array(out, shape=shape, dtype=xp.float64)
        np.testing.assert_allclose(host(out), batch_norm_reference(x, mean, var, w, b, 1e-5),
                                   rtol=1e-10, atol=1e-12)
        running_mean = 0.7 * running_mean + 0.3 * mean
        running_var = 0.7 * running_var + 0.3 * var * n / (n - 1)
        check_array(layer.running_mean, shape=(3,), dtype=xp.float64)
        np.testing.assert_allclose(host(layer.running_mean), running_mean, rtol=1e-12)
        np.testing.assert_allclose(host(layer.running_var), running_var, rtol=1e-12)
        assert int(host(layer.num_batches_tracked)) == step + 1
        check_array(layer.num_batches_tracked, shape=(), dtype=xp.int64)
    layer.eval()  # running statistics, no update
    x = np.random.default_rng(9).standard_normal(shape)
    out = layer(to_xp(x))
    np.testing.assert_allclose(
        host(out), batch_norm_reference(x, running_mean, running_var, w, b, 1e-5), rtol=1e-10)
    np.testing.assert_allclose(host(layer.running_mean), running_mean, rtol=1e-12)
    assert int(host(layer.num_batches_tracked)) == 2
    check_layer_grads(layer, to_xp(x), 3)


def test_batch_norm_gradients_in_training_mode(xp, xp_device, to_xp):
    layer = nn.BatchNorm2d(2, track_running_stats=False, **where(xp, xp_device))
    set_params(layer, to_xp, np.random.default_rng(0))
    assert layer.running_mean is None and list(layer.state_dict()) == ["weight", "bias"]
    check_layer_grads(layer, to_xp(np.random.default_rng(1).standard_normal((3, 2, 2, 2))), 4,
                      rtol=1e-4, atol=1e-7)
    layer.eval()  # without running statistics, eval uses the batch's too
    x = np.random.default_rng(2).standard_normal((3, 2, 2, 2))
    np.testing.assert_allclose(host(layer(to_xp(x))), batch_norm_reference(
        x, x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)), host(layer.weight),
        host(layer.bias), 1e-5), rtol=1e-10)


def test_batch_norm_cumulative_average_with_momentum_none():
    layer = nn.BatchNorm1d(1, momentum=None, affine=False)
    batches = [np.array([[0.0], [2.0]]), np.array([[4.0], [8.0]])]
    for x in batches:
        layer(x)
    np.testing.assert_allclose(layer.running_mean, [3.5])
    np.testing.assert_allclose(layer.running_var, [(2.0 + 8.0) / 2])
    assert list(layer.parameters()) == []


def test_batch_norm_buffers_round_trip_and_move(xp, xp_device, to_xp, check_array):
    layer = nn.BatchNorm1d(3)
    layer(np.random.default_rng(0).standard_normal((4, 3)))
    state = layer.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var",
                           "num_batches_tracked"]
    other = nn.BatchNorm1d(3, **where(xp, xp_device))
    other.load_state_dict(state)
    for name in ("running_mean", "running_var"):
        check_array(getattr(other, name), shape=(3,), dtype=xp.float64)
        np.testing.assert_array_equal(host(getattr(other, name)), state[name])
    assert int(host(other.num_batches_tracked)) == 1
    layer.to(xp_device if xp_device != "cpu" else xp, dtype="float32")
    check_array(layer.running_mean, shape=(3,), dtype=xp.float32)
    check_array(layer.running_var, shape=(3,), dtype=xp.float32)
    check_array(layer.num_batches_tracked, shape=(), dtype=xp.int64)  # integers stay
    layer(to_xp(np.ones((2, 3)), "float32"))
    check_array(layer.running_mean, shape=(3,), dtype=xp.float32)


def test_batch_norm_rejects_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        nn.BatchNorm2d(3, eps=0.0)
    with pytest.raises(TypeError, match="track_running_stats"):
        nn.BatchNorm1d(3, track_running_stats=1)
    with pytest.raises(ValueError, match=r"BatchNorm2d: input must have shape \(B, C, H, W\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="has 4 channels, expected num_features=3"):
        nn.BatchNorm1d(3)(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(np.zeros((1, 3)))
    nn.BatchNorm1d(3).eval()(np.zeros((1, 3)))  # fine with running statistics


# --- Embedding -----------------------------------------------------------------------------


def test_embedding_init_lookup_and_gradient(xp, xp_device, to_xp, check_array):
    layer = nn.Embedding(400, 50, padding_idx=-2, seed=0, **where(xp, xp_device))
    weight = host(layer.weight)
    assert layer.padding_idx == 398
    np.testing.assert_array_equal(weight[398], 0.0)
    rest = np.delete(weight, 398, axis=0)
    assert abs(rest.mean()) < 0.02 and abs(rest.std() - 1.0) < 0.02  # N(0, 1)
    index = np.array([[3, 398, 3], [0, 399, 7]])
    out = layer(to_xp(index))
    check_array(out, shape=(2, 3, 50), dtype=xp.float64)
    np.testing.assert_array_equal(host(out), weight[index])
    out.sum().backward()
    expected = np.zeros((400, 50))
    np.add.at(expected, index.reshape(-1), 1.0)
    expected[398] = 0.0
    check_array(layer.weight.grad, shape=(400, 50), dtype=xp.float64)
    np.testing.assert_array_equal(host(layer.weight.grad), expected)


def test_embedding_from_pretrained_and_bad_arguments():
    layer = nn.Embedding.from_pretrained(np.eye(3), freeze=False)
    assert layer.weight.requires_grad and layer.num_embeddings == 3
    with pytest.raises(ValueError, match=r"padding_idx must be in \[-3, 3\)"):
        nn.Embedding(3, 2, padding_idx=3)
    with pytest.raises(ValueError, match="embedding_dim"):
        nn.Embedding(3, 0)
    with pytest.raises(TypeError, match="integers"):
        nn.Embedding(3, 2)(np.array([0.5]))


# --- weight and spectral norm --------------------------------------------------------------


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(6, 4, seed=0)
        self.conv = nn.Conv1d(4, 4, 3, padding=1, seed=1)
        self.bn = nn.BatchNorm1d(4)
        self.pool = nn.MaxPool1d(2)

    def forward(self, index):
        z = self.emb(index)  # (B, L, 4)
        return self.pool(self.bn(self.conv(z.permute((0, 2, 1)))))


@pytest.mark.parametrize("norm_type", ["weight_norm", "spectral_norm"])
def test_norms_apply_to_conv1d_and_registered_embedding(norm_type, monkeypatch):
    model = Model()
    assert apply_norm(model, norm_type, seed=0) == ["conv"]  # TorchDEQ's default types
    norm_class = type(model.conv._deq_norm)
    monkeypatch.setitem(norm_class._target_modules, nn.Embedding, (("weight",), (0,)))
    model = Model()
    assert sorted(apply_norm(model, norm_type, seed=0)) == ["conv", "emb"]
    reset_norm(model)
    rows = np.linalg.norm(host(model.emb.weight), axis=1)
    if norm_type == "weight_norm":  # each row (dim 0) keeps its norm, learned as weight_g
        np.testing.assert_allclose(rows, np.linalg.norm(host(Model().emb.weight), axis=1))
    index = np.array([[0, 1, 2, 5], [3, 3, 4, 0]])
    model(index).sum().backward()
    params = dict(model.named_parameters())
    assert "weight" not in model.emb._parameters and "weight" not in model.conv._parameters
    assert "bn.weight" in params  # BatchNorm is never normalised
    for name, param in params.items():
        assert param.grad is not None, name
        assert np.abs(host(param.grad)).sum() > 0, name


def test_embedding_weight_norm_gradients_match_finite_differences():
    layer = nn.Embedding(5, 3, seed=0)
    WeightNorm.apply(layer, "weight", 0)
    reset_norm(layer)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            reset_norm(self.layer)
            return self.layer(np.array([0, 2, 2, 4])) * x

    check_layer_grads(Wrapped(), np.ones((4, 3)), 0, rtol=1e-5, atol=1e-8)


def test_register_norm_module_makes_apply_norm_pick_embeddings(monkeypatch):
    monkeypatch.setattr(WeightNorm, "_target_modules", dict(WeightNorm._target_modules))
    register_norm_module(nn.Embedding, "weight_norm", "weight", 0)
    assert apply_norm(nn.Sequential(nn.Embedding(3, 2, seed=0))) == ["0"]
