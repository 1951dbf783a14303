"""npdeq.nn.functional: PyTorch's names and signatures over npdeq's ops. Each wrapper against
the op it wraps or a NumPy transcription of PyTorch's formula (weights, ignore_index,
label_smoothing, probability targets, (N, C, d1) inputs), the errors that replace PyTorch's
silent results, dropout's masks (values, seeding, namespace), and nn.Dropout."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
import npdeq.nn.functional as F
from npdeq import backend, nn
from npdeq.autodiff import Tensor
from npdeq.testing import check_grads


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


def test_import_paths():
    assert npdeq.nn.functional is F and hasattr(npdeq.nn.utils, "clip_grad_norm_")
    assert set(F.__all__) <= set(dir(F))


# --- activations and the like: each is its op ------------------------------------------------

X = np.array([[-3.0, -0.5, 0.0, 0.7], [2.0, 30.0, -25.0, 1e-3]])

WRAPPERS = {
    "relu": (lambda x: F.relu(x), lambda x: npdeq.relu(x)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: npdeq.leaky_relu(x, 0.2)),
    "gelu-tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda x: npdeq.gelu(x, approximate="tanh")),
    "silu": (F.silu, lambda x: x * npdeq.sigmoid(x)),
    "tanh": (F.tanh, npdeq.tanh), "sigmoid": (F.sigmoid, npdeq.sigmoid),
    "softplus": (lambda x: F.softplus(x, beta=2.0, threshold=10.0),
                 lambda x: npdeq.softplus(x, 2.0, 10.0)),
    "softmax": (lambda x: F.softmax(x, dim=0), lambda x: npdeq.softmax(x, axis=0)),
    "log_softmax": (lambda x: F.log_softmax(x, 1), lambda x: npdeq.log_softmax(x, axis=1)),
}


@pytest.mark.parametrize("wrapper, op", WRAPPERS.values(), ids=WRAPPERS.keys())
def test_each_wrapper_is_its_op(xp, to_xp, check_array, wrapper, op):
    x = to_xp(X)
    out = wrapper(x)
    check_array(out, shape=X.shape, dtype=xp.float64)
    np.testing.assert_array_equal(host(out), host(op(Tensor(x))))


def test_silu_values_and_gradient():
    np.testing.assert_allclose(host(F.silu(X)), X / (1 + np.exp(-X)), rtol=1e-14)
    check_grads(F.silu, X[:, :2])


@pytest.mark.parametrize("call", [lambda x: F.relu(x, inplace=True),
                                  lambda x: F.leaky_relu(x, inplace=True),
                                  lambda x: F.silu(x, True),
                                  lambda x: F.dropout(x, inplace=True),
                                  lambda x: nn.Dropout(0.1, inplace=True)])
def test_inplace_raises_naming_the_fix(call):
    with pytest.raises(ValueError, match="inplace=True.*returned Tensor"):
        call(X)


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_softmax_needs_dim(fn):
    with pytest.raises(TypeError, match="dim="):
        fn(X)
    with pytest.raises(ValueError, match="dtype"):
        fn(X, dim=1, dtype="float32")


# --- normalize -----------------------------------------------------------------------------


@pytest.mark.parametrize("p, dim", [(2.0, 1), (1, 1), (3.0, 0), (np.inf, 1), (2, (0, 1))])
def test_normalize_matches_pytorchs_formula(xp, to_xp, check_array, p, dim):
    x = X.copy()
    x[0] = 0.0  # a zero row: divided by eps, not NaN
    out = F.normalize(to_xp(x), p=p, dim=dim)
    check_array(out, shape=x.shape, dtype=xp.float64)
    norm = np.linalg.norm(x, ord=p, axis=dim, keepdims=True) if not isinstance(dim, tuple) \
        else np.sqrt((x * x).sum(keepdims=True))
    np.testing.assert_allclose(host(out), x / np.maximum(norm, 1e-12), rtol=1e-13)


def test_normalize_gradient_is_finite_at_zero_and_right_elsewhere():
    zero = Tensor(np.zeros((1, 3)), requires_grad=True)
    F.normalize(zero, eps=1e-3).sum().backward()
    np.testing.assert_allclose(host(zero.grad), np.full((1, 3), 1e3))  # d(x / eps)/dx
    check_grads(lambda x: F.normalize(x, p=3.0), X[:, :3] + 0.1, order=2)


@pytest.mark.parametrize("kwargs, match", [({"p": 0}, "p"), ({"p": np.nan}, "p"),
                                           ({"eps": 0.0}, "eps"), ({"eps": -1.0}, "eps")])
def test_normalize_checks_p_and_eps(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.normalize(X, **kwargs)


# --- dropout -------------------------------------------------------------------------------


def test_dropout_masks(xp, to_xp, check_array):
    x = Tensor(to_xp(np.ones((200, 50))), requires_grad=True)
    nn.manual_seed(5)
    out = F.dropout(x, p=0.25)
    check_array(out, shape=(200, 50), dtype=xp.float64)
    values = host(out)
    assert set(np.unique(values).round(12)) == {0.0, round(4 / 3, 12)}
    assert abs((values == 0).mean() - 0.25) < 0.02
    out.sum().backward()
    np.testing.assert_array_equal(host(x.grad), values)  # the gradient is the mask
    nn.manual_seed(5)
    np.testing.assert_array_equal(host(F.dropout(x, p=0.25)), values)  # seeded
    assert not np.array_equal(host(F.dropout(x, p=0.25)), values)  # a new mask per call


def test_dropout_edge_cases():
    x = Tensor(np.ones(4))
    assert F.dropout(x, p=0.5, training=False) is x and F.dropout(x, p=0.0) is x
    np.testing.assert_array_equal(host(F.dropout(x, p=1.0)), np.zeros(4))
    for p in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="p"):
            F.dropout(x, p=p)
    with pytest.raises(TypeError, match="floating"):
        F.dropout(np.ones(3, dtype=np.int64), p=0.5)


def test_dropout_module_is_the_identity_in_eval_and_draws_in_training():
    drop = nn.Dropout(0.5)
    x = np.ones(1000)
    assert drop.eval()(x) is x
    out = host(drop.train()(x))
    assert set(np.unique(out)) == {0.0, 2.0} and repr(drop) == "Dropout(p=0.5)"
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.5)


# --- layers --------------------------------------------------------------------------------


def test_linear_conv_pool_and_pad(xp, to_xp, check_array):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    out = F.linear(to_xp(x), to_xp(w), to_xp(b))
    check_array(out, shape=(2, 4))
    np.testing.assert_allclose(host(out), x @ w.T + b, rtol=1e-13)
    np.testing.assert_allclose(host(F.linear(to_xp(x), to_xp(w))), x @ w.T, rtol=1e-13)
    img, k = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    np.testing.assert_array_equal(host(F.conv2d(to_xp(img), to_xp(k), None, 2, 1)),
                                  host(npdeq.conv2d(to_xp(img), to_xp(k), stride=2, padding=1)))
    np.testing.assert_array_equal(host(F.avg_pool2d(to_xp(img), 2, 1)),
                                  host(npdeq.avg_pool2d(to_xp(img), 2, stride=1)))
    padded = F.pad(to_xp(np.ones((1, 2, 3))), (1, 2, 0, 1), value=5.0)
    check_array(padded, shape=(1, 3, 6))
    expected = np.pad(np.ones((1, 2, 3)), ((0, 0), (0, 1), (1, 2)), constant_values=5.0)
    np.testing.assert_array_equal(host(padded), expected)


@pytest.mark.parametrize("call, match", [
    (lambda: F.avg_pool2d(np.ones((1, 1, 4, 4)), 2, ceil_mode=True), "ceil_mode"),
    (lambda: F.avg_pool2d(np.ones((1, 1, 4, 4)), 2, count_include_pad=False), "count_incl"),
    (lambda: F.pad(np.ones((2, 2)), (1,)), "even number"),
    (lambda: F.pad(np.ones((2, 2)), (1, 1, 1, 1, 1, 1)), "at most 4"),
    (lambda: F.pad(np.ones((2, 2)), (-1, 1)), "non-negative"),
    (lambda: F.pad(np.ones((2, 2)), (1, 1), mode="reflect"), "'reflect'"),
])
def test_unsupported_layer_options_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- losses --------------------------------------------------------------------------------


def nll_reference(logp, target, weight=None, ignore_index=-100, reduction="mean",
                  smoothing=0.0):
    """PyTorch's nll_loss / cross_entropy (with label smoothing) on (N, C), transcribed."""
    n, c = logp.shape
    w = np.ones(c) if weight is None else weight
    keep = target != ignore_index
    safe = np.where(keep, target, 0)
    picked = w[safe] * keep
    nll = -logp[np.arange(n), safe] * picked
    smooth = -(logp * w).sum(1) * keep
    loss = (1 - smoothing) * nll + smoothing / c * smooth
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / picked.sum()


def log_softmax(x, axis=1):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


LOGITS = np.random.default_rng(1).standard_normal((6, 4))
LABELS = np.array([0, 3, -100, 2, 2, 1])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight, ignore_index, smoothing", [
    (None, -100, 0.0), (np.array([1.0, 2.0, 0.5, 3.0]), -100, 0.0), (None, 2, 0.0),
    (None, -100, 0.3), (np.array([1.0, 2.0, 0.5, 3.0]), 0, 0.1)])
def test_cross_entropy_and_nll_match_pytorchs_formula(weight, ignore_index, smoothing,
                                                      reduction):
    labels = LABELS if ignore_index == -100 else np.where(LABELS < 0, 1, LABELS)
    expected = nll_reference(log_softmax(LOGITS), labels, weight, ignore_index, reduction,
                             smoothing)
    got = F.cross_entropy(LOGITS, labels, weight=weight, ignore_index=ignore_index,
                          reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(host(got), expected, rtol=1e-13)
    if not smoothing:
        got = F.nll_loss(log_softmax(LOGITS), labels, weight, None, ignore_index,
                         reduction=reduction)
        np.testing.assert_allclose(host(got), expected, rtol=1e-13)


def test_cross_entropy_in_every_namespace_equals_the_op_and_has_the_right_gradient(
        xp, to_xp, check_array):
    labels = to_xp(np.array([0, 3, 2, 2]))
    got = F.cross_entropy(to_xp(LOGITS[:4]), labels)
    check_array(got, shape=(), dtype=xp.float64)
    np.testing.assert_allclose(host(got), host(npdeq.cross_entropy(to_xp(LOGITS[:4]), labels)),
                               rtol=1e-14)
    weight = np.array([1.0, 2.0, 0.5, 3.0])
    check_grads(lambda z: F.cross_entropy(z, LABELS, weight=weight, label_smoothing=0.2),
                LOGITS)


def test_spatial_and_unbatched_inputs():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))  # (N, C, H, W)
    t = np.random.default_rng(3).integers(0, 3, (2, 4, 5))
    t[0, 0, 0] = -100
    rows = np.moveaxis(x, 1, -1).reshape(-1, 3)
    flat = nll_reference(log_softmax(rows), t.reshape(-1), reduction="none")
    np.testing.assert_allclose(host(F.cross_entropy(x, t, reduction="none")),
                               flat.reshape(2, 4, 5), rtol=1e-13)
    np.testing.assert_allclose(host(F.cross_entropy(x, t)), flat.sum() / (flat.size - 1),
                               rtol=1e-13)
    one = F.cross_entropy(LOGITS[0], np.array(2))
    assert one.shape == ()
    np.testing.assert_allclose(host(one), -log_softmax(LOGITS[:1])[0, 2], rtol=1e-13)


def test_probability_targets():
    probs = np.abs(np.random.default_rng(4).standard_normal((6, 4)))
    probs /= probs.sum(1, keepdims=True)
    weight = np.array([1.0, 2.0, 0.5, 3.0])
    mixed = probs * 0.9 + 0.1 / 4
    expected = -(log_softmax(LOGITS) * mixed * weight).sum(1)
    got = F.cross_entropy(LOGITS, probs, weight=weight, label_smoothing=0.1, reduction="none")
    np.testing.assert_allclose(host(got), expected, rtol=1e-13)
    np.testing.assert_allclose(host(F.cross_entropy(LOGITS, probs, weight=weight,
                                                    label_smoothing=0.1)),
                               expected.mean(), rtol=1e-13)


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.cross_entropy(LOGITS, np.full(6, -100)), ValueError, "nothing to average"),
    (lambda: F.nll_loss(LOGITS[:0], np.zeros(0, dtype=np.int64)), ValueError, "nothing"),
    (lambda: F.cross_entropy(LOGITS, LABELS, size_average=True), ValueError, "reduction="),
    (lambda: F.mse_loss(X, X, reduce=False), ValueError, "reduction="),
    (lambda: F.cross_entropy(LOGITS, np.array([0, 4, 1, 1, 1, 1])), ValueError, r"\[0, 4\)"),
    (lambda: F.cross_entropy(LOGITS, LABELS[:5]), ValueError, r"shape \(6,\)"),
    (lambda: F.cross_entropy(LOGITS, LABELS, weight=np.ones(3)), ValueError, r"\(4,\)"),
    (lambda: F.cross_entropy(LOGITS, LABELS, reduction="avg"), ValueError, "reduction"),
    (lambda: F.cross_entropy(LOGITS, LABELS, label_smoothing=1.5), ValueError, "smoothing"),
    (lambda: F.cross_entropy(LOGITS, np.ones((6, 3))), ValueError, "input's shape"),
    (lambda: F.cross_entropy(LOGITS, np.ones((6, 4)), ignore_index=0), ValueError,
     "ignore_index"),
    (lambda: F.nll_loss(LOGITS, LABELS.astype(bool)), TypeError, "integer"),
])
def test_loss_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_regression_losses(xp, to_xp, check_array):
    a, b = X, X[::-1] * 0.5
    for fn, per in ((F.mse_loss, (a - b) ** 2), (F.l1_loss, np.abs(a - b))):
        got = fn(to_xp(a), to_xp(b), reduction="none")
        check_array(got, shape=a.shape, dtype=xp.float64)
        np.testing.assert_allclose(host(got), per, rtol=1e-14)
        np.testing.assert_allclose(host(fn(to_xp(a), to_xp(b))), per.mean(), rtol=1e-14)
        np.testing.assert_allclose(host(fn(to_xp(a), to_xp(b), None, None, "sum")), per.sum(),
                                   rtol=1e-14)
    with pytest.raises(ValueError, match="shape"):
        F.l1_loss(X, X[0])
