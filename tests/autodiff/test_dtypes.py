"""Dtypes never change behind the user's back: gradients take their input's dtype, one
promotion rule for mixed float32/float64 ops, a settable default dtype, no implicit
conversion of a Tensor to a NumPy array."""

import array_api_strict
import numpy as np
import pytest

import npdeq
from npdeq import backend


@pytest.fixture
def restore_default_dtype():
    """Put the default dtype back after the test, also when it fails."""
    previous = npdeq.get_default_dtype()
    yield
    npdeq.set_default_dtype(previous)


def _leaf(to_xp, values, dtype):
    return npdeq.Tensor(to_xp(np.asarray(values, dtype=dtype)), requires_grad=True)


# --- gradients take their input's dtype ---------------------------------------------------------

def test_float32_linear_on_float64_input_gives_float32_grads(xp, xp_device, to_xp, check_array):
    layer = npdeq.nn.Linear(3, 2, xp=xp, dtype=xp.float32, device=xp_device, seed=0)
    x = _leaf(to_xp, [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], np.float64)
    out = layer(x)
    check_array(out, shape=(2, 2), dtype=xp.float64)          # the values promote
    (out * out).sum().backward()
    check_array(layer.weight.grad, shape=(2, 3), dtype=xp.float32)
    check_array(layer.bias.grad, shape=(2,), dtype=xp.float32)
    check_array(x.grad, shape=(2, 3), dtype=xp.float64)
    # the float64 gradient, rounded once to float32
    w = backend.to_numpy(layer.weight.data).astype(np.float64)
    b = backend.to_numpy(layer.bias.data).astype(np.float64)
    xs = backend.to_numpy(x.data)
    expected = 2 * (xs @ w.T + b).T @ xs
    np.testing.assert_array_equal(layer.weight.grad.numpy(), expected.astype(np.float32))


def test_second_order_and_grad_outputs_keep_the_input_dtype(xp, to_xp, check_array):
    a = _leaf(to_xp, [1.0, 2.0, 3.0], np.float32)
    b = _leaf(to_xp, [0.5, 0.5, 0.5], np.float64)
    g, = npdeq.grad((a * a * b).sum(), [a], create_graph=True)
    check_array(g, dtype=xp.float32)
    gg = npdeq.grad(g.sum(), a)
    check_array(gg, dtype=xp.float32)
    np.testing.assert_array_equal(gg.numpy(), [1.0, 1.0, 1.0])
    # a float64 cotangent handed to a float32 output (PyTorch casts it too)
    c = _leaf(to_xp, [1.0, 2.0], np.float32)
    y = c * 3.0
    check_array(npdeq.grad(y, y, to_xp(np.array([1.0, 1.0])), retain_graph=True),
                dtype=xp.float32)
    y.backward(to_xp(np.array([1.0, 1.0])))
    check_array(c.grad, dtype=xp.float32)


# --- one promotion rule ---------------------------------------------------------------------------

def test_mixed_float32_float64_ops_follow_the_array_api_rule(xp, xp_device, to_xp, check_array):
    x32 = npdeq.Tensor(to_xp(np.ones(3), np.float32))
    x64 = npdeq.Tensor(to_xp(np.ones(3), np.float64))
    check_array(x32 * x64, dtype=xp.float64)
    check_array(x32 @ x64, dtype=xp.float64)
    # Python scalars never promote
    for out in (x32 * 2.0, 2.0 + x32, x32 / 3.0, x32 ** 2.0, x32 - 1):
        check_array(out, shape=(3,), dtype=xp.float32)
    # a 0-d float64 Tensor is an array: it promotes, as in NumPy 2 and the array API
    two = npdeq.tensor(2.0, xp=xp, device=xp_device)
    check_array(two, shape=(), dtype=xp.float64)
    check_array(x32 * two, dtype=xp.float64)
    check_array(x32 * npdeq.tensor(2.0, dtype=xp.float32, xp=xp, device=xp_device),
                dtype=xp.float32)


# --- the default dtype ----------------------------------------------------------------------------

def test_set_default_dtype_applies_to_new_layers_and_python_data(restore_default_dtype):
    old = npdeq.nn.Linear(2, 2)
    npdeq.set_default_dtype("float32")
    assert npdeq.get_default_dtype() == np.float32
    assert npdeq.get_default_dtype(array_api_strict) == array_api_strict.float32
    layer = npdeq.nn.Linear(2, 2)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert old.weight.dtype == np.float64                     # nothing existing changes
    assert npdeq.tensor([1.0, 2.0]).dtype == np.float32
    assert npdeq.tensor(0.5).dtype == np.float32
    assert npdeq.Tensor(1.5).dtype == np.float32
    assert npdeq.tensor(1.0, xp=array_api_strict).dtype == array_api_strict.float32
    assert npdeq.tensor([1j]).dtype == np.complex64
    assert npdeq.tensor([1, 2]).dtype == np.int64             # ints stay ints
    assert npdeq.tensor(np.ones(2)).dtype == np.float64       # arrays keep their dtype
    assert npdeq.tensor([1.0], dtype=np.float64).dtype == np.float64
    npdeq.set_default_dtype(np.float64)
    assert npdeq.tensor([1.0]).dtype == np.float64


def test_default_dtype_context_restores_even_after_an_error():
    assert npdeq.get_default_dtype() == "float64"
    with pytest.raises(RuntimeError, match="inside"):
        with npdeq.default_dtype(array_api_strict.float32):
            assert npdeq.nn.Linear(2, 2).weight.dtype == np.float32
            raise RuntimeError("inside")
    assert npdeq.get_default_dtype() == "float64"


@pytest.mark.parametrize("dtype", [np.float32, np.dtype("float32"), "float32",
                                   array_api_strict.float32])
def test_default_dtype_accepts_names_and_namespace_dtypes(dtype, restore_default_dtype):
    npdeq.set_default_dtype(dtype)
    assert npdeq.get_default_dtype() == np.float32


@pytest.mark.parametrize("dtype", ["int64", np.int32, np.complex64, np.float16, "float",
                                   float, None, array_api_strict.bool, "f4"])
def test_default_dtype_refuses_anything_but_float32_and_float64(dtype, restore_default_dtype):
    with pytest.raises(TypeError, match=r"float32 or float64 .*got"):
        npdeq.set_default_dtype(dtype)
    with pytest.raises(TypeError, match="float32 or float64"):
        with npdeq.default_dtype(dtype):
            pass
    assert npdeq.get_default_dtype() == "float64"


# --- no implicit conversion to NumPy -----------------------------------------------------------

def test_numpy_conversion_of_a_tensor_is_refused_with_the_way_out():
    t = npdeq.tensor([1.0, 2.0], requires_grad=True)
    for convert in (np.asarray, np.array, lambda x: np.array([x, x]),
                    lambda x: np.asarray(x, dtype=np.float32)):
        with pytest.raises(TypeError, match=r"implicitly.*\.numpy\(\).*\.data"):
            convert(t)
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
