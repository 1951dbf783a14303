"""The NumPy convolution kernels (one product per kernel row and image: npdeq.backend.conv_rows
at stride 1, conv_phases with strides) against the portable kernels they replaced on NumPy
(npdeq.backend.conv_grid, conv_im2col: still the paths of array_api_strict and CuPy):
forward, input VJP and weight VJP equal to rounding in float64, for every padding (also wider
than the kernel, where the stride-1 input VJP crops), stride, dilation, group count and 1-D
shape, whole batches or one image at a time; float32 stays float32; the dispatcher takes the
NumPy paths on NumPy only; the bias is added in the promoted dtype."""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from npdeq.backend import conv_grid, conv_im2col, conv_phases, conv_rows, convolution

pairs = st.tuples


@st.composite
def stride_one_cases(draw):
    groups = draw(st.integers(1, 3))
    one_d = draw(st.booleans())
    size = (1 if one_d else draw(st.integers(1, 6)), draw(st.integers(1, 7)))
    kernel = (1 if one_d else draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    dilation = (1 if one_d else draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    # Up to one more than the dilated kernel's extent on each side, uneven allowed.
    padding = tuple((draw(st.integers(0, d * (k - 1) + 1)), draw(st.integers(0, d * (k - 1) + 1)))
                    for k, d in zip(kernel, dilation))
    padding = ((0, 0), padding[1]) if one_d else padding
    for n, k, d, (before, after) in zip(size, kernel, dilation, padding):
        assume(n + before + after >= d * (k - 1) + 1)
    return dict(batch=draw(st.integers(1, 3)), c_in=groups * draw(st.integers(1, 3)),
                c_out=groups * draw(st.integers(1, 3)), groups=groups, size=size, kernel=kernel,
                dilation=dilation, padding=padding, seed=draw(st.integers(0, 2 ** 16)))


def _arrays(case, dtype=np.float64):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["batch"], case["c_in"]) + case["size"]).astype(dtype)
    w = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["kernel"])
    return x, w.astype(dtype)


def _case(size, kernel, dilation, padding, batch=2, groups=1):
    return dict(batch=batch, c_in=2 * groups, c_out=3 * groups, groups=groups, size=size,
                kernel=kernel, dilation=dilation, padding=padding, seed=sum(size) + batch)


# Output width equal to the input's (the flat-shift copies), shifts wider than a row, one
# image, one row, crops in the input VJP (padding past the kernel's extent).
EDGE_CASES = [
    _case((4, 3), (3, 3), (1, 2), ((1, 1), (0, 4))),
    _case((1, 3), (1, 3), (1, 2), ((0, 0), (0, 4))),
    _case((1, 5), (1, 3), (1, 3), ((0, 0), (6, 0))),
    _case((3, 4), (2, 3), (2, 1), ((2, 0), (1, 1)), batch=1),
    _case((2, 6), (1, 1), (1, 1), ((1, 2), (0, 0)), groups=2),
    _case((5, 5), (3, 1), (1, 1), ((3, 2), (1, 1))),
]


@pytest.mark.parametrize("block_bytes", [None, 1])
@pytest.mark.parametrize("case", EDGE_CASES)
def test_row_kernels_match_the_grid_kernels_at_the_edges(monkeypatch, case, block_bytes):
    """Also with the windows built one image at a time (the blocks a large batch uses)."""
    if block_bytes is not None:
        monkeypatch.setattr(conv_rows, "BLOCK_BYTES", block_bytes)
        case = dict(case, batch=3)
    test_row_kernels_match_the_grid_kernels.hypothesis.inner_test(case)


@given(case=stride_one_cases())
def test_row_kernels_match_the_grid_kernels(case):
    x, w = _arrays(case)
    geo = (case["padding"], case["dilation"], case["groups"])
    want = conv_grid.grid_forward(x, w, (1, 1), *geo)
    got = conv_rows.rows_forward(x, w, *geo)
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(case["seed"] + 1).standard_normal(want.shape)
    np.testing.assert_allclose(conv_rows.rows_input_grad(g, w, x.shape, *geo),
                               conv_grid.grid_input_grad(g, w, x.shape, (1, 1), *geo),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_rows.rows_weight_grad(x, g, w.shape, *geo),
                               conv_grid.grid_weight_grad(x, g, w.shape, (1, 1), *geo),
                               rtol=1e-12, atol=1e-12)


def test_row_kernels_keep_float32_and_return_fresh_arrays():
    case = dict(batch=2, c_in=4, c_out=6, groups=2, size=(5, 6), kernel=(3, 2), dilation=(1, 2),
                padding=((1, 2), (0, 3)), seed=3)
    x, w = _arrays(case, np.float32)
    geo = (case["padding"], case["dilation"], case["groups"])
    y = conv_rows.rows_forward(x, w, *geo)
    g = np.ones_like(y)
    gx = conv_rows.rows_input_grad(g, w, x.shape, *geo)
    gw = conv_rows.rows_weight_grad(x, g, w.shape, *geo)
    for got, want in ((y, conv_grid.grid_forward(x, w, (1, 1), *geo)),
                      (gx, conv_grid.grid_input_grad(g, w, x.shape, (1, 1), *geo)),
                      (gw, conv_grid.grid_weight_grad(x, g, w.shape, (1, 1), *geo))):
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    kept = [a.copy() for a in (y, gx, gw)]
    conv_rows.rows_forward(2 * x, w, *geo)  # the same work arrays again
    conv_rows.rows_input_grad(2 * g, w, x.shape, *geo)
    conv_rows.rows_weight_grad(2 * x, g, w.shape, *geo)
    for a, before in zip((y, gx, gw), kept):
        np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("name", ["forward", "input_grad", "weight_grad"])
def test_stride_one_dispatch_takes_the_row_path_on_numpy_only(monkeypatch, name):
    calls = []
    real = getattr(conv_rows, f"rows_{name}")
    monkeypatch.setattr(convolution, f"rows_{name}",
                        lambda *a: calls.append(name) or real(*a))
    x, w = np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3))
    g = np.ones((1, 3, 4, 4))
    geo = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    run = {"forward": lambda a, b, c: convolution.conv_forward(a, b, *geo),
           "input_grad": lambda a, b, c: convolution.conv_input_grad(c, b, a.shape, *geo),
           "weight_grad": lambda a, b, c: convolution.conv_weight_grad(a, c, b.shape, *geo)}[name]
    expected = run(x, w, g)
    assert calls == [name]
    strict = [array_api_strict.asarray(a) for a in (x, w, g)]
    got = run(*strict)
    assert calls == [name]  # array_api_strict stays on the portable grid path
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_bias_is_added_in_the_kernel_with_the_promoted_dtype(xp, to_xp, check_array,
                                                                    stride):
    """The bias goes into the convolution's own result (NumPy: block by block); the dtype is
    what ``x``, ``w`` and ``bias`` promote to, as the separate ``out + bias`` gave."""
    import npdeq

    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
    w0 = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b0 = rng.standard_normal(4)
    out = npdeq.conv2d(to_xp(x0), to_xp(w0), to_xp(b0), stride=stride, padding=1)
    want = npdeq.conv2d(x0.astype(np.float64), w0.astype(np.float64), stride=stride,
                        padding=1).numpy() + b0[None, :, None, None]
    check_array(out, shape=want.shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    b32 = to_xp(b0.astype(np.float32))
    check_array(npdeq.conv2d(to_xp(x0), to_xp(w0), b32, stride=stride, padding=1),
                shape=want.shape, dtype=xp.float32)


@st.composite
def strided_cases(draw):
    case = draw(stride_one_cases())
    stride = (1 if case["size"][0] == 1 else draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    assume(stride != (1, 1))
    return dict(case, stride=stride)


@given(case=strided_cases())
def test_phase_kernels_match_the_grid_and_im2col_kernels(case):
    x, w = _arrays(case)
    stride = case["stride"]
    geo = (case["padding"], case["dilation"], case["groups"])
    grid = conv_grid.geometry(x.shape, w.shape[2:], stride, case["dilation"], case["padding"])
    want = conv_grid.grid_forward(x, w, stride, *geo)
    got = conv_phases.phases_forward(x, w, stride, *geo)
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, conv_im2col.strided_forward(x, w, grid, stride, *geo),
                               rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(case["seed"] + 1).standard_normal(want.shape)
    np.testing.assert_allclose(conv_phases.phases_input_grad(g, w, x.shape, stride, *geo),
                               conv_grid.grid_input_grad(g, w, x.shape, stride, *geo),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_phases.phases_weight_grad(x, g, w.shape, stride, *geo),
                               conv_grid.grid_weight_grad(x, g, w.shape, stride, *geo),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [
    dict(_case((7, 6), (3, 2), (2, 1), ((1, 2), (0, 1))), stride=(2, 3)),
    dict(_case((1, 9), (1, 4), (1, 2), ((0, 0), (3, 1)), groups=2), stride=(1, 2)),
    dict(_case((6, 5), (2, 3), (2, 2), ((0, 0), (2, 2))), stride=(2, 2)),  # one phase read
])
def test_phase_kernels_one_image_at_a_time(monkeypatch, case):
    monkeypatch.setattr(conv_rows, "BLOCK_BYTES", 1)
    test_phase_kernels_match_the_grid_and_im2col_kernels.hypothesis.inner_test(
        dict(case, batch=3))
