"""conv1d, conv2d and avg_pool2d (and their window primitives): explicit-loop references, the
windows-and-matmul composite conv2d used to be (values and derivatives of order 1 and 2), HIPS
autograd, finite differences of order 1 and 2, the three convolution primitives' rules, fresh
results, argument checking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import npdeq
from npdeq.autodiff.ops.conv import (_conv2d, _conv2d_input_grad, _conv2d_weight_grad, _fold,
                                     image_windows)
from npdeq.autodiff.ops.linalg import matmul
from npdeq.autodiff.ops.shape import pad, reshape
from npdeq.testing import check_grads


def reference_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """The composite conv2d was before it ran on 2-D products, kept as the oracle: sliding
    windows of the padded input and one batched matmul (groups as a batch axis). ``padding``
    is ``((top, bottom), (left, right))``."""
    b = x.shape[0]
    c_out, c_group, kh, kw = weight.shape
    (pt, pb), (pl, pr) = padding
    if pt or pb or pl or pr:
        x = pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    cols = image_windows(x, (kh, kw), stride, dilation)
    ho, wo = cols.shape[4], cols.shape[5]
    k = c_group * kh * kw
    cols = reshape(cols, (b, groups, k, ho * wo))
    w = reshape(weight, (1, groups, c_out // groups, k))
    out = reshape(matmul(w, cols), (b, c_out, ho, wo))
    if bias is not None:
        out = out + reshape(bias, (1, c_out, 1, 1))
    return out


def conv2d_reference(x, w, b, stride, padding, dilation, groups):
    """Direct loop over output positions and channels (PyTorch semantics)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    batch, _, _, _ = x.shape
    c_out, c_group, kh, kw = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (xpad.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xpad.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((batch, c_out, ho, wo))
    for o in range(c_out):
        g = o // (c_out // groups)
        for i in range(ho):
            for j in range(wo):
                patch = xpad[:, g * c_group:(g + 1) * c_group,
                             i * sh:i * sh + dh * (kh - 1) + 1:dh,
                             j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, o, i, j] = np.sum(patch * w[o], axis=(1, 2, 3))
    return out if b is None else out + b[None, :, None, None]


def avg_pool_reference(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (xpad.shape[2] - kh) // sh + 1
    wo = (xpad.shape[3] - kw) // sw + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = xpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].mean(axis=(2, 3))
    return out


pairs = st.tuples


@st.composite
def conv_cases(draw):
    """Small shapes with every option; the kernel always fits the padded input."""
    groups = draw(st.integers(1, 2))
    case = {
        "batch": draw(st.integers(1, 2)), "groups": groups,
        "c_in": groups * draw(st.integers(1, 2)), "c_out": groups * draw(st.integers(1, 2)),
        "size": draw(pairs(st.integers(1, 6), st.integers(1, 6))),
        "kernel": draw(pairs(st.integers(1, 3), st.integers(1, 3))),
        "stride": draw(pairs(st.integers(1, 2), st.integers(1, 2))),
        "padding": draw(pairs(st.integers(0, 2), st.integers(0, 2))),
        "dilation": draw(pairs(st.integers(1, 2), st.integers(1, 2))),
        "bias": draw(st.booleans()), "seed": draw(st.integers(0, 2 ** 16)),
    }
    for n, k, p, d in zip(case["size"], case["kernel"], case["padding"], case["dilation"]):
        assume(n + 2 * p >= d * (k - 1) + 1)
    return case


def _conv_arrays(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["batch"], case["c_in"]) + case["size"])
    w = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["kernel"])
    b = rng.standard_normal(case["c_out"]) if case["bias"] else None
    return x, w, b


def _conv_kwargs(case):
    return {k: case[k] for k in ("stride", "padding", "dilation", "groups")}


@given(case=conv_cases())
def test_conv2d_matches_loop_reference(xp, to_xp, check_array, case):
    x, w, b = _conv_arrays(case)
    expected = conv2d_reference(x, w, b, case["stride"], case["padding"], case["dilation"],
                                case["groups"])
    out = npdeq.conv2d(to_xp(x), to_xp(w), None if b is None else to_xp(b),
                       **_conv_kwargs(case))
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@given(case=conv_cases())
def test_conv2d_vjp_matches_finite_differences(xp, to_xp, case):
    x, w, b = _conv_arrays(case)
    kwargs = _conv_kwargs(case)
    args = [to_xp(x), to_xp(w)] + ([] if b is None else [to_xp(b)])
    check_grads(lambda *a: npdeq.conv2d(*a, **kwargs), *args, order=2, rtol=1e-5, atol=1e-6,
                seed=case["seed"])


def test_conv2d_gradients_match_autograd(xp, to_xp, check_array):
    ag = pytest.importorskip("autograd")
    from autograd.scipy.signal import convolve

    rng = np.random.default_rng(3)
    x0, w0, g0 = (rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)),
                  rng.standard_normal((2, 4, 4, 4)))

    def ag_loss(x, w):
        # autograd convolves (flipped kernel); conv2d cross-correlates.
        out = convolve(x, w[:, :, ::-1, ::-1], axes=([2, 3], [2, 3]), dot_axes=([1], [1]),
                       mode="valid")
        return ag.numpy.sum(out * g0)

    x = npdeq.Tensor(to_xp(x0), requires_grad=True)
    w = npdeq.Tensor(to_xp(w0), requires_grad=True)
    gx, gw = npdeq.grad((npdeq.conv2d(x, w) * npdeq.Tensor(to_xp(g0))).sum(), [x, w])
    check_array(gx, shape=x0.shape, dtype=xp.float64)
    check_array(gw, shape=w0.shape, dtype=xp.float64)
    np.testing.assert_allclose(gx.numpy(), ag.grad(ag_loss, 0)(x0, w0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw.numpy(), ag.grad(ag_loss, 1)(x0, w0), rtol=1e-12, atol=1e-12)


@given(size=pairs(st.integers(1, 6), st.integers(1, 6)),
       kernel=pairs(st.integers(1, 3), st.integers(1, 3)),
       stride=st.none() | pairs(st.integers(1, 3), st.integers(1, 3)),
       padding=pairs(st.integers(0, 1), st.integers(0, 1)), seed=st.integers(0, 2 ** 16))
def test_avg_pool2d_matches_reference_and_finite_differences(xp, to_xp, check_array, size,
                                                             kernel, stride, padding, seed):
    padding = tuple(min(p, k // 2) for p, k in zip(padding, kernel))
    assume(all(n + 2 * p >= k for n, p, k in zip(size, padding, kernel)))
    x = np.random.default_rng(seed).standard_normal((2, 2) + size)
    expected = avg_pool_reference(x, kernel, kernel if stride is None else stride, padding)
    out = npdeq.avg_pool2d(to_xp(x), kernel, stride, padding)
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    check_grads(lambda a: npdeq.avg_pool2d(a, kernel, stride, padding), to_xp(x), order=2,
                seed=seed)


@given(size=pairs(st.integers(1, 5), st.integers(1, 5)),
       kernel=pairs(st.integers(1, 3), st.integers(1, 3)),
       stride=pairs(st.integers(1, 2), st.integers(1, 2)),
       dilation=pairs(st.integers(1, 2), st.integers(1, 2)), seed=st.integers(0, 2 ** 16))
def test_window_primitives_are_adjoint_with_matching_vjps(xp, to_xp, check_array, size, kernel,
                                                         stride, dilation, seed):
    assume(all(n >= d * (k - 1) + 1 for n, k, d in zip(size, kernel, dilation)))
    rng = np.random.default_rng(seed)
    x = to_xp(rng.standard_normal((1, 2) + size))
    cols = image_windows(x, kernel, stride, dilation)
    check_array(cols, shape=(1, 2) + kernel + tuple(cols.shape[4:]), dtype=xp.float64)
    c = to_xp(rng.standard_normal(cols.shape))
    folded = _fold(c, tuple(x.shape), stride, dilation)
    check_array(folded, shape=x.shape, dtype=xp.float64)
    # <windows(x), c> == <x, fold(c)>: fold is the adjoint of windows.
    lhs = np.sum(cols.numpy() * npdeq.backend.to_numpy(c))
    assert lhs == pytest.approx(np.sum(npdeq.backend.to_numpy(x) * folded.numpy()), rel=1e-12,
                                abs=1e-12)
    check_grads(lambda a: image_windows(a, kernel, stride, dilation), x, order=2, seed=seed)
    check_grads(lambda a: _fold(a, tuple(x.shape), stride, dilation), c, order=2, seed=seed)


def test_same_and_valid_padding(xp, to_xp, check_array):
    rng = np.random.default_rng(0)
    x0, w0 = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, 2, 3))
    same = npdeq.conv2d(to_xp(x0), to_xp(w0), padding="same", dilation=(1, 2))
    check_array(same, shape=(1, 3, 5, 6), dtype=xp.float64)
    # Total padding d*(k-1) = (1, 4): the odd one puts its extra row after, as PyTorch does.
    xpad = np.pad(x0, ((0, 0), (0, 0), (0, 1), (2, 2)))
    expected = conv2d_reference(xpad, w0, None, (1, 1), (0, 0), (1, 2), 1)
    np.testing.assert_allclose(same.numpy(), expected, rtol=1e-12, atol=1e-12)
    valid = npdeq.conv2d(to_xp(x0), to_xp(w0), padding="valid")
    np.testing.assert_allclose(valid.numpy(), npdeq.conv2d(to_xp(x0), to_xp(w0)).numpy())


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((1, 3, 5, 5), (2, 2, 3, 3), {}, r"\(1, 3, 5, 5\) has 3 channels.*\(2, 2, 3, 3\)"),
    ((1, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, r"groups=2 must divide.*3"),
    ((1, 4, 5, 5), (2, 4, 3, 3), {"groups": 0}, "groups must be a positive int"),
    ((3, 5, 5), (2, 3, 3, 3), {}, r"input must have shape \(B, C, H, W\).*\(3, 5, 5\)"),
    ((1, 3, 5, 5), (2, 3, 3), {}, r"weight must have shape.*\(2, 3, 3\)"),
    ((1, 3, 2, 2), (2, 3, 3, 3), {}, r"kernel \(3, 3\).*does not fit.*\(1, 3, 2, 2\)"),
    ((1, 3, 5, 5), (2, 3, 3, 3), {"stride": 0}, "stride must be >= 1"),
    ((1, 3, 5, 5), (2, 3, 3, 3), {"padding": (1, 2, 3)}, "padding must be an int or a pair"),
    ((1, 3, 5, 5), (2, 3, 3, 3), {"padding": "full"}, "'valid' or 'same'"),
    ((1, 3, 5, 5), (2, 3, 3, 3), {"padding": "same", "stride": 2}, "needs stride 1"),
])
def test_conv2d_rejects_bad_arguments(xp, to_xp, x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        npdeq.conv2d(to_xp(np.zeros(x_shape)), to_xp(np.zeros(w_shape)), **kwargs)


def test_conv2d_rejects_bias_of_wrong_shape(xp, to_xp):
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\).*\(3,\)"):
        npdeq.conv2d(to_xp(np.zeros((1, 3, 5, 5))), to_xp(np.zeros((2, 3, 3, 3))),
                     to_xp(np.zeros(3)))


def test_avg_pool2d_rejects_bad_arguments(xp, to_xp):
    x = to_xp(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="at most half the kernel"):
        npdeq.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        npdeq.avg_pool2d(x, 0)
    with pytest.raises(ValueError, match="does not fit"):
        npdeq.avg_pool2d(x, 5)


# --- conv1d --------------------------------------------------------------------------------


@given(case=conv_cases())
def test_conv1d_matches_loop_reference_and_finite_differences(xp, to_xp, check_array, case):
    """conv1d against conv2d's loop reference on a unit height axis (one kernel row)."""
    x, w, b = _conv_arrays(case)
    x, w = x[:, :, 0], w[:, :, 0]
    s, p, d = case["stride"][1], case["padding"][1], case["dilation"][1]
    assume(x.shape[2] + 2 * p >= d * (w.shape[2] - 1) + 1)
    expected = conv2d_reference(x[:, :, None], w[:, :, None], b, (1, s), (0, p), (1, d),
                                case["groups"])[:, :, 0]
    kwargs = {"stride": s, "padding": (p,), "dilation": d, "groups": case["groups"]}
    args = [to_xp(x), to_xp(w)] + ([] if b is None else [to_xp(b)])
    out = npdeq.conv1d(*args, **kwargs)
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    check_grads(lambda *a: npdeq.conv1d(*a, **kwargs), *args, order=2, rtol=1e-5, atol=1e-6,
                seed=case["seed"])


def test_conv1d_same_padding_pads_the_odd_extra_after(xp, to_xp, check_array):
    rng = np.random.default_rng(1)
    x0, w0 = rng.standard_normal((2, 2, 7)), rng.standard_normal((3, 2, 4))
    same = npdeq.conv1d(to_xp(x0), to_xp(w0), padding="same")
    check_array(same, shape=(2, 3, 7), dtype=xp.float64)
    xpad = np.pad(x0, ((0, 0), (0, 0), (1, 2)))
    expected = conv2d_reference(xpad[:, :, None], w0[:, :, None], None, (1, 1), (0, 0), (1, 1),
                                1)[:, :, 0]
    np.testing.assert_allclose(same.numpy(), expected, rtol=1e-12, atol=1e-12)
    valid = npdeq.conv1d(to_xp(x0), to_xp(w0), padding="valid")
    np.testing.assert_allclose(valid.numpy(), npdeq.conv1d(to_xp(x0), to_xp(w0)).numpy())


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((1, 3, 5), (2, 2, 3), {}, r"conv1d: input shape \(1, 3, 5\) has 3 channels.*\(2, 2, 3\)"),
    ((1, 4, 5), (3, 2, 3), {"groups": 2}, r"conv1d: groups=2 must divide.*3"),
    ((1, 3, 5, 5), (2, 3, 3), {}, r"input must have shape \(B, C, L\).*\(1, 3, 5, 5\)"),
    ((1, 3, 5), (2, 3, 3, 3), {}, r"weight must have shape \(C_out, C_in // groups, k\)"),
    ((1, 3, 2), (2, 3, 3), {}, r"kernel size 3 with dilation 1 does not fit.*\(1, 3, 2\)"),
    ((1, 3, 5), (2, 3, 3), {"stride": 0}, "conv1d: stride must be >= 1"),
    ((1, 3, 5), (2, 3, 3), {"padding": (1, 1)}, "padding must be an int or a 1-tuple"),
    ((1, 3, 5), (2, 3, 3), {"padding": "full"}, "'valid' or 'same'"),
    ((1, 3, 5), (2, 3, 3), {"padding": "same", "stride": 2}, "needs stride 1, got stride 2"),
    ((1, 3, 5), (2, 3, 3), {"dilation": 1.5}, "dilation must be an int"),
])
def test_conv1d_rejects_bad_arguments(xp, to_xp, x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        npdeq.conv1d(to_xp(np.zeros(x_shape)), to_xp(np.zeros(w_shape)), **kwargs)


# --- against the former implementation, the primitives' rules, fresh results --------------


@st.composite
def oracle_cases(draw):
    """conv_cases, 1-D (a unit height axis) or 2-D, padding possibly uneven ('same')."""
    case = draw(conv_cases())
    case["one_d"] = draw(st.booleans())
    if case["one_d"]:
        case.update(size=(1, case["size"][1]), kernel=(1, case["kernel"][1]),
                    stride=(1, case["stride"][1]), dilation=(1, case["dilation"][1]),
                    padding=(0, case["padding"][1]))
    case["same"] = draw(st.booleans()) and case["stride"] == (1, 1)
    return case


def _both_convs(case):
    """``(new, reference)`` functions of ``(x, w[, b])`` Tensors for ``case``."""
    kernel, dilation = case["kernel"], case["dilation"]
    if case["same"]:
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        pads = tuple((t // 2, t - t // 2) for t in totals)
        padding = "same"
    else:
        pads = tuple((p, p) for p in case["padding"])
        padding = case["padding"][1] if case["one_d"] else case["padding"]
    options = dict(stride=case["stride"], dilation=dilation, groups=case["groups"])

    def new(x, w, b=None):
        if case["one_d"]:
            one = {k: v[1] if isinstance(v, tuple) else v for k, v in options.items()}
            out = npdeq.conv1d(x[:, :, 0], w[:, :, 0], b, padding=padding, **one)
            return reshape(out, (out.shape[0], out.shape[1], 1, out.shape[2]))
        return npdeq.conv2d(x, w, b, padding=padding, **options)

    def old(x, w, b=None):
        return reference_conv2d(x, w, b, case["stride"], pads, dilation, case["groups"])

    return new, old


@given(case=oracle_cases())
def test_conv_matches_former_implementation_to_second_order(xp, to_xp, check_array, case):
    """Values, VJPs and second derivatives (through create_graph) equal the windows-and-matmul
    composite's to rounding, for 1-D and 2-D, stride, padding, dilation, groups, bias."""
    x, w, b = _conv_arrays(case)
    rng = np.random.default_rng(case["seed"] + 1)
    new, old = _both_convs(case)
    results = []
    for conv in (new, old):
        leaves = [npdeq.Tensor(to_xp(a), requires_grad=True) for a in (x, w, b) if a is not None]
        out = conv(*leaves)
        cot = to_xp(np.random.default_rng(case["seed"]).standard_normal(out.shape))
        grads = npdeq.grad((out * npdeq.Tensor(cot)).sum(), leaves, create_graph=True)
        probe = sum(((g * npdeq.Tensor(to_xp(rng.standard_normal(g.shape)))).sum()
                     for g in grads[:2]), npdeq.Tensor(to_xp(np.zeros(()))))
        second = npdeq.grad(probe, leaves[:2])
        rng = np.random.default_rng(case["seed"] + 1)  # the same probe for both
        results.append([out, *grads, *second])
    for got, want in zip(*results):
        check_array(got, shape=tuple(want.shape), dtype=xp.float64)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    ((1, 1), ((1, 1), (0, 1)), (1, 1), 1),
    ((2, 1), ((0, 0), (2, 1)), (1, 2), 2),
])
def test_conv_primitives_are_adjoint_with_rules_of_every_order(xp, to_xp, stride, padding,
                                                               dilation, groups):
    """<conv(x, w), g> = <x, input_grad(g, w)> = <w, weight_grad(x, g)>, and the VJP rules of
    the two gradient primitives (conv2d's third derivatives) against finite differences."""
    rng = np.random.default_rng(5)
    x0, w0 = rng.standard_normal((2, 4, 5, 4)), rng.standard_normal((2, 4 // groups, 2, 3))
    geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x, w = to_xp(x0), to_xp(w0)
    y = _conv2d(x, w, **geo)
    g = to_xp(rng.standard_normal(y.shape))
    gx = _conv2d_input_grad(g, w, image_shape=x0.shape, **geo)
    gw = _conv2d_weight_grad(x, g, weight_shape=w0.shape, **geo)
    lhs = np.sum(y.numpy() * npdeq.backend.to_numpy(g))
    assert lhs == pytest.approx(np.sum(x0 * gx.numpy()), rel=1e-12)
    assert lhs == pytest.approx(np.sum(w0 * gw.numpy()), rel=1e-12)
    check_grads(lambda a, b: _conv2d_input_grad(a, b, image_shape=x0.shape, **geo), g, w,
                order=2, seed=1)
    check_grads(lambda a, b: _conv2d_weight_grad(a, b, weight_shape=w0.shape, **geo), x, g,
                order=2, seed=2)


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((2, 3, 6, 6), (4, 3, 3, 3), 1),
    ((1, 2, 4, 4), (1, 2, 1, 1), 0),  # one image, one channel out: results could be views
])
def test_conv_results_are_fresh_arrays_in_the_input_dtype(xp, to_xp, check_array, x_shape,
                                                         w_shape, padding):
    """Work buffers are reused across calls; a result never aliases one."""
    rng = np.random.default_rng(0)
    x0, w0 = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    x = npdeq.Tensor(to_xp(x0.astype(np.float32)), requires_grad=True)
    w = npdeq.Tensor(to_xp(w0.astype(np.float32)), requires_grad=True)
    out = npdeq.conv2d(x, w, padding=padding)
    gx, gw = npdeq.grad(out.sum(), [x, w])
    check_array(out, shape=tuple(out.shape), dtype=xp.float32)
    check_array(gx, shape=x_shape, dtype=xp.float32)
    check_array(gw, shape=w_shape, dtype=xp.float32)
    kept = [a.numpy().copy() for a in (out, gx, gw)]
    x2 = npdeq.Tensor(to_xp((2 * x0 + 1).astype(np.float32)), requires_grad=True)
    out2 = npdeq.conv2d(x2, w, padding=padding)
    npdeq.grad((out2 * out2).sum(), [x2, w])
    for a, before in zip((out, gx, gw), kept):
        np.testing.assert_array_equal(a.numpy(), before)
