"""npdeq.nn layers: forward values against independent NumPy closed forms, input and
parameter gradients (through ``backward()`` into ``Parameter.grad``) against central
differences, PyTorch's default initialisation, seeded reproducibility, argument checking,
and results in the input's namespace and device."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq import backend, nn
from npdeq.autodiff import Tensor, no_grad
from npdeq.nn import init
from npdeq.testing import default_eps


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _keep_default_generator():
    """manual_seed replaces npdeq's default generator; restore it so test order is moot."""
    saved = init._DEFAULT["generator"]
    yield
    init._DEFAULT["generator"] = saved


def host(a):
    """A NumPy copy of an array or Tensor of any namespace."""
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


def away_from_zero(rng, shape):
    """Normal samples pushed at least 0.1 from 0, so ReLU's kink is never within a step."""
    z = rng.standard_normal(shape)
    return np.sign(z) * (0.1 + np.abs(z))


def check_layer_grads(layer, x, seed, rtol=1e-5, atol=1e-8):
    """Gradients that ``backward()`` leaves on the input and on every Parameter, projected on
    random unit directions, against central differences of ``<u, layer(x)>``.

    Parameters are perturbed through ``.data``, so the check covers the path a training loop
    uses (registry -> forward -> tape -> ``Parameter.grad``), not a functional stand-in.
    """
    rng = np.random.default_rng(seed)
    xp, dev = backend.array_namespace(x), backend.device(x)
    xt = Tensor(x, requires_grad=True)
    layer.zero_grad()
    y = layer(xt)
    u_host = rng.standard_normal(y.shape)
    (y * xp.asarray(u_host, device=dev)).sum().backward()

    def objective(inp):
        with no_grad():
            return float(np.sum(host(layer(inp)) * u_host))

    def shift_input(delta):
        return objective(x + delta)

    targets = [("input", x, xt.grad, shift_input)]
    for name, param in layer.named_parameters():
        def shift_param(delta, param=param, start=param.data):
            param.data = start + delta
            try:
                return objective(x)
            finally:
                param.data = start

        targets.append((name, param.data, param.grad, shift_param))
    assert len(targets) == 1 + len(list(layer.parameters()))
    for name, point, grad, shifted in targets:
        assert grad is not None, f"backward() left no gradient on {name}"
        assert backend.array_namespace(grad.data) is xp, f"{name}.grad in another namespace"
        assert backend.device(grad.data) == dev, f"{name}.grad on {backend.device(grad.data)}"
        assert tuple(grad.shape) == tuple(point.shape), name
        d = rng.standard_normal(tuple(point.shape))
        d /= max(np.linalg.norm(d), 1e-300)
        h = default_eps(point)
        step = xp.asarray(h * d, device=dev)
        numeric = (shifted(step) - shifted(-step)) / (2 * h)
        analytic = float(np.sum(host(grad) * d))
        assert abs(numeric - analytic) <= atol + rtol * abs(numeric), (
            f"d<u, out>/d{name}: backward gives {analytic!r}, finite differences {numeric!r}")


def where(xp, xp_device):
    """Keyword arguments creating a layer's parameters in the namespace/device under test."""
    return {"xp": xp, "device": xp_device}


def set_params(layer, to_xp, rng):
    """Random values for every parameter: a layer still at ones/zeros hides misuse of its
    scale and shift (a swapped or mis-broadcast affine gives the same result)."""
    for param in layer.parameters():
        param.data = to_xp(rng.standard_normal(param.shape))


seeds = st.integers(0, 2 ** 16)
sizes = st.integers(1, 4)
lead_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


# --- Linear ------------------------------------------------------------------------------


@given(lead=lead_shapes, n_in=sizes, n_out=sizes, bias=st.booleans(), seed=seeds)
def test_linear_matches_closed_form_and_finite_differences(xp, xp_device, to_xp, check_array,
                                                           lead, n_in, n_out, bias, seed):
    layer = nn.Linear(n_in, n_out, bias=bias, seed=seed, **where(xp, xp_device))
    assert [n for n, _ in layer.named_parameters()] == (["weight", "bias"] if bias
                                                        else ["weight"])
    check_array(layer.weight, shape=(n_out, n_in), dtype=xp.float64)
    x = np.random.default_rng(seed).standard_normal(lead + (n_in,))
    out = layer(to_xp(x))
    expected = x @ host(layer.weight).T + (host(layer.bias) if bias else 0.0)
    check_array(out, shape=lead + (n_out,), dtype=xp.float64)
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)
    check_layer_grads(layer, to_xp(x), seed)


# --- Conv2d ------------------------------------------------------------------------------


def conv2d_reference(x, w, b, stride, padding, dilation, groups):
    """Sum over kernel taps of strided slices times the tap's weights, group by group.

    ``padding`` is ``((top, bottom), (left, right))``.
    """
    (sh, sw), (dh, dw) = stride, dilation
    xpad = np.pad(x, ((0, 0), (0, 0)) + tuple(padding))
    c_out, c_group, kh, kw = w.shape
    ho = (xpad.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xpad.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], c_out, ho, wo))
    per_group = c_out // groups
    for i in range(kh):
        for j in range(kw):
            tap = xpad[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                       j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for g in range(groups):
                outs = slice(g * per_group, (g + 1) * per_group)
                ins = tap[:, g * c_group:(g + 1) * c_group]
                out[:, outs] += np.einsum("bchw,oc->bohw", ins, w[outs, :, i, j])
    return out if b is None else out + b[None, :, None, None]


@st.composite
def conv_layer_cases(draw):
    groups = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.integers(0, 1), st.tuples(st.integers(0, 1), st.integers(0, 1)),
                             st.sampled_from(["same", "valid"])))
    stride = (1, 1) if padding == "same" else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if padding == "same":
        pads = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                     for d, k in zip(dilation, kernel))
    else:
        pair = (0, 0) if padding == "valid" else (
            (padding, padding) if isinstance(padding, int) else padding)
        pads = tuple((p, p) for p in pair)
    # The smallest input the (dilated) kernel fits in, plus a little.
    size = tuple(max(1, d * (k - 1) + 1 - sum(p)) + draw(st.integers(0, 2))
                 for d, k, p in zip(dilation, kernel, pads))
    return {"groups": groups, "c_in": groups * draw(st.integers(1, 2)),
            "c_out": groups * draw(st.integers(1, 2)), "kernel": kernel, "stride": stride,
            "padding": padding, "pads": pads, "dilation": dilation, "size": size,
            "batch": draw(st.integers(1, 2)), "bias": draw(st.booleans()), "seed": draw(seeds)}


@given(case=conv_layer_cases())
def test_conv2d_matches_closed_form_and_finite_differences(xp, xp_device, to_xp, check_array,
                                                           case):
    layer = nn.Conv2d(case["c_in"], case["c_out"], case["kernel"], stride=case["stride"],
                      padding=case["padding"], dilation=case["dilation"],
                      groups=case["groups"], bias=case["bias"], seed=case["seed"],
                      **where(xp, xp_device))
    check_array(layer.weight, shape=(case["c_out"], case["c_in"] // case["groups"])
                + case["kernel"], dtype=xp.float64)
    x = np.random.default_rng(case["seed"]).standard_normal(
        (case["batch"], case["c_in"]) + case["size"])
    expected = conv2d_reference(x, host(layer.weight),
                                host(layer.bias) if case["bias"] else None, case["stride"],
                                case["pads"], case["dilation"], case["groups"])
    out = layer(to_xp(x))
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_allclose(host(out), expected, rtol=1e-11, atol=1e-12)
    check_layer_grads(layer, to_xp(x), case["seed"])


# --- GroupNorm and LayerNorm ---------------------------------------------------------------


def group_norm_reference(x, groups, weight, bias, eps):
    b, c = x.shape[:2]
    grouped = x.reshape(b, groups, -1)
    normed = ((grouped - grouped.mean(-1, keepdims=True))
              / np.sqrt(grouped.var(-1, keepdims=True) + eps)).reshape(x.shape)
    if weight is None:
        return normed
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    return normed * weight.reshape(per_channel) + bias.reshape(per_channel)


@given(groups=st.integers(1, 3), per_group=st.integers(1, 2), batch=st.integers(1, 2),
       spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
       affine=st.booleans(), eps=st.sampled_from([1e-5, 1e-2]), seed=seeds)
def test_group_norm_matches_closed_form_and_finite_differences(
        xp, xp_device, to_xp, check_array, groups, per_group, batch, spatial, affine, eps, seed):
    channels = groups * per_group
    layer = nn.GroupNorm(groups, channels, eps=eps, affine=affine, **where(xp, xp_device))
    rng = np.random.default_rng(seed)
    set_params(layer, to_xp, rng)
    # Spread-out values: a group of near-equal values has a tiny variance and eps dominates.
    x = 3.0 * rng.standard_normal((batch, channels) + spatial) + 1.0
    expected = group_norm_reference(x, groups, host(layer.weight) if affine else None,
                                    host(layer.bias) if affine else None, eps)
    out = layer(to_xp(x))
    check_array(out, shape=x.shape, dtype=xp.float64)
    np.testing.assert_allclose(host(out), expected, rtol=1e-10, atol=1e-12)
    check_layer_grads(layer, to_xp(x), seed, rtol=1e-4, atol=1e-7)


@given(lead=lead_shapes, norm=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
       as_int=st.booleans(), affine=st.booleans(), seed=seeds)
def test_layer_norm_matches_closed_form_and_finite_differences(
        xp, xp_device, to_xp, check_array, lead, norm, as_int, affine, seed):
    shape_arg = norm[-1] if as_int else norm
    norm = (norm[-1],) if as_int else norm
    layer = nn.LayerNorm(shape_arg, elementwise_affine=affine, **where(xp, xp_device))
    assert layer.normalized_shape == norm
    rng = np.random.default_rng(seed)
    set_params(layer, to_xp, rng)
    x = 3.0 * rng.standard_normal(lead + norm) - 1.0
    axes = tuple(range(len(lead), x.ndim))
    expected = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    if affine:
        expected = expected * host(layer.weight) + host(layer.bias)
    out = layer(to_xp(x))
    check_array(out, shape=x.shape, dtype=xp.float64)
    np.testing.assert_allclose(host(out), expected, rtol=1e-10, atol=1e-12)
    check_layer_grads(layer, to_xp(x), seed, rtol=1e-4, atol=1e-7)


# --- parameter-free layers ---------------------------------------------------------------


_erf = np.vectorize(math.erf)

ACTIVATIONS = [
    pytest.param(nn.ReLU, lambda x: np.maximum(x, 0.0), id="relu"),
    pytest.param(nn.Tanh, np.tanh, id="tanh"),
    pytest.param(nn.Sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), id="sigmoid"),
    pytest.param(nn.GELU, lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))), id="gelu"),
    pytest.param(lambda: nn.GELU(approximate="tanh"),
                 lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi)
                                                    * (x + 0.044715 * x ** 3))),
                 id="gelu-tanh"),
]


@pytest.mark.parametrize("make, reference", ACTIVATIONS)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), seed=seeds)
def test_activation_matches_closed_form_and_finite_differences(xp, to_xp, check_array, make,
                                                               reference, shape, seed):
    layer = make()
    assert list(layer.parameters()) == []
    x = 3.0 * away_from_zero(np.random.default_rng(seed), shape)
    out = layer(to_xp(x))
    check_array(out, shape=shape, dtype=xp.float64)
    np.testing.assert_allclose(host(out), reference(x), rtol=1e-12, atol=1e-14)
    check_layer_grads(layer, to_xp(x), seed)


def test_identity_returns_its_input_and_passes_gradients(xp, to_xp, check_array):
    x = np.arange(6.0).reshape(2, 3)
    out = nn.Identity()(to_xp(x))
    assert isinstance(out, Tensor)
    check_array(out, shape=(2, 3), dtype=xp.float64)
    np.testing.assert_array_equal(host(out), x)
    check_layer_grads(nn.Identity(), to_xp(x), 0)


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple),
       data=st.data(), seed=seeds)
def test_flatten_matches_reshape(xp, to_xp, check_array, shape, data, seed):
    start = data.draw(st.integers(0, len(shape) - 1), label="start_dim")
    end = data.draw(st.integers(start, len(shape) - 1), label="end_dim")
    # Either sign of each axis index must name the same axis.
    start_arg = data.draw(st.sampled_from([start, start - len(shape)]), label="start_arg")
    end_arg = data.draw(st.sampled_from([end, end - len(shape)]), label="end_arg")
    x = np.random.default_rng(seed).standard_normal(shape)
    layer = nn.Flatten(start_arg, end_arg)
    expected = x.reshape(shape[:start] + (-1,) + shape[end + 1:])
    out = layer(to_xp(x))
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_array_equal(host(out), expected)
    check_layer_grads(layer, to_xp(x), seed)


def test_flatten_default_keeps_the_batch_axis(xp, to_xp, check_array):
    out = nn.Flatten()(to_xp(np.zeros((2, 3, 4, 5))))
    check_array(out, shape=(2, 60))


@pytest.mark.parametrize("start, end, message", [
    (0, 5, "end_dim=5 is out of range"),
    (-4, -1, "start_dim=-4 is out of range"),
    (2, 1, "start_dim=2 comes after end_dim=1"),
])
def test_flatten_rejects_dimensions_out_of_range(start, end, message):
    with pytest.raises(ValueError, match=message):
        nn.Flatten(start, end)(np.zeros((2, 3, 4)))


def avg_pool_reference(x, kernel, stride, padding):
    """Zero-padded windows averaged over the full kernel area (padding counts)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (xpad.shape[2] - kh) // sh + 1, (xpad.shape[3] - kw) // sw + 1
    total = np.zeros(x.shape[:2] + (ho, wo))
    for i in range(kh):
        for j in range(kw):
            total += xpad[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    return total / (kh * kw)


@given(kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.none() | st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       extra=st.tuples(st.integers(0, 3), st.integers(0, 3)), as_int=st.booleans(), seed=seeds)
def test_avg_pool2d_matches_closed_form_and_finite_differences(
        xp, to_xp, check_array, kernel, stride, padding, extra, as_int, seed):
    padding = tuple(min(p, k // 2) for p, k in zip(padding, kernel))
    if as_int:  # the int spelling of each argument means the square pair
        kernel, padding = (kernel[0],) * 2, (padding[0],) * 2
        stride = None if stride is None else (stride[0],) * 2
    size = tuple(max(1, k - 2 * p) + e for k, p, e in zip(kernel, padding, extra))
    x = np.random.default_rng(seed).standard_normal((2, 3) + size)
    layer = (nn.AvgPool2d(kernel[0], None if stride is None else stride[0], padding[0])
             if as_int else nn.AvgPool2d(kernel, stride, padding))
    expected = avg_pool_reference(x, kernel, kernel if stride is None else stride, padding)
    out = layer(to_xp(x))
    check_array(out, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)
    check_layer_grads(layer, to_xp(x), seed)


def test_a_small_network_is_differentiable_end_to_end(xp, xp_device, to_xp, check_array):
    """Layers composed in a Sequential: every parameter of every stage gets its gradient."""
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, seed=0, **where(xp, xp_device)),
                        nn.GroupNorm(2, 4, **where(xp, xp_device)), nn.GELU(),
                        nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(16, 3, seed=1, **where(xp, xp_device)),
                        nn.LayerNorm(3, **where(xp, xp_device)), nn.Tanh())
    set_params(net, to_xp, np.random.default_rng(2))
    x = to_xp(np.random.default_rng(3).standard_normal((2, 2, 4, 4)))
    check_array(net(x), shape=(2, 3), dtype=xp.float64)
    check_layer_grads(net, x, 4, rtol=1e-4, atol=1e-7)


# --- initialisation ----------------------------------------------------------------------


def check_uniform(values, bound, what):
    """Samples of U(-bound, bound): inside the bound, and spread over it (a wrong gain or a
    normal draw fails the spread or the variance bound^2 / 3)."""
    values = np.ravel(values)
    assert np.all(np.abs(values) <= bound * (1 + 1e-6)), f"{what}: |value| > {bound}"
    if values.size >= 200:
        assert np.abs(values).max() > 0.95 * bound, f"{what}: samples do not reach the bound"
        assert abs(values.mean()) < 0.1 * bound, f"{what}: mean {values.mean()} not near 0"
        np.testing.assert_allclose(values.var(), bound ** 2 / 3, rtol=0.15,
                                   err_msg=f"{what}: variance of U(-b, b) is b^2/3")


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 5), (64, 32), (500, 3)])
def test_linear_default_init_is_pytorchs(n_in, n_out):
    layer = nn.Linear(n_in, n_out, seed=n_in)
    bound = 1 / math.sqrt(n_in)
    check_uniform(host(layer.weight), bound, "Linear.weight")
    check_uniform(host(layer.bias), bound, "Linear.bias")
    assert layer.weight.dtype == np.float64 and layer.weight.requires_grad
    assert isinstance(layer.weight, nn.Parameter) and isinstance(layer.bias, nn.Parameter)


@pytest.mark.parametrize("c_in, c_out, kernel, groups", [
    (1, 1, 1, 1), (3, 4, 3, 1), (4, 64, (3, 2), 2), (8, 200, (2, 5), 4)])
def test_conv2d_default_init_uses_the_fan_in_of_one_group(c_in, c_out, kernel, groups):
    layer = nn.Conv2d(c_in, c_out, kernel, groups=groups, seed=c_out)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    bound = 1 / math.sqrt(c_in // groups * kh * kw)
    check_uniform(host(layer.weight), bound, "Conv2d.weight")
    check_uniform(host(layer.bias), bound, "Conv2d.bias")


def test_layers_without_bias_or_affine_have_only_their_weights():
    assert [n for n, _ in nn.Linear(2, 3, bias=False).named_parameters()] == ["weight"]
    assert nn.Linear(2, 3, bias=False).bias is None
    assert [n for n, _ in nn.Conv2d(2, 3, 1, bias=False).named_parameters()] == ["weight"]
    assert list(nn.GroupNorm(1, 2, affine=False).parameters()) == []
    assert list(nn.LayerNorm(2, elementwise_affine=False).parameters()) == []
    assert nn.LayerNorm(2, elementwise_affine=False).state_dict() == {}


def test_norm_layers_start_at_scale_one_and_shift_zero(xp, xp_device, check_array):
    for layer, shape in [(nn.GroupNorm(2, 6, **where(xp, xp_device)), (6,)),
                         (nn.LayerNorm((2, 3), **where(xp, xp_device)), (2, 3))]:
        check_array(layer.weight, shape=shape, dtype=xp.float64)
        check_array(layer.bias, shape=shape, dtype=xp.float64)
        np.testing.assert_array_equal(host(layer.weight), np.ones(shape))
        np.testing.assert_array_equal(host(layer.bias), np.zeros(shape))


def test_dtype_argument_creates_parameters_of_that_dtype(xp, xp_device, check_array):
    wide = nn.Linear(4, 2, seed=0)
    for dtype in ("float32", xp.float32):
        layer = nn.Linear(4, 2, seed=0, dtype=dtype, **where(xp, xp_device))
        check_array(layer.weight, dtype=xp.float32)
        check_array(layer.bias, dtype=xp.float32)
        check_uniform(host(layer.weight), 0.5, "float32 Linear.weight")
        # The same draws, rounded: the dtype changes the precision, not the values.
        for narrow, reference in zip(layer.parameters(), wide.parameters()):
            np.testing.assert_array_equal(host(narrow), host(reference).astype(np.float32))
    check_array(nn.GroupNorm(1, 2, dtype="float32", **where(xp, xp_device)).weight,
                dtype=xp.float32)


# --- reproducibility ---------------------------------------------------------------------


def test_seed_argument_makes_initialisation_reproducible():
    a, b, c = nn.Linear(3, 4, seed=5), nn.Linear(3, 4, seed=5), nn.Linear(3, 4, seed=6)
    np.testing.assert_array_equal(host(a.weight), host(b.weight))
    np.testing.assert_array_equal(host(a.bias), host(b.bias))
    assert not np.array_equal(host(a.weight), host(c.weight))
    conv_a, conv_b = nn.Conv2d(2, 3, 2, seed=1), nn.Conv2d(2, 3, 2, seed=1)
    np.testing.assert_array_equal(host(conv_a.weight), host(conv_b.weight))
    # A Generator is drawn from (advanced), an int starts afresh.
    rng = np.random.default_rng(9)
    first, second = nn.Linear(3, 4, seed=rng), nn.Linear(3, 4, seed=rng)
    assert not np.array_equal(host(first.weight), host(second.weight))
    np.testing.assert_array_equal(host(first.weight), host(nn.Linear(3, 4, seed=9).weight))


def _build():
    return nn.Sequential(nn.Linear(3, 4), nn.Conv2d(1, 2, 2), nn.Linear(4, 1))


def test_manual_seed_makes_unseeded_layers_reproducible():
    nn.manual_seed(7)
    first = [host(p) for p in _build().parameters()]
    later = [host(p) for p in _build().parameters()]
    nn.manual_seed(7)
    again = [host(p) for p in _build().parameters()]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, later))
    nn.manual_seed(8)
    assert not np.array_equal(host(next(_build().parameters())), first[0])
    # A seeded layer neither uses nor advances the default stream.
    nn.manual_seed(7)
    nn.Linear(3, 4, seed=123)
    np.testing.assert_array_equal(host(next(_build().parameters())), first[0])


@pytest.mark.parametrize("seed", [1.5, "1", True, None])
def test_manual_seed_takes_an_int(seed):
    with pytest.raises(TypeError, match="manual_seed"):
        nn.manual_seed(seed)


def test_same_seed_gives_the_same_values_in_every_namespace(xp, xp_device, check_array):
    """Initial values are drawn on the host: a model built on a device equals the NumPy one."""
    for make in (lambda **kw: nn.Linear(5, 3, seed=4, **kw),
                 lambda **kw: nn.Conv2d(2, 4, 3, groups=2, seed=4, **kw)):
        ref, dev = make(), make(**where(xp, xp_device))
        for (name, p_ref), (_, p_dev) in zip(ref.named_parameters(), dev.named_parameters()):
            check_array(p_dev, shape=p_ref.shape, dtype=xp.float64)
            np.testing.assert_array_equal(host(p_dev), host(p_ref), err_msg=name)


# --- arguments ---------------------------------------------------------------------------


BAD_SIZES = [
    pytest.param(lambda: nn.Linear(0, 2), "in_features", id="linear-in-0"),
    pytest.param(lambda: nn.Linear(2, -1), "out_features", id="linear-out-neg"),
    pytest.param(lambda: nn.Linear(2.0, 3), "in_features", id="linear-in-float"),
    pytest.param(lambda: nn.Linear(True, 3), "in_features", id="linear-in-bool"),
    pytest.param(lambda: nn.Conv2d(0, 2, 3), "in_channels", id="conv-in"),
    pytest.param(lambda: nn.Conv2d(2, 0, 3), "out_channels", id="conv-out"),
    pytest.param(lambda: nn.Conv2d(2, 2, 0), "kernel_size", id="conv-kernel-0"),
    pytest.param(lambda: nn.Conv2d(2, 2, (1, 2, 3)), "kernel_size", id="conv-kernel-triple"),
    pytest.param(lambda: nn.Conv2d(2, 3, 1, groups=2), "groups", id="conv-groups-divide"),
    pytest.param(lambda: nn.Conv2d(2, 2, 1, groups=0), "groups", id="conv-groups-0"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, stride=0), "stride", id="conv-stride"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, padding=-1), "padding", id="conv-padding"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, padding="full"), "padding", id="conv-padding-str"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, padding="same", stride=2), "stride",
                 id="conv-same-strided"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, dilation=(1, 0)), "dilation", id="conv-dilation"),
    pytest.param(lambda: nn.GroupNorm(0, 4), "num_groups", id="groupnorm-0"),
    pytest.param(lambda: nn.GroupNorm(3, 4), "num_groups", id="groupnorm-divide"),
    pytest.param(lambda: nn.GroupNorm(2, 0), "num_channels", id="groupnorm-channels"),
    pytest.param(lambda: nn.LayerNorm(0), "normalized_shape", id="layernorm-0"),
    pytest.param(lambda: nn.LayerNorm((2, -1)), "normalized_shape", id="layernorm-neg"),
    pytest.param(lambda: nn.LayerNorm(()), "normalized_shape", id="layernorm-empty"),
    pytest.param(lambda: nn.GELU("exact"), "approximate", id="gelu"),
    pytest.param(lambda: nn.AvgPool2d(0), "kernel_size", id="pool-kernel"),
    pytest.param(lambda: nn.AvgPool2d(2, stride=0), "stride", id="pool-stride"),
    pytest.param(lambda: nn.AvgPool2d(2, padding=-1), "padding", id="pool-padding"),
    pytest.param(lambda: nn.AvgPool2d(2, padding=2), "padding", id="pool-padding-half"),
]


@pytest.mark.parametrize("build, argument", BAD_SIZES)
def test_bad_sizes_raise_value_error_naming_the_argument(build, argument):
    """At construction, as PyTorch, not at the first forward call."""
    with pytest.raises(ValueError, match=argument):
        build()


NAN, INF = float("nan"), float("inf")

BAD_NUMBERS = [
    pytest.param(lambda: nn.Linear(3.0, 2), "in_features", id="linear-float-size"),
    pytest.param(lambda: nn.Linear(True, 2), "in_features", id="linear-bool-size"),
    pytest.param(lambda: nn.Linear(3, NAN), "out_features", id="linear-nan-size"),
    pytest.param(lambda: nn.Conv2d(1, 1, NAN), "kernel_size", id="conv-kernel-nan"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, stride=1.5), "stride", id="conv-stride-float"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, dilation=INF), "dilation", id="conv-dilation-inf"),
    pytest.param(lambda: nn.Conv2d(2, 2, 3, groups=2.0), "groups", id="conv-groups-float"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, padding=(1, NAN)), "padding", id="conv-pad-nan"),
    pytest.param(lambda: nn.GroupNorm(2, 4, eps=NAN), "eps", id="groupnorm-eps-nan"),
    pytest.param(lambda: nn.GroupNorm(2, 4, eps=0.0), "eps", id="groupnorm-eps-0"),
    pytest.param(lambda: nn.GroupNorm(2, 4, eps=-1e-5), "eps", id="groupnorm-eps-neg"),
    pytest.param(lambda: nn.GroupNorm(2.0, 4), "num_groups", id="groupnorm-float-groups"),
    pytest.param(lambda: nn.LayerNorm(3, eps=INF), "eps", id="layernorm-eps-inf"),
    pytest.param(lambda: nn.LayerNorm(3, eps="1e-5"), "eps", id="layernorm-eps-str"),
    pytest.param(lambda: nn.LayerNorm(3.0), "normalized_shape", id="layernorm-float"),
    pytest.param(lambda: nn.LayerNorm((2, NAN)), "normalized_shape", id="layernorm-nan"),
    pytest.param(lambda: nn.Flatten(1.0), "start_dim", id="flatten-float"),
    pytest.param(lambda: nn.Flatten(1, NAN), "end_dim", id="flatten-nan"),
    pytest.param(lambda: nn.AvgPool2d(NAN), "kernel_size", id="pool-kernel-nan"),
    pytest.param(lambda: nn.AvgPool2d(2, stride=2.0), "stride", id="pool-stride-float"),
    pytest.param(lambda: nn.AvgPool2d(2, padding=(0, INF)), "padding", id="pool-padding-inf"),
    pytest.param(lambda: init.uniform((2,), NAN), "bound", id="init-bound-nan"),
    pytest.param(lambda: init.uniform((2,), INF), "bound", id="init-bound-inf"),
    pytest.param(lambda: init.kaiming_uniform((2, 2), a=NAN), "a", id="init-a-nan"),
]


@pytest.mark.parametrize("build, argument", BAD_NUMBERS)
def test_non_finite_or_non_integer_numbers_raise_value_error(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize("build", [
    pytest.param(lambda: nn.Linear(3, 2, bias=1), id="linear-bias"),
    pytest.param(lambda: nn.Conv2d(1, 1, 3, bias="yes"), id="conv-bias"),
    pytest.param(lambda: nn.GroupNorm(2, 4, affine=None), id="groupnorm-affine"),
    pytest.param(lambda: nn.LayerNorm(3, elementwise_affine=0), id="layernorm-affine"),
])
def test_flags_must_be_bools(build):
    with pytest.raises(TypeError, match="True or False"):
        build()


def test_numpy_scalars_are_accepted_wherever_python_numbers_are():
    i = np.int64
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6))
    pairs = [
        (nn.Linear(i(6), np.int32(3), seed=0), nn.Linear(6, 3, seed=0)),
        (nn.Conv2d(i(4), i(2), i(3), stride=i(2), padding=(i(1), i(0)), dilation=i(1),
                   groups=i(2), seed=0),
         nn.Conv2d(4, 2, 3, stride=2, padding=(1, 0), dilation=1, groups=2, seed=0)),
        (nn.GroupNorm(i(2), i(4), eps=np.float32(1e-5)), nn.GroupNorm(2, 4, eps=1e-5)),
        (nn.LayerNorm((i(6),), eps=np.float64(1e-5)), nn.LayerNorm(6)),
        (nn.LayerNorm(i(6)), nn.LayerNorm(6)),
        (nn.Flatten(i(1), i(-1)), nn.Flatten()),
        (nn.AvgPool2d(i(2), stride=i(2), padding=i(1)), nn.AvgPool2d(2, stride=2, padding=1)),
    ]
    for numpy_built, plain in pairs:
        for a, b in zip(numpy_built.parameters(), plain.parameters()):
            np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_allclose(numpy_built(x).data, plain(x).data, rtol=1e-6)
        assert "np." not in repr(numpy_built)  # stored as Python numbers
    init.manual_seed(np.int64(3))
    first = nn.Linear(2, 2).weight.data
    init.manual_seed(3)
    np.testing.assert_array_equal(first, nn.Linear(2, 2).weight.data)


def test_layers_reject_inputs_of_the_wrong_size():
    with pytest.raises(ValueError):
        nn.Linear(3, 2, seed=0)(np.ones((2, 4)))
    with pytest.raises(ValueError):
        nn.Conv2d(3, 2, 1, seed=0)(np.ones((1, 2, 4, 4)))
    with pytest.raises(ValueError):
        nn.GroupNorm(2, 4)(np.ones((1, 6, 2)))
    with pytest.raises(ValueError):
        nn.LayerNorm(3)(np.ones((2, 4)))


# --- namespace and device of results -----------------------------------------------------


def test_a_model_moved_with_to_follows_the_input(xp, xp_device, to_xp, check_array):
    """A NumPy-built model moved to the input's namespace/device computes there, with the
    values it had on NumPy."""
    net = nn.Sequential(nn.Linear(3, 4, seed=0), nn.ReLU(), nn.LayerNorm(4),
                        nn.Linear(4, 2, seed=1))
    x = np.random.default_rng(0).standard_normal((5, 3))
    expected = host(net(x))
    net.to(to_xp(x))
    for p in net.parameters():
        check_array(p)
    out = net(to_xp(x))
    check_array(out, shape=(5, 2), dtype=xp.float64)
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)
    net.to(dtype="float32")
    out32 = net(to_xp(x, dtype=np.float32))
    check_array(out32, shape=(5, 2), dtype=xp.float32)
    np.testing.assert_allclose(host(out32), expected, rtol=1e-4, atol=1e-5)
