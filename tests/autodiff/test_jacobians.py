"""jacobian and hessian: closed forms, forward and reverse modes agreeing, torch's nesting
for tuples, per-sample (batched) Jacobians, the mode choice and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npdeq
from npdeq.autodiff import grad, hessian, jacobian, jacobians
from npdeq.backend import to_numpy
from npdeq.testing import numerical_jacobian

RNG = np.random.default_rng(1)


def test_jacobian_of_a_tanh_layer_in_both_modes(xp, to_xp, check_array):
    W, x = RNG.standard_normal((3, 4)), RNG.standard_normal(3)
    Wt = npdeq.tensor(to_xp(W))
    f = lambda a: npdeq.tanh(a @ Wt)  # noqa: E731
    expected = (1 - np.tanh(x @ W) ** 2)[:, None] * W.T
    for mode in ("forward", "reverse", "auto"):
        J = jacobian(f, to_xp(x), mode=mode)
        check_array(J, shape=(4, 3), dtype=xp.float64)
        assert not J.requires_grad
        np.testing.assert_allclose(to_numpy(J.data), expected, rtol=1e-13, atol=1e-15)


@settings(max_examples=10)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_forward_and_reverse_agree_on_tuples(n, m, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, 2)), rng.standard_normal(m)
    f = lambda a, b: (npdeq.sin(a) * b.sum(), (a ** 2).sum() * b)  # noqa: E731
    fwd = jacobian(f, (a, b), mode="forward")
    rev = jacobian(f, (a, b), mode="reverse")
    shapes = [[(n, 2, n, 2), (n, 2, m)], [(m, n, 2), (m, m)]]
    for i in range(2):
        for j in range(2):
            assert fwd[i][j].shape == rev[i][j].shape == shapes[i][j]
            np.testing.assert_allclose(fwd[i][j].data, rev[i][j].data, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(rev[0][0].data.reshape(2 * n, 2 * n),
                               numerical_jacobian(lambda t: f(t, npdeq.tensor(b))[0], a)
                               .reshape(2 * n, 2 * n), rtol=1e-7, atol=1e-9)


def test_nesting_follows_torch():
    x = np.ones(2)
    assert isinstance(jacobian(lambda a: a * 2.0, x), npdeq.Tensor)
    one_in = jacobian(lambda a: (a * 2.0, a.sum()), x)
    assert isinstance(one_in, tuple) and [t.shape for t in one_in] == [(2, 2), (2,)]
    one_out = jacobian(lambda a, b: a * b, (x, x))
    assert isinstance(one_out, tuple) and [t.shape for t in one_out] == [(2, 2), (2, 2)]
    np.testing.assert_array_equal(jacobian(lambda a, b: a + 0.0, (x, x))[1].data,
                                  np.zeros((2, 2)))  # an unused input: zeros
    for mode in ("forward", "reverse"):  # an input without components
        blocks = jacobian(lambda a, b: a * 2.0 + b.sum(), (x, np.ones((0,))), mode=mode)
        assert [t.shape for t in blocks] == [(2, 2), (2, 0)]


def test_batched_jacobians_are_per_sample(xp, to_xp, check_array):
    W = RNG.standard_normal((3, 2))
    Wt = npdeq.tensor(to_xp(W))
    z = RNG.standard_normal((4, 3))
    f = lambda a: npdeq.tanh(a @ Wt)  # noqa: E731
    for mode in ("forward", "reverse"):
        J = jacobian(f, to_xp(z), batched=True, mode=mode)
        check_array(J, shape=(4, 2, 3), dtype=xp.float64)
        for b in range(4):
            expected = (1 - np.tanh(z[b] @ W) ** 2)[:, None] * W.T
            np.testing.assert_allclose(to_numpy(J.data)[b], expected, rtol=1e-13, atol=1e-15)


def test_auto_picks_the_cheaper_mode(monkeypatch):
    calls = []
    original = jacobians.transposed_vjp

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(jacobians, "transposed_vjp", counting)
    jacobian(lambda a: a * npdeq.tensor(np.arange(8.0)), np.ones(1))  # 1 input, 8 outputs
    assert calls == [1]
    jacobian(lambda a: a.sum(), np.ones(8))  # 8 inputs, 1 output
    assert calls == [1]


def _lse_hessian(x):
    p = np.exp(x - x.max())
    p /= p.sum()
    return np.diag(p) - np.outer(p, p)


def test_hessian_closed_forms(xp, to_xp, check_array):
    x = RNG.standard_normal(4)
    H = hessian(lambda a: npdeq.logsumexp(a, axis=0), to_xp(x))
    check_array(H, shape=(4, 4), dtype=xp.float64)
    np.testing.assert_allclose(to_numpy(H.data), _lse_hessian(x), rtol=1e-12, atol=1e-14)
    # Blocks of f(a, b) = sum(a^2) * sum(b^3).
    a, b = RNG.standard_normal(2), RNG.standard_normal(3)
    blocks = hessian(lambda a, b: (a * a).sum() * (b ** 3).sum(), (to_xp(a), to_xp(b)))
    expected = [[2 * np.sum(b ** 3) * np.eye(2), np.outer(2 * a, 3 * b ** 2)],
                [np.outer(3 * b ** 2, 2 * a), np.sum(a * a) * np.diag(6 * b)]]
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(to_numpy(blocks[i][j].data), expected[i][j], rtol=1e-12)


def test_hessian_equals_the_jacobian_of_the_gradient_in_both_modes():
    A = RNG.standard_normal((3, 3))
    x = RNG.standard_normal((3,))
    f = lambda a: (npdeq.tanh(a @ npdeq.tensor(A)) * a).sum()  # noqa: E731
    H = hessian(f, x)
    g = lambda a: grad(f(a), a, create_graph=True)  # noqa: E731
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(jacobian(g, x, mode=mode).data, H.data, rtol=1e-12,
                                   atol=1e-14)
    np.testing.assert_allclose(H.data, H.data.T, rtol=1e-12, atol=1e-14)


def test_a_recorded_jacobian_can_be_differentiated():
    # d/dx sum(J(x)) for f = x^3 elementwise: J = diag(3 x^2), so the gradient is 6 x.
    x = npdeq.tensor(RNG.standard_normal(3), requires_grad=True)
    for mode in ("forward", "reverse"):
        J = jacobian(lambda a: a ** 3, x, mode=mode)
        assert J.requires_grad
        np.testing.assert_allclose(grad(J.sum(), x).data, 6 * x.data, rtol=1e-12)


@pytest.mark.parametrize("call, error, message", [
    (lambda: jacobian(npdeq.sin, np.ones(2), mode="fwd"), ValueError,
     "mode must be one of 'auto', 'forward', 'reverse', got 'fwd'"),
    (lambda: jacobian(npdeq.sin, np.ones(()), batched=True), ValueError,
     "batched=True needs every input to have the same leading batch axis"),
    (lambda: jacobian(lambda a, b: a, (np.ones((2, 1)), np.ones((3, 1))), batched=True),
     ValueError, "same leading batch axis"),
    (lambda: jacobian(lambda a: a.sum(axis=0), np.ones((2, 3)), batched=True), ValueError,
     "fn's outputs have batch size 3 but its inputs have 2"),
    (lambda: jacobian(lambda a: 1.0, np.ones(2)), TypeError, "fn's output is a float"),
    (lambda: hessian(npdeq.sin, np.ones(2)), ValueError, "fn must return a scalar"),
    (lambda: jacobian(npdeq.sin, np.ones(2), batched="yes"), TypeError,
     "batched must be True or False, got 'yes'"),
    (lambda: hessian(lambda a: a.sum(), np.ones(2), create_graph=1), TypeError,
     "create_graph must be True, False or None, got 1"),
    (lambda: hessian(lambda a: a.sum(), [1, 2]), TypeError,
     "x\\[0\\] must have a real floating-point dtype"),
])
def test_bad_input_is_refused_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_per_sample_jacobians_through_a_fixed_point(mode):
    # z* = tanh(z* W + x) per sample: dz*/dx = (I - D W^T)^{-1} D with D = diag(1 - z*^2).
    W = 0.4 * np.linalg.qr(RNG.standard_normal((3, 3)))[0]
    x = RNG.standard_normal((4, 3))
    Wt = npdeq.tensor(W)

    def z_star(x):
        z, _ = npdeq.fixed_point(lambda z: npdeq.tanh(z @ Wt + x), np.zeros((4, 3)),
                                 solver_kwargs={"tol": 1e-13},
                                 b_solver_kwargs={"tol": 1e-13, "max_iter": 200})
        return z

    J = jacobian(z_star, x, batched=True, mode=mode)
    assert J.shape == (4, 3, 3)
    z = z_star(x).data
    for b in range(4):
        D = np.diag(1 - z[b] ** 2)
        np.testing.assert_allclose(J.data[b], np.linalg.solve(np.eye(3) - D @ W.T, D),
                                   rtol=1e-10, atol=1e-12)
