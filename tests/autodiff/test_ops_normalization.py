"""group_norm and layer_norm: NumPy references, finite differences of order 1 and 2, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.testing import check_grads


def group_norm_reference(x, groups, weight, bias, eps):
    grouped = x.reshape(x.shape[0], groups, -1)
    mu = grouped.mean(axis=2, keepdims=True)
    var = grouped.var(axis=2, keepdims=True)  # biased, as PyTorch
    y = ((grouped - mu) / np.sqrt(var + eps)).reshape(x.shape)
    affine = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(affine)
    if bias is not None:
        y = y + bias.reshape(affine)
    return y


def layer_norm_reference(x, shape, weight, bias, eps):
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


@st.composite
def group_cases(draw):
    groups = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), groups * draw(st.integers(1, 2)),
             *draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    return {"shape": shape, "groups": groups, "affine": draw(st.booleans()),
            "seed": draw(st.integers(0, 2 ** 16)), "scale": draw(st.floats(0.1, 10.0))}


@st.composite
def layer_cases(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    norm = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    # Normalising one element gives a zero variance: the derivative exists but is tiny.
    return {"lead": lead, "norm": norm, "affine": draw(st.booleans()),
            "seed": draw(st.integers(0, 2 ** 16)), "scale": draw(st.floats(0.1, 10.0))}


def _arrays(rng, shape, param_shape, affine, scale):
    x = scale * rng.standard_normal(shape) + rng.standard_normal()
    if not affine:
        return x, None, None
    return x, rng.standard_normal(param_shape), rng.standard_normal(param_shape)


def _present(*arrays):
    return [a for a in arrays if a is not None]


@given(case=group_cases())
def test_group_norm_matches_reference_and_finite_differences(xp, to_xp, check_array, case):
    rng = np.random.default_rng(case["seed"])
    c, groups = case["shape"][1], case["groups"]
    x, w, b = _arrays(rng, case["shape"], (c,), case["affine"], case["scale"])
    out = npdeq.group_norm(to_xp(x), groups, *[to_xp(a) for a in _present(w, b)])
    check_array(out, shape=x.shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), group_norm_reference(x, groups, w, b, 1e-5),
                               rtol=1e-10, atol=1e-12)
    check_grads(lambda a, *p: npdeq.group_norm(a, groups, *p), to_xp(x),
                *[to_xp(a) for a in _present(w, b)], order=2, rtol=1e-4, atol=1e-6,
                seed=case["seed"])


@given(case=layer_cases())
def test_layer_norm_matches_reference_and_finite_differences(xp, to_xp, check_array, case):
    rng = np.random.default_rng(case["seed"])
    norm = case["norm"]
    x, w, b = _arrays(rng, case["lead"] + norm, norm, case["affine"], case["scale"])
    out = npdeq.layer_norm(to_xp(x), norm, *[to_xp(a) for a in _present(w, b)])
    check_array(out, shape=x.shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), layer_norm_reference(x, norm, w, b, 1e-5),
                               rtol=1e-10, atol=1e-12)
    check_grads(lambda a, *p: npdeq.layer_norm(a, norm, *p), to_xp(x),
                *[to_xp(a) for a in _present(w, b)], order=2, rtol=1e-4, atol=1e-6,
                seed=case["seed"])


def test_norms_standardise(xp, to_xp, check_array):
    x = to_xp(np.random.default_rng(0).standard_normal((3, 4, 5)) * 7.0 + 2.0)
    for y in (npdeq.group_norm(x, 2, eps=0.0), npdeq.layer_norm(x, (4, 5), eps=0.0),
              npdeq.layer_norm(x, 5, eps=0.0)):
        check_array(y, shape=(3, 4, 5), dtype=xp.float64)
    y = npdeq.group_norm(x, 2, eps=0.0).numpy().reshape(3, 2, -1)
    np.testing.assert_allclose(y.mean(axis=2), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=2), 1.0, rtol=1e-12)
    y = npdeq.layer_norm(x, 5, eps=0.0).numpy()
    np.testing.assert_allclose(y.std(axis=-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda x, p: npdeq.group_norm(x, 3), r"num_groups=3 must be a positive divisor of the 4 "
                                          r"channels of input shape \(2, 4, 5\)"),
    (lambda x, p: npdeq.group_norm(x, 0), "num_groups=0"),
    (lambda x, p: npdeq.group_norm(x[0, 0, :], 1), r"shape \(B, C, \*\), got shape \(5,\)"),
    (lambda x, p: npdeq.group_norm(x, 2, p), r"weight must have shape \(4,\), got shape \(5,\)"),
    (lambda x, p: npdeq.group_norm(x, 2, None, p), r"bias must have shape \(4,\)"),
    (lambda x, p: npdeq.layer_norm(x, 4), r"normalized_shape \(4,\).*\(2, 4, 5\)"),
    (lambda x, p: npdeq.layer_norm(x, (2, 2, 4, 5)), "trailing"),
    (lambda x, p: npdeq.layer_norm(x, (4, 5), p), r"weight must have shape \(4, 5\)"),
])
def test_bad_arguments_are_refused(xp, to_xp, call, match):
    x = npdeq.Tensor(to_xp(np.ones((2, 4, 5))))
    with pytest.raises(ValueError, match=match):
        call(x, to_xp(np.ones(5)))


# --- the fused group_norm primitive against the composite it replaced ------------------------


@pytest.mark.parametrize("wanted", [(0, 1, 2), (0,), (1,), (2,), (1, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_rule_matches_the_composite(xp, to_xp, check_array, wanted, affine):
    """Values and first-order cotangents (the fused rule) equal the composite's to rounding,
    for every subset of arguments that need a gradient; the recorded second order (through
    the composite) too."""
    if not affine and wanted != (0,):
        pytest.skip("no weight or bias")
    from npdeq.autodiff.ops.normalization import _composite_group_norm

    rng = np.random.default_rng(7)
    x0, w0, b0 = 3.0 * rng.standard_normal((3, 6, 4, 5)) + 2.0, *rng.standard_normal((2, 6))
    g0, probe = rng.standard_normal((2, 3, 6, 4, 5))
    results = []
    for f in (npdeq.group_norm, lambda a, n, w, b: _composite_group_norm(a, w, b, n, 1e-5)):
        args = [npdeq.Tensor(to_xp(a), requires_grad=i in wanted)
                for i, a in enumerate((x0, w0, b0) if affine else (x0,))]
        out = f(args[0], 3, *(args[1:] if affine else (None, None)))
        first = npdeq.grad(out, [args[i] for i in wanted], grad_outputs=to_xp(g0),
                           retain_graph=True)
        leaves = [args[i] for i in wanted]
        recorded = npdeq.grad(out, leaves, grad_outputs=to_xp(g0), create_graph=True)
        probes = [npdeq.Tensor(to_xp(probe.reshape(-1)[:a.size].reshape(a.shape)))
                  for a in recorded]
        terms = [(r * p).sum() for r, p in zip(recorded, probes)]
        total = sum(terms[1:], terms[0])
        # Only x's cotangent depends on the arguments again (weight and bias enter linearly).
        second = npdeq.grad(total, leaves, allow_unused=True) if 0 in wanted else ()
        results.append([out, *first, *(s for s in second if s is not None)])
    for got, want in zip(*results):
        check_array(got, shape=tuple(want.shape), dtype=xp.float64)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-11, atol=1e-12)


def test_group_norm_float32_stays_float32_and_accurate_far_from_zero(xp, to_xp, check_array):
    """A large common offset (mean 1e3 against a spread of 1) costs no accuracy beyond
    float32 rounding: the statistics and the rule work on ``x - mean``."""
    rng = np.random.default_rng(3)
    x0 = (1e3 + rng.standard_normal((4, 8, 6, 6))).astype(np.float32)
    w0, b0 = rng.standard_normal((2, 8)).astype(np.float32)
    g0 = rng.standard_normal(x0.shape).astype(np.float32)
    args = [npdeq.Tensor(to_xp(a), requires_grad=True) for a in (x0, w0, b0)]
    out = npdeq.group_norm(args[0], 4, args[1], args[2])
    grads = npdeq.grad(out, args, grad_outputs=to_xp(g0))
    wide = [npdeq.Tensor(a.astype(np.float64), requires_grad=True) for a in (x0, w0, b0)]
    want = npdeq.grad(npdeq.group_norm(wide[0], 4, wide[1], wide[2]), wide,
                      grad_outputs=g0.astype(np.float64))
    check_array(out, shape=x0.shape, dtype=xp.float32)
    np.testing.assert_allclose(
        out.numpy(), npdeq.group_norm(wide[0], 4, wide[1], wide[2]).numpy(), atol=2e-3)
    for got, ref in zip(grads, want):
        check_array(got, shape=tuple(ref.shape), dtype=xp.float32)
        scale = np.abs(ref.numpy()).max()
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=2e-3 * scale)


def test_group_norm_leaves_its_inputs_unchanged(xp, to_xp):
    rng = np.random.default_rng(4)
    arrays = [to_xp(a) for a in (rng.standard_normal((2, 4, 3)), *rng.standard_normal((2, 4)),
                                 rng.standard_normal((2, 4, 3)))]
    kept = [npdeq.backend.to_numpy(a).copy() for a in arrays]
    x, w, b = (npdeq.Tensor(a, requires_grad=True) for a in arrays[:3])
    npdeq.grad(npdeq.group_norm(x, 2, w, b), [x, w, b], grad_outputs=arrays[3])
    for a, before in zip(arrays, kept):
        np.testing.assert_array_equal(npdeq.backend.to_numpy(a), before)
