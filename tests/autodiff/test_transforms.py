"""jvp and hvp: against finite differences, closed forms and the transpose of the VJP;
nesting (derivatives of the results); tuple arguments; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npdeq
from npdeq.autodiff import grad, hvp, jvp, vjp
from npdeq.backend import to_numpy

RNG = np.random.default_rng(0)
W1, B1 = RNG.standard_normal((3, 5)), RNG.standard_normal(5)
W2 = RNG.standard_normal((5, 2))


def make_mlp(to_xp=np.asarray):
    """A tanh MLP of two arguments of different sizes, two outputs of different shapes."""
    w1, b1, w2 = (npdeq.tensor(to_xp(a)) for a in (W1, B1, W2))

    def mlp(x, s):
        h = npdeq.tanh(x @ w1 + s * b1)
        y = npdeq.tanh(h @ w2)
        return y, (y * y).sum() * s
    return mlp


def _fd_jvp(f, primals, tangents, h=1e-6):
    plus = f(*[npdeq.tensor(p + h * t) for p, t in zip(primals, tangents)])
    minus = f(*[npdeq.tensor(p - h * t) for p, t in zip(primals, tangents)])
    plus, minus = (plus, minus) if isinstance(plus, tuple) else ((plus,), (minus,))
    return [(to_numpy(a.data) - to_numpy(b.data)) / (2 * h) for a, b in zip(plus, minus)]


def test_jvp_equals_finite_differences_and_the_transposed_vjp(xp, to_xp, check_array):
    mlp = make_mlp(to_xp)
    x, s = RNG.standard_normal((4, 3)), np.array(0.7)
    v, vs = RNG.standard_normal((4, 3)), np.array(-1.3)
    outs, tangents = jvp(mlp, (to_xp(x), to_xp(s)), (to_xp(v), to_xp(vs)))
    assert isinstance(outs, tuple) and isinstance(tangents, tuple)
    check_array(tangents[0], shape=(4, 2), dtype=xp.float64)
    check_array(tangents[1], shape=(), dtype=xp.float64)
    for t, fd in zip(tangents, _fd_jvp(make_mlp(), (x, s), (v, vs))):
        np.testing.assert_allclose(to_numpy(t.data), fd, rtol=1e-7, atol=1e-9)
    # <J v, w> = <v, J^T w> to rounding.
    w = (RNG.standard_normal((4, 2)), np.array(0.4))
    _, vjp_fn = vjp(lambda a, b: mlp(a, b)[0], to_xp(x), to_xp(s))
    jt_w = vjp_fn(to_xp(w[0]))
    lhs = float(np.sum(to_numpy(tangents[0].data) * w[0]))
    rhs = float(np.sum(to_numpy(jt_w[0].data) * v) + to_numpy(jt_w[1].data) * vs)
    assert abs(lhs - rhs) <= 1e-12 * (1 + abs(lhs))
    # The outputs are fn's values, untouched by the dummy cotangent, and detached.
    direct = mlp(npdeq.tensor(to_xp(x)), npdeq.tensor(to_xp(s)))
    for o, d in zip(outs, direct):
        assert not o.requires_grad
        np.testing.assert_array_equal(to_numpy(o.data), to_numpy(d.data))


@settings(max_examples=15)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_jvp_of_matmul_chains_is_the_transpose_of_the_vjp(batch, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((d_in, 3)), rng.standard_normal((3, d_out))
    f = lambda x, a: npdeq.tanh(x @ a) @ npdeq.tensor(B)  # noqa: E731
    x, v = rng.standard_normal((batch, d_in)), rng.standard_normal((batch, d_in))
    va, w = rng.standard_normal(A.shape), rng.standard_normal((batch, d_out))
    out, jv = jvp(f, (x, A), (v, va))
    assert jv.shape == out.shape == (batch, d_out)
    _, vjp_fn = vjp(f, x, A)
    gx, ga = vjp_fn(w)
    lhs, rhs = np.sum(jv.data * w), np.sum(gx.data * v) + np.sum(ga.data * va)
    assert abs(lhs - rhs) <= 1e-12 * (1 + abs(lhs))
    np.testing.assert_allclose(jv.data, _fd_jvp(f, (x, A), (v, va))[0], rtol=1e-6, atol=1e-8)


def test_jvp_single_arguments_constants_and_identity(xp, to_xp, check_array):
    x = to_xp(np.array([0.5, -1.0]))
    out, t = jvp(lambda a: a, x, to_xp(np.array([2.0, 3.0])))  # fn returns its argument
    np.testing.assert_array_equal(to_numpy(t.data), [2.0, 3.0])
    out, t = jvp(lambda a: npdeq.sign(a) + 1.0, x, x)  # a constant: zero tangent
    check_array(t, shape=(2,), dtype=xp.float64)
    np.testing.assert_array_equal(to_numpy(t.data), [0.0, 0.0])
    out, ts = jvp(lambda a, b: (a * 2.0, b), (x, x), (x, to_xp(np.zeros(2))))
    np.testing.assert_array_equal(to_numpy(ts[0].data), 2 * to_numpy(x))


def test_grad_of_a_jvp_through_a_closed_over_parameter():
    # d/dW <J_x(W) v, w> for f = tanh(x W): the second pass is recorded because W requires grad.
    x, v, w = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 3)), RNG.standard_normal((2, 4))
    W0, D = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))

    def projected(Wa, h=0.0):
        W = npdeq.tensor(Wa, requires_grad=True)
        _, t = jvp(lambda a: npdeq.tanh(a @ W), x, v)
        return (t * npdeq.tensor(w)).sum(), W

    value, W = projected(W0)
    assert value.requires_grad
    (gW,) = grad(value, [W])
    fd = (projected(W0 + 1e-6 * D)[0].item() - projected(W0 - 1e-6 * D)[0].item()) / 2e-6
    assert abs(np.sum(gW.data * D) - fd) <= 1e-7 * (1 + abs(fd))
    _, t = jvp(lambda a: npdeq.tanh(a @ W), x, v, create_graph=False)
    assert not t.requires_grad


def test_forward_over_reverse_equals_reverse_over_reverse(xp, to_xp):
    A = RNG.standard_normal((4, 4))
    x, v = to_xp(RNG.standard_normal(4)), to_xp(RNG.standard_normal(4))
    f = lambda a: npdeq.logsumexp(a @ npdeq.tensor(to_xp(A)) * a, axis=0)  # noqa: E731
    _, fwd = jvp(lambda a: grad(f(a), a, create_graph=True), x, v)
    _, rev = hvp(f, x, v)
    np.testing.assert_allclose(to_numpy(fwd.data), to_numpy(rev.data), rtol=1e-12, atol=1e-14)


def _lse_hessian(x):
    p = np.exp(x - x.max())
    p /= p.sum()
    return np.diag(p) - np.outer(p, p)


def test_hvp_closed_forms(xp, to_xp, check_array):
    A = RNG.standard_normal((5, 5))
    A = A + A.T
    x, v = RNG.standard_normal(5), RNG.standard_normal(5)
    value, hv = hvp(lambda a: 0.5 * (a @ npdeq.tensor(to_xp(A)) * a).sum(), to_xp(x), to_xp(v))
    check_array(hv, shape=(5,), dtype=xp.float64)
    assert abs(value.item() - 0.5 * x @ A @ x) <= 1e-12 * abs(x @ A @ x)
    np.testing.assert_allclose(to_numpy(hv.data), A @ v, rtol=1e-12, atol=1e-12)
    _, hv = hvp(lambda a: npdeq.logsumexp(a, axis=0), to_xp(x), to_xp(v))
    np.testing.assert_allclose(to_numpy(hv.data), _lse_hessian(x) @ v, rtol=1e-12, atol=1e-14)


def test_hvp_of_tuple_primals_equals_finite_differences_of_the_gradient():
    a, b = RNG.standard_normal(3), RNG.standard_normal((2, 2))
    va, vb = RNG.standard_normal(3), RNG.standard_normal((2, 2))
    f = lambda a, b: npdeq.logsumexp(npdeq.sin(a)[:2] @ b * npdeq.tensor([1.0, 2.0]), axis=0)  # noqa: E731

    def gradient(a, b):
        leaves = [npdeq.tensor(a, requires_grad=True), npdeq.tensor(b, requires_grad=True)]
        return [g.data for g in grad(f(*leaves), leaves)]

    _, (ha, hb) = hvp(f, (a, b), (va, vb))
    h = 1e-5
    plus, minus = gradient(a + h * va, b + h * vb), gradient(a - h * va, b - h * vb)
    np.testing.assert_allclose(ha.data, (plus[0] - minus[0]) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(hb.data, (plus[1] - minus[1]) / (2 * h), rtol=1e-6, atol=1e-9)


def test_third_derivative_through_a_recorded_hvp():
    # f = sum x^4: H v = 12 x^2 v, and grad of sum(H v) is 24 x v.
    x = npdeq.tensor(RNG.standard_normal(3), requires_grad=True)
    v = RNG.standard_normal(3)
    _, hv = hvp(lambda a: (a ** 4).sum(), x, v)
    assert hv.requires_grad
    np.testing.assert_allclose(grad(hv.sum(), x).data, 24 * x.data * v, rtol=1e-12)
    # The caller's argument is not changed and its .grad not touched.
    assert x.grad is None


def test_hvp_of_a_function_not_depending_on_an_argument():
    _, (ha, hb) = hvp(lambda a, b: (a ** 3).sum(), (np.ones(2), np.ones(3)),
                      (np.ones(2), np.ones(3)))
    np.testing.assert_array_equal(ha.data, [6.0, 6.0])
    np.testing.assert_array_equal(hb.data, np.zeros(3))


@pytest.mark.parametrize("call, error, message", [
    (lambda: jvp(lambda a: a.data, np.ones(2), np.ones(2)), TypeError,
     "fn's output is a ndarray: fn must return a Tensor"),
    (lambda: jvp(lambda a: (a, 1.0), np.ones(2), np.ones(2)), TypeError,
     "fn's output 1 is a float"),
    (lambda: jvp(npdeq.sin, np.ones(2), np.ones(3)), ValueError,
     r"tangents has shape \(3,\) but the primal has shape \(2,\)"),
    (lambda: jvp(npdeq.sin, (np.ones(2),), (np.ones(2, np.float32),)), TypeError,
     "tangents\\[0\\] has dtype float32 but the primal has dtype float64"),
    (lambda: jvp(npdeq.sin, (np.ones(2),), (np.ones(2), np.ones(2))), ValueError,
     "tangents has 2 entries but primals has 1"),
    (lambda: jvp(npdeq.sin, (np.ones(2),), np.ones(2)), TypeError,
     "tangents must have the structure of primals \\(a tuple\\)"),
    (lambda: jvp(npdeq.sin, np.arange(3), np.arange(3)), TypeError,
     "primals must have a real floating-point dtype, got int64"),
    (lambda: jvp(npdeq.sin, ("a",), ("a",)), TypeError, "primals\\[0\\] must be an array"),
    (lambda: jvp(npdeq.sin, (), ()), ValueError, "primals is empty"),
    (lambda: jvp("sin", np.ones(2), np.ones(2)), TypeError, "fn must be callable"),
    (lambda: hvp(npdeq.sin, np.ones(2), np.ones(2)), ValueError,
     r"fn must return a scalar \(a one-element Tensor\) .* shape \(2,\)"),
    (lambda: hvp(lambda a: (a.sum(), a.sum()), np.ones(2), np.ones(2)), ValueError,
     "fn must return a scalar"),
    (lambda: hvp(lambda a: a.sum(), np.ones(2), np.ones((2, 1))), ValueError,
     "vectors has shape"),
])
def test_bad_input_is_refused_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_transforms_work_inside_no_grad_and_leave_nothing_recorded():
    x, v = np.array([0.3, -0.2]), np.array([1.0, 1.0])
    with npdeq.no_grad():
        out, t = jvp(npdeq.tanh, x, v)
        value, hv = hvp(lambda a: (a ** 3).sum(), x, v)
    np.testing.assert_allclose(t.data, (1 - np.tanh(x) ** 2) * v, rtol=1e-14)
    np.testing.assert_allclose(hv.data, 6 * x * v, rtol=1e-14)
    assert not (out.requires_grad or t.requires_grad or value.requires_grad or hv.requires_grad)
    assert npdeq.is_grad_enabled()
