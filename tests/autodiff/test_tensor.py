"""The Tensor API: attributes, conversions, operators (reflected ones with NumPy arrays and
Python scalars), constructors, and the integer-dtype error."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq import backend


@pytest.fixture
def a0():
    return np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])


def test_attributes(xp, xp_device, to_xp, check_array, a0):
    data = to_xp(a0)
    t = npdeq.Tensor(data, requires_grad=True)
    assert t.data is data
    assert t.requires_grad and t.grad is None and t.is_leaf
    assert t.shape == (2, 3) and isinstance(t.shape, tuple)
    assert t.dtype == xp.float64
    assert t.device == xp_device
    assert t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.xp is xp
    assert "requires_grad=True" in repr(t)
    assert backend.namespace_name(xp) in repr(t)
    check_array(t.T, shape=(3, 2), dtype=xp.float64)
    np.testing.assert_array_equal(t.T.numpy(), a0.T)
    assert t.T.requires_grad and not t.T.is_leaf


def test_detach_shares_data_and_cuts_the_graph(xp, to_xp, a0):
    t = npdeq.Tensor(to_xp(a0), requires_grad=True)
    y = t * 2.0
    d = y.detach()
    assert d.data is y.data
    assert not d.requires_grad and d.is_leaf and d.grad is None
    assert not (d * 3.0).requires_grad


def test_item_numpy_and_python_conversions(xp, to_xp, a0):
    t = npdeq.Tensor(to_xp(a0))
    one = t[1, 1]
    assert one.item() == 4.0 and isinstance(one.item(), float)
    assert float(one) == 4.0 and int(one) == 4 and bool(one)
    assert npdeq.Tensor(to_xp(np.array([[7]]))).item() == 7
    assert isinstance(npdeq.Tensor(to_xp(np.array([7]))).item(), int)
    assert npdeq.Tensor(to_xp(np.array(True))).item() is True
    with pytest.raises(ValueError, match=r"one element, got shape \(2, 3\)"):
        t.item()
    host = t.numpy()
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, a0)
    host[0, 0] = 100.0  # a copy for non-NumPy namespaces; NumPy data is returned as is
    if not backend.is_numpy(xp):
        assert t.numpy()[0, 0] == 1.0


def test_backward_method(xp, to_xp, check_array, a0):
    t = npdeq.Tensor(to_xp(a0), requires_grad=True)
    (t * t).sum().backward()
    check_array(t.grad, shape=(2, 3), dtype=xp.float64)
    np.testing.assert_array_equal(t.grad.numpy(), 2 * a0)
    assert isinstance(t.grad, npdeq.Tensor) and not t.grad.requires_grad


def test_requires_grad_toggles(xp, to_xp, a0):
    t = npdeq.Tensor(to_xp(a0))
    assert not t.requires_grad
    assert t.requires_grad_() is t and t.requires_grad
    t.requires_grad_(False)
    assert not t.requires_grad
    y = npdeq.Tensor(to_xp(a0), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match="only be turned off on a leaf.*detach"):
        y.requires_grad_(False)


@pytest.mark.parametrize("make", [
    lambda d: npdeq.Tensor(d, requires_grad=True),
    lambda d: npdeq.tensor(d, requires_grad=True),
    lambda d: npdeq.as_tensor(d, requires_grad=True),
    lambda d: npdeq.Tensor(d).requires_grad_(),
    lambda d: npdeq.zeros_like(d, requires_grad=True),
], ids=["Tensor", "tensor", "as_tensor", "requires_grad_", "zeros_like"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_tensors_cannot_require_grad(xp, to_xp, make, dtype):
    data = to_xp(np.array([1, 0, 1]).astype(dtype))
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, "
                                        f"got dtype .*{np.dtype(dtype).name}"):
        make(data)


# --- operators -----------------------------------------------------------------------------


_BINARY = {
    "+": (lambda x, y: x + y, np.add), "-": (lambda x, y: x - y, np.subtract),
    "*": (lambda x, y: x * y, np.multiply), "/": (lambda x, y: x / y, np.divide),
    "**": (lambda x, y: x ** y, np.power),
}


@pytest.mark.parametrize("symbol", list(_BINARY))
@pytest.mark.parametrize("scalar", [2, 1.5])
def test_operators_with_python_scalars_on_either_side(xp, to_xp, check_array, a0, symbol,
                                                      scalar):
    op, reference = _BINARY[symbol]
    base = np.abs(a0) + 0.5  # positive, for ** with a fractional exponent
    t = npdeq.Tensor(to_xp(base), requires_grad=True)
    for out, expected in [(op(t, scalar), reference(base, scalar)),
                          (op(scalar, t), reference(scalar, base))]:
        assert isinstance(out, npdeq.Tensor) and out.requires_grad
        check_array(out, shape=(2, 3), dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-15)
        (g,) = npdeq.grad(out.sum(), [t])
        check_array(g, shape=(2, 3), dtype=xp.float64)


@pytest.mark.parametrize("symbol", [*_BINARY, "@"])
def test_operators_with_numpy_arrays_on_either_side(a0, symbol):
    # NumPy defers to Tensor's reflected operators (Tensor.__array_ufunc__ is None).
    op, reference = {**_BINARY, "@": (lambda x, y: x @ y, np.matmul)}[symbol]
    base = np.abs(a0) + 0.5
    right = np.linspace(0.5, 2.0, 6).reshape(3, 2) if symbol == "@" else base[::-1] + 1.0
    left = np.linspace(0.5, 2.0, 8).reshape(4, 2) if symbol == "@" else right
    t = npdeq.Tensor(base, requires_grad=True)
    for out, expected in [(op(t, right), reference(base, right)),
                          (op(left, t), reference(left, base))]:
        assert isinstance(out, npdeq.Tensor) and out.requires_grad
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-15)
        (g,) = npdeq.grad(out.sum(), [t])
        assert g.shape == base.shape


def test_unary_operators_and_comparisons(xp, to_xp, check_array, a0):
    t = npdeq.Tensor(to_xp(a0), requires_grad=True)
    for out, expected in [(-t, -a0), (+t, a0), (abs(t), np.abs(a0))]:
        check_array(out, shape=(2, 3), dtype=xp.float64)
        np.testing.assert_array_equal(out.numpy(), expected)
    assert (+t) is t
    for out, expected in [(t < 1.0, a0 < 1.0), (t <= 1.0, a0 <= 1.0), (t > 1.0, a0 > 1.0),
                          (t >= 1.0, a0 >= 1.0), (t == 3.0, a0 == 3.0), (t != 3.0, a0 != 3.0),
                          (t > npdeq.Tensor(to_xp(a0[::-1])), a0 > a0[::-1])]:
        assert isinstance(out, npdeq.Tensor) and not out.requires_grad
        check_array(out, shape=(2, 3), dtype=xp.bool)
        np.testing.assert_array_equal(out.numpy(), expected)


def test_method_forms_of_ops(xp, to_xp, check_array, a0):
    t = npdeq.Tensor(to_xp(a0), requires_grad=True)
    pos = npdeq.Tensor(to_xp(np.abs(a0) + 0.1))
    for name, out, expected in [
        ("exp", t.exp(), np.exp(a0)), ("log", pos.log(), np.log(np.abs(a0) + 0.1)),
        ("sqrt", pos.sqrt(), np.sqrt(np.abs(a0) + 0.1)), ("abs", t.abs(), np.abs(a0)),
        ("tanh", t.tanh(), np.tanh(a0)), ("sigmoid", t.sigmoid(), 1 / (1 + np.exp(-a0))),
        ("relu", t.relu(), np.maximum(a0, 0)), ("clip", t.clip(-1.0, 1.0), np.clip(a0, -1, 1)),
        ("matmul", t.matmul(t.T), a0 @ a0.T), ("softmax", t.softmax(axis=0),
                                               np.exp(a0) / np.exp(a0).sum(0)),
    ]:
        check_array(out, shape=expected.shape, dtype=xp.float64)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-14, err_msg=name)


# --- constructors --------------------------------------------------------------------------


def test_tensor_copies_and_as_tensor_shares(xp, to_xp, check_array, a0):
    data = to_xp(a0)
    copied = npdeq.tensor(data)
    shared = npdeq.as_tensor(data)
    check_array(copied, shape=(2, 3), dtype=xp.float64)
    check_array(shared, shape=(2, 3), dtype=xp.float64)
    assert copied.data is not data
    if backend.is_numpy(xp):
        assert shared.data is data
    host = np.array(a0)
    t = npdeq.tensor(host)
    host[0, 0] = 99.0
    assert t.numpy()[0, 0] == 1.0  # a copy
    assert np.shares_memory(npdeq.as_tensor(host).data, host)


def test_as_tensor_of_a_tensor(xp, to_xp, a0):
    t = npdeq.Tensor(to_xp(a0))
    assert npdeq.as_tensor(t) is t
    leaf = npdeq.as_tensor(t, requires_grad=True)
    assert leaf is not t and leaf.requires_grad and leaf.data is t.data
    g = npdeq.Tensor(to_xp(a0), requires_grad=True)
    assert npdeq.as_tensor(g, requires_grad=True) is g


def test_constructors_with_dtype_namespace_and_device(xp, xp_device, to_xp, check_array, a0):
    t = npdeq.tensor(a0, xp=xp, device=xp_device, requires_grad=True)
    check_array(t, shape=(2, 3), dtype=xp.float64)
    assert t.requires_grad
    t32 = npdeq.tensor(to_xp(a0), dtype=xp.float32)
    check_array(t32, shape=(2, 3), dtype=xp.float32)
    listed = npdeq.tensor([[1.0, 2.0]], xp=xp, device=xp_device)
    check_array(listed, shape=(1, 2), dtype=xp.float64)
    # Back to NumPy from any namespace and device goes through the host.
    home = npdeq.tensor(to_xp(a0), xp=backend.array_namespace(np.zeros(0)))
    assert isinstance(home.data, np.ndarray)
    np.testing.assert_array_equal(home.data, a0)


def test_python_data_defaults_to_numpy_float64():
    t = npdeq.tensor([1.0, 2.0], requires_grad=True)
    assert isinstance(t.data, np.ndarray) and t.dtype == np.float64
    assert npdeq.Tensor(3.0).shape == ()
    assert npdeq.tensor([1, 2]).dtype == np.int64


@pytest.mark.parametrize("make, value", [(npdeq.zeros_like, 0.0), (npdeq.ones_like, 1.0)])
def test_zeros_like_and_ones_like(xp, to_xp, check_array, a0, make, value):
    for like in (to_xp(a0), npdeq.Tensor(to_xp(a0), requires_grad=True),
                 to_xp(a0.astype(np.float32))):
        out = make(like)
        check_array(out, shape=(2, 3), dtype=like.dtype)
        assert not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), np.full((2, 3), value))
    assert make(to_xp(a0), requires_grad=True).requires_grad


# --- PyTorch habits: the methods a porting user reaches for ---------------------------------


def test_size_is_numpys_count_and_callable_as_pytorchs_shape(a0):
    t = npdeq.Tensor(a0)
    assert t.size == 6 and isinstance(t.size, int) and t.numel() == 6 and t.dim() == 2
    assert t.size() == (2, 3) and t.size(1) == 3 and t.size(-2) == 2
    assert [0] * t.size == [0] * 6 and type(t.size + 1) is int


def test_dim_is_accepted_where_it_means_axis(xp, to_xp, check_array, a0):
    t = npdeq.Tensor(to_xp(a0), requires_grad=True)
    for name in ("sum", "mean", "logsumexp", "prod", "cumsum"):
        kwargs = {} if name == "cumsum" else {"keepdims": True}
        out = getattr(t, name)(dim=1, **({"keepdim": True} if kwargs else {}))
        check_array(out, shape=(2, 3) if name == "cumsum" else (2, 1), dtype=xp.float64)
        np.testing.assert_array_equal(out.numpy(), getattr(t, name)(axis=1, **kwargs).numpy())
    np.testing.assert_array_equal(t.softmax(dim=0).numpy(), npdeq.softmax(t, axis=0).numpy())
    assert t.log_softmax(dim=1).shape == (2, 3) and t.sum(dim=(0, 1)).shape == ()
    assert npdeq.Tensor(to_xp(a0[:, :1])).squeeze(dim=1).shape == (2,)
    with pytest.raises(TypeError, match="axis= or dim="):
        t.sum(1, dim=0)


@pytest.mark.parametrize("name, match", [("max", r"\(values, indices\).*argmax"),
                                         ("min", "argmin"), ("var", "correction=1"),
                                         ("std", "correction=1")])
def test_dim_raises_where_numpys_meaning_differs(a0, name, match):
    t = npdeq.Tensor(a0)
    with pytest.raises(TypeError, match="follows NumPy.*axis=.*" + match):
        getattr(t, name)(dim=1)
    assert "PyTorch users" in getattr(npdeq.Tensor, name).__doc__
    assert getattr(t, name)(axis=1).shape == (2,)


def test_argmax_and_argmin(xp, to_xp, check_array):
    t = npdeq.Tensor(to_xp(np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])))
    np.testing.assert_array_equal(t.argmax(dim=1).numpy(), [1, 0])
    np.testing.assert_array_equal(t.argmin(axis=0, keepdims=True).numpy(), [[0, 1, 0]])
    check_array(t.argmax(), shape=())


def test_transpose_with_two_ints_swaps_them_as_pytorch(a0):
    t = npdeq.Tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    assert t.transpose(0, 2).shape == (4, 3, 2) and t.transpose(-1, 0).shape == (4, 3, 2)
    assert npdeq.Tensor(a0).transpose(0, 1).shape == (3, 2)  # NumPy: the identity
    assert t.transpose().shape == (4, 3, 2) and t.transpose((1, 0, 2)).shape == (3, 2, 4)
    assert t.transpose(1, 2, 0).shape == (3, 4, 2)
    t.transpose(0, 1).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        t.transpose(0, 3)


def test_chunk_follows_pytorch(xp, to_xp, check_array):
    t = npdeq.Tensor(to_xp(np.arange(12.0).reshape(2, 6)), requires_grad=True)
    parts = t.chunk(4, dim=1)  # pieces of ceil(6 / 4) = 2: three of them, as torch.chunk
    assert isinstance(parts, tuple) and [p.shape for p in parts] == [(2, 2)] * 3
    assert [p.shape for p in t.chunk(4, 1)] == [(2, 2)] * 3
    assert [p.shape for p in t.chunk(2)] == [(1, 6)] * 2
    assert [p.shape[1] for p in npdeq.Tensor(np.zeros((1, 5))).chunk(3, axis=-1)] == [2, 2, 1]
    check_array(parts[2], shape=(2, 2), dtype=xp.float64)
    (parts[0].sum() + 2 * parts[2].sum()).backward()
    np.testing.assert_array_equal(t.grad.numpy(), [[1, 1, 0, 0, 2, 2]] * 2)
    assert len(t.chunk(np.int64(2))) == 2  # a count as everywhere: NumPy integers too
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"chunk: chunks must be an int >= 1, got"):
            t.chunk(bad)


def test_clone_is_a_differentiable_copy(xp, to_xp, check_array, a0):
    t = npdeq.Tensor(to_xp(a0), requires_grad=True)
    c = t.clone()
    check_array(c, shape=(2, 3), dtype=xp.float64)
    assert c.data is not t.data and not c.is_leaf
    (c * c).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), 2 * a0)
    d = t.detach()
    assert d.is_leaf and not d.requires_grad and d.data is t.data


def test_to_casts_and_moves_on_the_tape(xp, xp_device, to_xp, check_array, a0):
    t = npdeq.Tensor(np.asarray(a0), requires_grad=True)
    moved = t.to(to_xp(np.zeros(1, dtype=np.float32)))  # another array: its place and dtype
    check_array(moved, shape=(2, 3), dtype=xp.float32)
    (moved * moved).sum().backward()
    assert isinstance(t.grad.data, np.ndarray) and t.grad.dtype == np.float64
    np.testing.assert_allclose(t.grad.numpy(), 2 * a0)
    assert t.to("cpu") is t and t.to(np.float64) is t and t.to("float64", copy=True) is not t
    assert t.float().dtype == np.float32 and t.double().dtype == np.float64
    assert t.to(dtype="float32", non_blocking=True).dtype == np.float32
    labels = t.long()
    assert labels.dtype == np.int64 and not labels.requires_grad
    back = npdeq.Tensor(to_xp(a0), requires_grad=True).cpu()
    assert isinstance(back.data, np.ndarray)
    with pytest.raises(ValueError, match="unknown dtype"):
        t.to("float33")


def test_cuda_without_a_gpu_names_cupy(a0, monkeypatch):
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    with pytest.raises(RuntimeError, match="CuPy"):
        npdeq.Tensor(a0).cuda()
    with pytest.raises(RuntimeError, match="'cuda:1'"):
        npdeq.Tensor(a0).cuda(1)
