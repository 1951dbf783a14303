"""erf, erfc and gelu: accuracy against SciPy / libm, closed forms, finite differences of
order 1 and 2, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq
from npdeq.testing import check_grads

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)


def values(low=-6.0, high=6.0):
    return hnp.arrays(np.float64, SHAPES, elements=st.floats(low, high, allow_subnormal=False))


def _wide_grid():
    """Both signs, the three approximation ranges and their joins, tails, huge values, zeros,
    infinities and tiny magnitudes."""
    mags = np.concatenate([np.linspace(0.0, 30.0, 30001), np.geomspace(1e-300, 1e300, 601),
                           np.nextafter([1.0, 3.0, 28.0], 0.0), [1.0, 3.0, 28.0, np.inf]])
    return np.concatenate([mags, -mags])


def test_erf_matches_scipy_over_wide_range(xp, to_xp, check_array):
    x = _wide_grid()
    out = npdeq.erf(to_xp(x))
    check_array(out, shape=x.shape, dtype=xp.float64)
    expected = scipy.special.erf(x)
    got = npdeq.backend.to_numpy(out.data)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
    assert np.array_equal(np.signbit(got[x == 0]), np.signbit(x[x == 0]))  # erf(-0.0) = -0.0


def test_erfc_matches_libm_to_the_underflow(xp, to_xp, check_array):
    # SciPy's erfc loses ~x**2 ulps in its tail (it rounds x**2 before exp); libm does not.
    x = np.concatenate([np.linspace(-6.0, 27.0, 6001), [-np.inf, np.inf, 0.0]])
    out = npdeq.erfc(to_xp(x))
    check_array(out, shape=x.shape, dtype=xp.float64)
    expected = np.array([math.erfc(v) for v in x])
    np.testing.assert_allclose(npdeq.backend.to_numpy(out.data), expected, rtol=1e-14,
                               atol=1e-320)


def test_erf_propagates_nan_and_keeps_float32(xp, to_xp, check_array):
    out = npdeq.erf(to_xp(np.array([np.nan, 0.5, -4.0])))
    got = npdeq.backend.to_numpy(out.data)
    assert np.isnan(got[0]) and got[1] == pytest.approx(math.erf(0.5), rel=1e-15)
    assert np.isnan(npdeq.backend.to_numpy(npdeq.erfc(to_xp(np.array([np.nan]))).data)[0])
    x32 = np.linspace(-5, 5, 41, dtype=np.float32)
    out32 = npdeq.erf(to_xp(x32))
    check_array(out32, shape=(41,), dtype=xp.float32)
    np.testing.assert_allclose(npdeq.backend.to_numpy(out32.data), scipy.special.erf(x32),
                               rtol=2e-6, atol=1e-7)


def test_erf_derivative_is_gaussian(xp, to_xp, check_array):
    x0 = np.linspace(-4, 4, 17)
    x = npdeq.Tensor(to_xp(x0), requires_grad=True)
    (g,) = npdeq.grad(npdeq.erf(x).sum(), [x])
    check_array(g, shape=x0.shape, dtype=xp.float64)
    np.testing.assert_allclose(g.numpy(), 2 / np.sqrt(np.pi) * np.exp(-x0 ** 2), rtol=1e-14)
    (gc,) = npdeq.grad(npdeq.erfc(x).sum(), [x])
    np.testing.assert_allclose(gc.numpy(), -g.numpy(), rtol=1e-14)


def _gelu_exact(x):
    return x * scipy.special.ndtr(x)


def _gelu_tanh(x):
    # 0.5 x (1 + tanh(u)) written as x * expit(2u): the same function, without the
    # cancellation that leaves only tanh's last-bit rounding in the negative tail.
    return x * scipy.special.expit(2.0 * np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3))


@pytest.mark.parametrize("mode, reference", [("none", _gelu_exact), ("tanh", _gelu_tanh)])
def test_gelu_matches_closed_form(xp, to_xp, check_array, mode, reference):
    x = np.concatenate([np.linspace(-10, 10, 2001), [-30.0, -38.0, 50.0]])
    out = npdeq.gelu(to_xp(x), approximate=mode)
    check_array(out, shape=x.shape, dtype=xp.float64)
    # The exact form goes through erfc, so it stays accurate relative to its tiny negative tail.
    np.testing.assert_allclose(out.numpy(), reference(x), rtol=1e-13, atol=1e-300)


def test_gelu_tanh_is_close_to_exact(xp, to_xp):
    x = to_xp(np.linspace(-6, 6, 121))
    diff = npdeq.gelu(x).numpy() - npdeq.gelu(x, approximate="tanh").numpy()
    assert 0 < np.max(np.abs(diff)) < 1e-3


@pytest.mark.parametrize("op", [npdeq.erf, npdeq.erfc, npdeq.gelu,
                                lambda x: npdeq.gelu(x, approximate="tanh")],
                         ids=["erf", "erfc", "gelu", "gelu_tanh"])
@given(x=values())
def test_vjp_matches_finite_differences(xp, to_xp, op, x):
    check_grads(op, to_xp(x), order=2, rtol=1e-5, atol=1e-6)


@given(x=values(-3.0, 3.0))
def test_gelu_forward_mode(xp, to_xp, x):
    check_grads(npdeq.gelu, to_xp(x), modes=("rev", "fwd"), rtol=1e-5, atol=1e-6)


def test_gelu_rejects_unknown_approximation(xp, to_xp):
    with pytest.raises(ValueError, match=r"approximate='sigmoid'.*'none'.*'tanh'"):
        npdeq.gelu(to_xp(np.zeros(3)), approximate="sigmoid")


@pytest.mark.parametrize("op", [npdeq.erf, npdeq.erfc, npdeq.gelu])
def test_integer_input_is_refused(xp, to_xp, op):
    with pytest.raises(TypeError, match="floating-point.*int"):
        op(to_xp(np.arange(3)))
