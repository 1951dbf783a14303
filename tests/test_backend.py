"""The array backend: namespace and device lookup, host conversion, CuPy detection without
importing it, sliding windows and their adjoint, scatter-add, random numbers."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import array_api_strict
import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq import backend

DEVICE1 = array_api_strict.Device("device1")


# --- namespaces and devices --------------------------------------------------------------


def test_array_namespace_of_each_library(xp, to_xp):
    assert backend.array_namespace(to_xp(np.zeros(2))) is xp
    assert backend.array_namespace(None, 2.0, to_xp(np.zeros(2)), 3) is xp
    assert backend.array_namespace(np.float64(1.0)) is backend.array_namespace(np.zeros(1))
    assert backend.namespace_name(backend.array_namespace(np.zeros(1))) == "numpy"
    assert backend.namespace_name(array_api_strict) == "array_api_strict"


def test_array_namespace_errors():
    with pytest.raises(TypeError, match="cannot mix arrays of different namespaces: numpy and "
                                        "array_api_strict; move them to one library first"):
        backend.array_namespace(np.zeros(2), array_api_strict.zeros(2))
    with pytest.raises(TypeError, match="needs at least one array argument"):
        backend.array_namespace(None, 1.0)
    with pytest.raises(TypeError, match="expected an array of a supported library .* got dict"):
        backend.array_namespace({})


def test_namespace_predicates():
    np_ns = backend.array_namespace(np.zeros(1))
    assert backend.is_numpy(np_ns) and not backend.is_numpy(array_api_strict)
    assert not backend.is_cupy(np_ns) and not backend.is_cupy(array_api_strict)
    assert backend.is_numpy_array(np.zeros(1)) and backend.is_numpy_array(np.float32(1))
    assert not backend.is_numpy_array(array_api_strict.zeros(1))
    d = backend.default_asarray([1.0, 2.0])
    assert isinstance(d, np.ndarray) and d.dtype == np.float64


def test_device(xp, xp_device, to_xp):
    assert backend.device(to_xp(np.zeros(3))) == xp_device
    assert backend.device(np.zeros(3)) == "cpu"
    assert backend.device(np.float64(2.0)) == "cpu"


def test_check_same_namespace_reports_devices():
    a, b = array_api_strict.zeros(2), array_api_strict.zeros(2, device=DEVICE1)
    assert backend.check_same_namespace([a, None, 1.0, a], "op") is array_api_strict
    with pytest.raises(ValueError, match=r"op: arrays are on different devices \(.*CPU_DEVICE"
                                         r".* and .*device1.*\)"):
        backend.check_same_namespace([a, b], "op")
    with pytest.raises(TypeError, match="op: cannot mix arrays of different namespaces"):
        backend.check_same_namespace([np.zeros(2), a], "op")


# --- host conversion ----------------------------------------------------------------------


def test_to_numpy(xp, to_xp):
    a0 = np.arange(6.0).reshape(2, 3)
    for x in (to_xp(a0), npdeq.Tensor(to_xp(a0), requires_grad=True)):
        host = backend.to_numpy(x)
        assert type(host) is np.ndarray
        np.testing.assert_array_equal(host, a0)
    assert type(backend.to_numpy(np.float32(1.5))) is np.ndarray


def test_to_numpy_of_strict_off_its_default_device_is_a_copy():
    x = array_api_strict.asarray(np.arange(3.0), device=DEVICE1)
    host = backend.to_numpy(x)
    np.testing.assert_array_equal(host, [0.0, 1.0, 2.0])
    host[0] = 10.0
    np.testing.assert_array_equal(backend.to_numpy(x), [0.0, 1.0, 2.0])


def test_to_scalar(xp, to_xp):
    for value, dtype, kind in [(1.5, np.float64, float), (2.5, np.float32, float),
                               (7, np.int64, int), (True, np.bool_, bool)]:
        out = backend.to_scalar(to_xp(np.array(value, dtype=dtype)))
        assert type(out) is kind and out == value


# --- CuPy detection ----------------------------------------------------------------------


def test_cupy_available_never_imports_a_missing_cupy(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "cupy" else real_find_spec(name, *args, **kwargs)

    def import_module(name, *args, **kwargs):
        raise AssertionError(f"cupy_available imported {name}")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(importlib, "import_module", import_module)
    assert backend.cupy_available() is False


def test_cupy_available_is_false_without_a_gpu():
    code = ("import sys, npdeq.backend as b; print(b.cupy_available(), 'cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    if importlib.util.find_spec("cupy") is None:
        assert out == ["False", "False"]
    else:  # installed: available exactly when a device is visible
        assert out[0] in ("True", "False")


# --- sliding windows ---------------------------------------------------------------------


@st.composite
def window_cases(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # Big enough for at least one window, with a few spare rows and columns.
    h = dilation[0] * (kernel[0] - 1) + 1 + draw(st.integers(0, 4))
    w = dilation[1] * (kernel[1] - 1) + 1 + draw(st.integers(0, 4))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return shape, kernel, stride, dilation, draw(st.integers(0, 2 ** 16))


def _windows_reference(x, kernel, stride, dilation):
    b, c, h, w = x.shape
    ho = (h - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    out = np.empty((b, c, kernel[0], kernel[1], ho, wo))
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            for p in range(ho):
                for q in range(wo):
                    out[:, :, i, j, p, q] = x[:, :, p * stride[0] + i * dilation[0],
                                              q * stride[1] + j * dilation[1]]
    return out


@given(case=window_cases())
def test_sliding_windows_and_fold_are_adjoint(xp, to_xp, check_array, case):
    shape, kernel, stride, dilation, seed = case
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape)
    windows = backend.sliding_windows(to_xp(x0), kernel, stride, dilation)
    expected = _windows_reference(x0, kernel, stride, dilation)
    check_array(windows, shape=expected.shape, dtype=xp.float64)
    np.testing.assert_array_equal(backend.to_numpy(windows), expected)
    c0 = rng.standard_normal(expected.shape)
    folded = backend.fold_windows(to_xp(c0), shape, stride, dilation)
    check_array(folded, shape=shape, dtype=xp.float64)
    # <fold(c), x> == <c, windows(x)>
    lhs = np.sum(backend.to_numpy(folded) * x0)
    rhs = np.sum(c0 * expected)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_sliding_windows_returns_a_copy_and_checks_the_size(xp, to_xp):
    x = to_xp(np.arange(16.0).reshape(1, 1, 4, 4))
    windows = backend.sliding_windows(x, (2, 2), (1, 1), (1, 1))
    if backend.is_numpy(xp):
        assert windows.flags["C_CONTIGUOUS"] and not np.shares_memory(windows, x)
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) with dilation \(2, 2\) does not "
                                         r"fit the padded input of spatial size \(4, 4\)"):
        backend.sliding_windows(x, (3, 3), (1, 1), (2, 2))


# --- scatter-add -------------------------------------------------------------------------


@pytest.mark.parametrize("key, values_shape", [
    ((np.array([0, 2, 0, 0, -1]),), (5,)),
    ((np.array([[1, 1], [0, 1]]), np.array([2, 2])), (2, 2)),
    ((np.array([0, 0, 1]), 3), (3,)),
], ids=["repeated-1d", "repeated-2d-broadcast", "array-and-int"])
def test_scatter_add_adds_at_repeated_indices(xp, to_xp, check_array, key, values_shape):
    shape = (4,) if len(key) == 1 else (3, 4)
    values = np.arange(1.0, 1.0 + np.prod(values_shape)).reshape(values_shape)
    expected = np.zeros(shape)
    np.add.at(expected, key, values)
    out = backend.scatter_add(shape, tuple(to_xp(k) if isinstance(k, np.ndarray) else k
                                           for k in key), to_xp(values))
    check_array(out, shape=shape, dtype=xp.float64)
    np.testing.assert_array_equal(backend.to_numpy(out), expected)


def test_scatter_add_keeps_float32(xp, to_xp, check_array):
    out = backend.scatter_add((3,), (to_xp(np.array([1, 1])),),
                              to_xp(np.array([0.5, 0.25], dtype=np.float32)))
    check_array(out, shape=(3,), dtype=xp.float32)
    np.testing.assert_array_equal(backend.to_numpy(out), [0.0, 0.75, 0.0])


# --- random numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("draw", [backend.random_normal, backend.random_uniform],
                         ids=["normal", "uniform"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_random_numbers_follow_the_input(xp, to_xp, check_array, draw, dtype):
    like = to_xp(np.zeros(2, dtype=dtype))
    a = draw((3, 4), like=like, seed=7)
    check_array(a, shape=(3, 4), dtype=like.dtype)
    b = draw((3, 4), like=like, seed=7)
    c = draw((3, 4), like=like, seed=8)
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    assert not np.array_equal(backend.to_numpy(a), backend.to_numpy(c))
    # A NumPy Generator works as a seed everywhere (on CuPy it seeds cupy.random once).
    gen_a = draw((3, 4), like=like, seed=np.random.default_rng(7))
    gen_b = draw((3, 4), like=like, seed=np.random.default_rng(7))
    check_array(gen_a, shape=(3, 4), dtype=like.dtype)
    np.testing.assert_array_equal(backend.to_numpy(gen_a), backend.to_numpy(gen_b))


def test_random_distributions(xp, to_xp):
    like = to_xp(np.zeros(1))
    normal = backend.to_numpy(backend.random_normal((20000,), like=like, seed=0))
    assert abs(normal.mean()) < 0.05 and abs(normal.std() - 1.0) < 0.05
    uniform = backend.to_numpy(backend.random_uniform((20000,), like=like, seed=0, low=-2.0,
                                                      high=3.0))
    assert uniform.min() >= -2.0 and uniform.max() < 3.0
    assert abs(uniform.mean() - 0.5) < 0.05


@pytest.mark.parametrize("pattern", ["all", "none", "some"])
@pytest.mark.parametrize("other", ["number", "array"])
@pytest.mark.parametrize("width", [3, 1000])  # NumPy's where below 4096 elements, copies above
def test_select_rows_equals_where(xp, to_xp, pattern, other, width):
    """select_rows is where(mask[:, None], a, b) exactly, NaN and infinities included, in
    a fresh array (never a or b itself), in a's dtype."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, width)).astype(np.float32)
    a[1, 2], a[3, 0] = np.nan, -np.inf
    b = np.full((5, width), np.inf, np.float32) if other == "array" else 0.5
    mask = {"all": np.ones(5, bool), "none": np.zeros(5, bool),
            "some": np.array([True, False, True, False, False])}[pattern]
    a_xp, b_xp = to_xp(a), (to_xp(b) if other == "array" else b)
    out = backend.select_rows(to_xp(mask), a_xp, b_xp)
    assert out is not a_xp and out is not b_xp
    assert out.dtype == a_xp.dtype
    np.testing.assert_array_equal(backend.to_numpy(out), np.where(mask[:, None], a, b))
    np.testing.assert_array_equal(backend.to_numpy(a_xp), a)  # inputs are not modified
