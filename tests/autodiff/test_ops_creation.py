"""Array creation at the top level (zeros, ones, full, empty, eye, arange, linspace,
full_like, empty_like): values against NumPy, namespace/device/dtype, the default dtype,
shapes given as a tuple or as PyTorch's varargs, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq

CASES = [
    ("zeros", lambda **kw: npdeq.zeros(2, 3, **kw), np.zeros((2, 3))),
    ("zeros_tuple", lambda **kw: npdeq.zeros((2, 3), **kw), np.zeros((2, 3))),
    ("ones", lambda **kw: npdeq.ones([4], **kw), np.ones(4)),
    ("ones_int", lambda **kw: npdeq.ones(3, **kw), np.ones(3)),
    ("empty", lambda **kw: npdeq.empty((2, 0, 1), **kw), np.zeros((2, 0, 1))),
    ("full", lambda **kw: npdeq.full((2, 2), 1.5, **kw), np.full((2, 2), 1.5)),
    ("full_scalar_shape", lambda **kw: npdeq.full(3, -2.0, **kw), np.full(3, -2.0)),
    ("eye", lambda **kw: npdeq.eye(3, **kw), np.eye(3)),
    ("eye_offset", lambda **kw: npdeq.eye(2, 4, k=1, **kw), np.eye(2, 4, k=1)),
    ("arange_float", lambda **kw: npdeq.arange(0.0, 2.0, 0.5, **kw), np.arange(0.0, 2.0, 0.5)),
    ("linspace", lambda **kw: npdeq.linspace(-1.0, 1.0, 5, **kw), np.linspace(-1.0, 1.0, 5)),
    ("linspace_open", lambda **kw: npdeq.linspace(0, 1, 4, endpoint=False, **kw),
     np.linspace(0, 1, 4, endpoint=False)),
]


@pytest.mark.parametrize("name, make, expected", CASES, ids=[c[0] for c in CASES])
def test_creation_in_namespace_and_device(xp, xp_device, check_array, name, make, expected):
    for kwargs, dtype in (({}, xp.float64), ({"dtype": "float32"}, xp.float32),
                          ({"dtype": xp.float32}, xp.float32)):
        out = make(xp=xp, device=xp_device, **kwargs)
        assert isinstance(out, npdeq.Tensor) and not out.requires_grad
        check_array(out, shape=expected.shape, dtype=dtype)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-7)
    # device= alone picks the namespace too (except NumPy's 'cpu', which is NumPy anyway).
    check_array(make(device=xp_device), shape=expected.shape, dtype=xp.float64)


@pytest.mark.parametrize("name, make, expected", CASES, ids=[c[0] for c in CASES])
def test_creation_defaults_to_numpy_and_the_default_dtype(name, make, expected):
    out = make()
    assert isinstance(out.data, np.ndarray) and out.dtype == np.float64
    with npdeq.default_dtype("float32"):
        out = make()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    assert make(requires_grad=True).requires_grad


def test_integer_results(xp, xp_device, check_array):
    out = npdeq.arange(5, xp=xp, device=xp_device)
    check_array(out, shape=(5,), dtype=xp.int64)
    np.testing.assert_array_equal(out.numpy(), np.arange(5))
    check_array(npdeq.arange(1, 7, 2, xp=xp, device=xp_device), shape=(3,), dtype=xp.int64)
    check_array(npdeq.full((2,), 3, xp=xp, device=xp_device), shape=(2,), dtype=xp.int64)
    check_array(npdeq.full((2,), True, xp=xp, device=xp_device), shape=(2,), dtype=xp.bool)
    check_array(npdeq.zeros(2, dtype=int, xp=xp, device=xp_device), shape=(2,), dtype=xp.int64)
    with npdeq.default_dtype("float32"):
        assert npdeq.arange(3).dtype == np.int64
        assert npdeq.arange(3.0).dtype == np.float32


def test_like_functions_follow_the_input(xp, to_xp, check_array):
    a = npdeq.Tensor(to_xp(np.ones((2, 3), dtype=np.float32)))
    out = npdeq.full_like(a, 2.5)
    check_array(out, shape=(2, 3), dtype=xp.float32)
    np.testing.assert_array_equal(out.numpy(), np.full((2, 3), 2.5))
    check_array(npdeq.full_like(a.data, 1, dtype="float64"), shape=(2, 3), dtype=xp.float64)
    out = npdeq.empty_like(a, requires_grad=True)
    check_array(out, shape=(2, 3), dtype=xp.float32)
    assert out.requires_grad and not np.any(out.numpy())


def test_numpy_positional_dtype_and_retstep():
    assert npdeq.zeros((2,), "float32").dtype == np.float32
    assert npdeq.ones(2, np.float32).dtype == np.float32
    out, step = npdeq.linspace(0.0, 1.0, 5, retstep=True)
    assert step == 0.25 and out.shape == (5,)
    assert npdeq.zeros(np.int64(2), 3).shape == (2, 3)


@pytest.mark.parametrize("call, error, match", [
    (lambda: npdeq.zeros(-1), ValueError, r"zeros: dimensions must be >= 0, got shape \(-1,\)"),
    (lambda: npdeq.zeros((2, 1.5)), TypeError, r"each dimension of the shape must be an int, "
                                                r"got 1.5"),
    (lambda: npdeq.zeros(True), TypeError, r"expected a shape"),
    (lambda: npdeq.ones(), TypeError, r"ones: expected a shape"),
    (lambda: npdeq.zeros(2, dtype="float99"), TypeError, r"dtype='float99' is not a dtype"),
    (lambda: npdeq.zeros(2, "float32", dtype="float64"), TypeError, r"unexpected positional"),
    (lambda: npdeq.full(2, "a"), TypeError,
     r"full: fill_value must be a number \(or a 0-d array\), got 'a'"),
    (lambda: npdeq.eye(-2), ValueError, r"eye: N must be >= 0, got -2"),
    (lambda: npdeq.eye(2, k=0.5), TypeError, r"eye: k must be an int, got 0.5"),
    (lambda: npdeq.arange(0, 3, 0), ValueError, r"step must not be 0"),
    (lambda: npdeq.arange("3"), TypeError, r"stop must be a real number, got '3'"),
    (lambda: npdeq.linspace(0, 1, -1), ValueError, r"num must be >= 0, got -1"),
    (lambda: npdeq.linspace(0, 1, 2.5), TypeError, r"num must be an int, got 2.5"),
    (lambda: npdeq.full_like([1.0], 2.0), TypeError, r"a must be an array or Tensor"),
    (lambda: npdeq.zeros(2, device="tpu"), ValueError, r"unknown device 'tpu'"),
    (lambda: npdeq.zeros(2, requires_grad=True, dtype="int64"), TypeError,
     r"floating-point tensors can require gradients, got dtype int64"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_device_of_another_namespace_is_refused():
    import array_api_strict

    with pytest.raises(ValueError, match=r"zeros: device=.* is a device of array_api_strict, "
                                         r"not of xp=numpy"):
        npdeq.zeros(2, xp=np, device=array_api_strict.Device("device1"))


def test_zeros_and_ones_like_take_a_dtype(xp, to_xp, check_array):
    a = to_xp(np.ones((2, 3)))
    for make, value in ((npdeq.zeros_like, 0.0), (npdeq.ones_like, 1.0)):
        same = make(a)
        check_array(same, shape=(2, 3), dtype=xp.float64)
        for dtype in (xp.float32, "float32"):
            out = make(npdeq.tensor(a), dtype, requires_grad=True)
            check_array(out, shape=(2, 3), dtype=xp.float32)
            assert out.requires_grad and float(xp.max(out.data)) == value
    with pytest.raises(TypeError, match="not a dtype"):
        npdeq.zeros_like(a, "float7")
