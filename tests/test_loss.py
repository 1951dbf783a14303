"""npdeq.loss: TorchDEQ's jac_reg, power_method, fp_correction and register_weight_func."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq import loss as deq_loss
from npdeq.core import sradius
from npdeq.loss import fp_correction, jac_reg, power_method, register_weight_func, weight_funcs
from npdeq.testing import check_grads, numerical_jacobian


# -- jac_reg --------------------------------------------------------------------------------


def _tanh_map(W, b):
    return lambda z: npdeq.tanh(z @ W.T + b)


def test_jac_reg_equals_frobenius_norm_over_numel(xp, to_xp, check_array):
    """With the probes sqrt(n) e_i (sum_i v_i v_i^T = n I) the estimate is exact."""
    rng = np.random.default_rng(0)
    W, b, z_np = rng.standard_normal((3, 3)), rng.standard_normal(3), rng.standard_normal((2, 3))
    f = _tanh_map(npdeq.Tensor(to_xp(W)), npdeq.Tensor(to_xp(b)))
    z = npdeq.Tensor(to_xp(z_np), requires_grad=True)
    probes = [to_xp(np.sqrt(6.0) * np.eye(6)[i].reshape(2, 3)) for i in range(6)]
    value = jac_reg(f(z), z, probes=probes)
    check_array(value, shape=())
    dense = numerical_jacobian(f, to_xp(z_np))
    np.testing.assert_allclose(float(value.data), np.sum(dense ** 2) / 6, rtol=1e-7)
    # Many random probes approach it too.
    value = jac_reg(f(z), z, vecs=500, seed=0, create_graph=False)
    np.testing.assert_allclose(float(value.data), np.sum(dense ** 2) / 6, rtol=0.15)


def test_jac_reg_gradient_matches_finite_differences_and_is_nonzero(xp, to_xp):
    rng = np.random.default_rng(1)
    W, b = to_xp(0.7 * rng.standard_normal((4, 4))), to_xp(rng.standard_normal(4))
    z_np = to_xp(rng.standard_normal((3, 4)))

    def regulariser(W, b):
        with npdeq.enable_grad():  # finite differences call this under no_grad
            z = npdeq.Tensor(z_np, requires_grad=True)
            return jac_reg(_tanh_map(W, b)(z), z, vecs=2, seed=4)  # probes held fixed

    check_grads(regulariser, W, b, rtol=1e-6, atol=1e-9)
    Wt, bt = npdeq.Tensor(W, requires_grad=True), npdeq.Tensor(b, requires_grad=True)
    gW, gb = npdeq.grad(regulariser(Wt, bt), [Wt, bt])
    assert float((gW * gW).sum().data) > 1e-6 and float((gb * gb).sum().data) > 1e-6


def test_jac_reg_on_a_tuple_state(xp, to_xp):
    z = npdeq.Tensor(to_xp(np.ones((2, 3))), requires_grad=True)
    y = npdeq.Tensor(to_xp(np.ones((2, 2))), requires_grad=True)
    f0 = (3.0 * z, 2.0 * y)  # J = diag(3, ..., 2, ...): ||J||_F^2 = 6 * 9 + 4 * 4
    value = jac_reg(f0, (z, y), vecs=500, seed=0, create_graph=False)
    np.testing.assert_allclose(float(value.data), (54 + 16) / 10, rtol=0.15)


def test_jac_reg_matches_the_shared_estimator():
    z = npdeq.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    f0 = npdeq.tanh(2.0 * z)
    assert float(jac_reg(f0, z, vecs=3, seed=2).data) == float(
        npdeq.grad.jacobian_frobenius(f0, z, vecs=3, seed=2).data)


# -- power_method ---------------------------------------------------------------------------


def test_power_method_is_the_cores_implementation():
    assert power_method is sradius.power_method


def test_power_method_finds_a_known_spectral_radius(xp, to_xp, check_array):
    """A non-symmetric map with eigenvalues (-0.9, 0.6, 0.3, 0.1): radius 0.9 per sample."""
    rng = np.random.default_rng(2)
    basis = rng.standard_normal((4, 4)) + 3 * np.eye(4)
    A = basis @ np.diag([-0.9, 0.6, 0.3, 0.1]) @ np.linalg.inv(basis)
    z = npdeq.Tensor(to_xp(rng.standard_normal((3, 4))), requires_grad=True)
    f0 = npdeq.tanh(z * 0.0) + z @ npdeq.Tensor(to_xp(A)).T
    evector, evalue = power_method(f0, z, n_iters=200, seed=0)
    check_array(evalue, shape=(3,))
    check_array(evector, shape=(3, 4))
    np.testing.assert_allclose(evalue.numpy(), 0.9, rtol=1e-8)
    # The vector is a unit left eigenvector: v^T A = -0.9 v^T.
    v = evector.numpy()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-10)
    np.testing.assert_allclose(v @ A, -0.9 * v, atol=1e-7)


# -- fp_correction --------------------------------------------------------------------------


def _weights(n, weight_func="exp", **kwargs):
    """The weight of each state: the gradient of the loss with respect to its term."""
    terms = [npdeq.tensor(1.0, requires_grad=True) for _ in range(n)]
    out = fp_correction(lambda t: t, (terms,), weight_func=weight_func, **kwargs)
    return [float(g.data) for g in npdeq.grad(out, terms)]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_exp_weights(n):
    np.testing.assert_allclose(_weights(n), [0.8 ** (n - 1 - k) for k in range(n)],
                               rtol=1e-15)
    np.testing.assert_allclose(_weights(n, "exp", gamma=0.5),
                               [0.5 ** (n - 1 - k) for k in range(n)], rtol=1e-15)


def test_linear_weights():
    np.testing.assert_allclose(_weights(4, "linear"), [0.325, 0.55, 0.775, 1.0], rtol=1e-14)
    np.testing.assert_allclose(_weights(2, "linear", gamma=1.0, bias=0.5), [1.0, 1.5],
                               rtol=1e-15)
    assert _weights(1, "linear") == [1.0]


@pytest.mark.parametrize("n", [1, 3, 6])
def test_const_weights(n):
    assert _weights(n, "const") == [1.0] * n
    assert _weights(n, "const", c=2.5) == [2.5] * n


def test_shared_arguments_broadcast_and_loss_values(xp, to_xp, check_array):
    zs = [npdeq.Tensor(to_xp(np.full((2, 3), v)), requires_grad=True) for v in (3.0, 2.0, 1.0)]
    y = npdeq.Tensor(to_xp(np.zeros((2, 3))))
    mask = [to_xp(np.ones((2, 3)))]  # a length-1 sequence repeats like a shared value
    crit = lambda z, y, m: (((z - y) * m) ** 2).mean()  # noqa: E731
    out, values = fp_correction(crit, (zs, y, mask), return_loss_values=True)
    check_array(out, shape=())
    assert values == [9.0, 4.0, 1.0] and all(type(v) is float for v in values)
    np.testing.assert_allclose(float(out.data), 0.64 * 9 + 0.8 * 4 + 1.0, rtol=1e-14)
    out.backward()
    for z, w, v in zip(zs, (0.64, 0.8, 1.0), (3.0, 2.0, 1.0)):
        check_array(z.grad, shape=(2, 3))
        np.testing.assert_allclose(z.grad.numpy(), w * 2 * v / 6, rtol=1e-14)
    assert len(zs) == 3 and len(mask) == 1  # inputs untouched
    # Tuples are sequences too; a lone tensor is one state.
    assert fp_correction(crit, (tuple(zs), y, mask), weight_func="const").item() == 14.0
    assert fp_correction(crit, (zs[0], y, mask[0])).item() == 9.0


def test_register_weight_func_and_callables(monkeypatch):
    monkeypatch.setattr(deq_loss, "_WEIGHT_FUNCS", dict(deq_loss._WEIGHT_FUNCS))
    register_weight_func("last", lambda n, k, scale=1.0: scale * float(k == n - 1))
    assert "last" in weight_funcs()
    assert _weights(3, "last") == [0.0, 0.0, 1.0]
    assert _weights(3, "last", scale=4.0) == [0.0, 0.0, 4.0]
    register_weight_func("last", lambda n, k: 2.0)  # replaces
    assert _weights(2, "last") == [2.0, 2.0]
    assert _weights(3, lambda n, k: float(k)) == [0.0, 1.0, 2.0]  # a callable directly
    with pytest.raises(TypeError, match="func must be callable, got int"):
        register_weight_func("bad", 3)
    with pytest.raises(TypeError, match="name must be a str"):
        register_weight_func(1, lambda n, k: 1.0)


def test_fp_correction_errors():
    z = npdeq.tensor(1.0)
    crit = lambda a, b=None: a  # noqa: E731
    with pytest.raises(ValueError, match=r"unknown weight_func 'cubic'; registered: .*'const'"
                                         r".*'exp'.*'linear'"):
        fp_correction(crit, ([z],), weight_func="cubic")
    with pytest.raises(ValueError, match=r"different lengths \{0: 2, 1: 3\}"):
        fp_correction(crit, ([z, z], [z, z, z]))
    with pytest.raises(ValueError, match=r"args\[1\] is an empty list"):
        fp_correction(crit, ([z], []))
    with pytest.raises(ValueError, match="args is empty"):
        fp_correction(crit, ())
    with pytest.raises(TypeError, match="args must be a list or tuple"):
        fp_correction(crit, z)
    with pytest.raises(TypeError, match=r"weight_func 'const' does not accept the keyword "
                                        r"arguments \['gamma'\]"):
        fp_correction(crit, ([z, z],), weight_func="const", gamma=0.5)


# -- hardening: numeric arguments finite, NumPy scalars accepted ---------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("weight_func, kwargs, match", [
    ("exp", {"gamma": NAN}, "gamma"), ("exp", {"gamma": INF}, "gamma"),
    ("exp", {"gamma": -0.5}, "gamma"), ("linear", {"gamma": NAN}, "gamma"),
    ("linear", {"bias": INF}, "bias"), ("const", {"c": NAN}, r"\bc\b"),
    (lambda n, k: NAN, {}, r"weight .*nan.*state 0 of 2"),
    (lambda n, k: float("inf") if k else 1.0, {}, r"weight inf to state 1 of 2"),
])
def test_fp_correction_refuses_non_finite_weights(weight_func, kwargs, match):
    z = npdeq.tensor(1.0)
    with pytest.raises(ValueError, match=match):
        fp_correction(lambda a: a, ([z, z],), weight_func=weight_func, **kwargs)


def test_fp_correction_accepts_numpy_scalars():
    assert _weights(3, "exp", gamma=np.float32(0.5)) == _weights(3, "exp", gamma=0.5)
    assert _weights(2, "const", c=np.int64(2)) == [2.0, 2.0]


def test_jac_reg_vecs_checked_and_numpy_integers_accepted():
    W = npdeq.tensor(0.5 * np.eye(3), requires_grad=True)
    z = npdeq.tensor(np.ones((2, 3)), requires_grad=True)
    f0 = z @ W
    expected = jac_reg(f0, z, vecs=3, seed=0).item()
    assert jac_reg(f0, z, vecs=np.int64(3), seed=0).item() == expected
    for bad in (NAN, 2.0, 0, True):
        with pytest.raises(ValueError, match="vecs"):
            jac_reg(f0, z, vecs=bad, seed=0)
