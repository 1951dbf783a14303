"""cross_entropy and mse_loss: SciPy/NumPy references, HIPS autograd, finite differences of
order 1 and 2, label and shape checking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given, strategies as st

import npdeq
from npdeq.testing import check_grads

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def reduce_loss(per_item, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](per_item)


def cross_entropy_reference(logits, labels, reduction):
    logp = scipy.special.log_softmax(logits, axis=1)
    return reduce_loss(-logp[np.arange(len(labels)), labels], reduction)


@st.composite
def ce_cases(draw):
    batch, classes = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    return {"batch": batch, "classes": classes, "reduction": draw(REDUCTIONS),
            "labels": draw(st.lists(st.integers(0, classes - 1), min_size=batch,
                                    max_size=batch)),
            "seed": draw(st.integers(0, 2 ** 16)), "scale": draw(st.floats(0.1, 20.0))}


@given(case=ce_cases())
def test_cross_entropy_matches_reference_and_finite_differences(xp, to_xp, check_array, case):
    rng = np.random.default_rng(case["seed"])
    logits = case["scale"] * rng.standard_normal((case["batch"], case["classes"]))
    labels = np.array(case["labels"], dtype=np.int64)
    reduction = case["reduction"]
    out = npdeq.cross_entropy(to_xp(logits), to_xp(labels), reduction=reduction)
    expected = cross_entropy_reference(logits, labels, reduction)
    check_array(out, shape=np.shape(expected), dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    target = to_xp(labels)
    check_grads(lambda a: npdeq.cross_entropy(a, target, reduction=reduction), to_xp(logits),
                order=2, rtol=1e-5, atol=1e-6, seed=case["seed"])


def test_cross_entropy_gradient_matches_autograd(xp, to_xp, check_array):
    ag = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    ag_special = pytest.importorskip("autograd.scipy.special")
    rng = np.random.default_rng(2)
    logits0, labels0 = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])

    def ag_loss(z):
        logp = z - ag_special.logsumexp(z, axis=1, keepdims=True)
        return -anp.mean(anp.sum(logp * np.eye(4)[labels0], axis=1))

    z = npdeq.Tensor(to_xp(logits0), requires_grad=True)
    (g,) = npdeq.grad(npdeq.cross_entropy(z, to_xp(labels0)), [z])
    check_array(g, shape=(5, 4), dtype=xp.float64)
    np.testing.assert_allclose(g.numpy(), ag.grad(ag_loss)(logits0), rtol=1e-12, atol=1e-14)
    # The closed form: (softmax - onehot) / B.
    expected = (scipy.special.softmax(logits0, axis=1) - np.eye(4)[labels0]) / 5
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_cross_entropy_is_stable_for_huge_logits(xp, to_xp):
    logits = to_xp(np.array([[1000.0, -1000.0], [0.0, 800.0]]))
    out = npdeq.cross_entropy(logits, to_xp(np.array([1, 0])), reduction="none").numpy()
    np.testing.assert_allclose(out, [2000.0, 800.0], rtol=1e-12)


@pytest.mark.parametrize("labels, error, match", [
    (np.array([0, 4]), ValueError, r"labels must lie in \[0, 4\), got values from 0 to 4"),
    (np.array([-1, 2]), ValueError, r"got values from -1 to 2"),
    (np.array([0.0, 1.0]), TypeError, "integer class indices, got dtype .*float64"),
    (np.array([0, 1, 2]), ValueError, r"target must have shape \(2,\) for logits of shape "
                                      r"\(2, 4\), got \(3,\)"),
    (np.array([[0], [1]]), ValueError, r"target must have shape \(2,\)"),
])
def test_cross_entropy_rejects_bad_labels(xp, to_xp, labels, error, match):
    with pytest.raises(error, match=match):
        npdeq.cross_entropy(to_xp(np.zeros((2, 4))), to_xp(labels))


def test_cross_entropy_rejects_bad_logits_and_reduction(xp, to_xp):
    with pytest.raises(ValueError, match=r"logits must have shape \(B, C\), got shape \(4,\)"):
        npdeq.cross_entropy(to_xp(np.zeros(4)), to_xp(np.array([0])))
    with pytest.raises(ValueError, match=r"reduction='avg' is not one of"):
        npdeq.cross_entropy(to_xp(np.zeros((1, 4))), to_xp(np.array([0])), reduction="avg")


@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
       reduction=REDUCTIONS, seed=st.integers(0, 2 ** 16))
def test_mse_loss_matches_reference_and_finite_differences(xp, to_xp, check_array, shape,
                                                           reduction, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    out = npdeq.mse_loss(to_xp(a), to_xp(b), reduction=reduction)
    expected = reduce_loss((a - b) ** 2, reduction)
    check_array(out, shape=np.shape(expected), dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-14)
    # Gradients flow to both the input and the target.
    check_grads(lambda p, q: npdeq.mse_loss(p, q, reduction=reduction), to_xp(a), to_xp(b),
                order=2, seed=seed)


def test_mse_loss_rejects_bad_arguments(xp, to_xp):
    with pytest.raises(ValueError, match=r"input shape \(3,\) and target shape \(1,\) differ"):
        npdeq.mse_loss(to_xp(np.zeros(3)), to_xp(np.zeros(1)))
    with pytest.raises(ValueError, match="reduction='max' is not one of"):
        npdeq.mse_loss(to_xp(np.zeros(3)), to_xp(np.zeros(3)), reduction="max")


def test_mean_of_an_empty_batch_is_an_error_and_sum_is_zero(xp, to_xp, check_array):
    logits, labels = to_xp(np.zeros((0, 3))), to_xp(np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: reduction='mean' of an empty batch"):
        npdeq.cross_entropy(logits, labels)
    check_array(npdeq.cross_entropy(logits, labels, reduction="sum"), (), xp.float64)
    assert npdeq.cross_entropy(logits, labels, reduction="sum").item() == 0.0
    check_array(npdeq.cross_entropy(logits, labels, reduction="none"), (0,), xp.float64)
    empty = to_xp(np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"mse_loss: reduction='mean' of an empty batch"):
        npdeq.mse_loss(empty, empty)
    assert npdeq.mse_loss(empty, empty, reduction="sum").item() == 0.0
