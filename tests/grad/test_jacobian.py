"""Hutchinson Jacobian estimate: exact for a scaled basis of probes, unbiased for random
probes, differentiable through the tape's double backward (with the probes held fixed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.grad import jacobian_frobenius
from npdeq.grad.state import pack_tensors, unpack_tensors
from npdeq.testing import check_grads, numerical_jacobian

from deq_problems import MLPProblem, TwoStateProblem


def _basis_probes(shapes, to_xp):
    """``sqrt(n) e_i`` for every entry i of the (possibly tuple) output: sum_i v_i v_i^T
    = n I exactly, so the estimate over these n probes is exactly ||J||_F^2 / n."""
    sizes = [int(np.prod(s)) for s in shapes]
    n = sum(sizes)
    probes = []
    for i in range(n):
        flat = np.zeros(n)
        flat[i] = np.sqrt(n)
        parts, start = [], 0
        for s, size in zip(shapes, sizes):
            parts.append(to_xp(flat[start:start + size].reshape(s)))
            start += size
        probes.append(tuple(parts) if len(shapes) > 1 else parts[0])
    return probes


def _mlp(prob, params=None):
    params = params or {k: npdeq.Tensor(prob.params[k]) for k in prob.names}
    return prob.func(*[params[k] for k in prob.names])


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 3), dim=st.integers(1, 4))
def test_exact_for_a_scaled_basis_of_probes(xp, to_xp, check_array, seed, batch, dim):
    prob = MLPProblem(to_xp, seed, batch=batch, dim=dim, in_dim=2)
    f = _mlp(prob)
    z_np = np.random.default_rng(seed).standard_normal((batch, dim))
    z = npdeq.Tensor(to_xp(z_np), requires_grad=True)
    estimate = jacobian_frobenius(f(z), z, probes=_basis_probes([(batch, dim)], to_xp))
    check_array(estimate, shape=())
    dense = numerical_jacobian(f, to_xp(z_np))
    np.testing.assert_allclose(float(estimate.data), np.sum(dense ** 2) / (batch * dim),
                               rtol=1e-7)


def test_exact_on_a_tuple_state(xp, to_xp):
    prob = TwoStateProblem(to_xp, seed=1)
    f = prob.func(*[npdeq.Tensor(prob.params[k]) for k in prob.names])
    rng = np.random.default_rng(0)
    shapes = [tuple(s.shape) for s in prob.z0]
    zs = tuple(npdeq.Tensor(to_xp(rng.standard_normal(s)), requires_grad=True) for s in shapes)
    estimate = jacobian_frobenius(f(*zs), zs, probes=_basis_probes(shapes, to_xp))

    def packed(zp):  # the whole state as one (B, D) map, for a dense Jacobian
        return pack_tensors(f(*unpack_tensors(zp, shapes)))

    dense = numerical_jacobian(packed, pack_tensors([npdeq.Tensor(z.data) for z in zs]).data)
    np.testing.assert_allclose(float(estimate.data), np.sum(dense ** 2) / dense.shape[0]
                               / dense.shape[1], rtol=1e-7)


def test_random_probes_are_unbiased():
    """Many Gaussian probes approach ||J||_F^2 / numel (standard error about 3% here)."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((3, 3))
    z = npdeq.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    f0 = npdeq.tanh(z @ npdeq.Tensor(W).T)
    jac = (1 - f0.numpy() ** 2)[:, :, None] * W  # per sample diag(1 - f^2) W
    exact = np.sum(jac ** 2) / 6
    estimate = jacobian_frobenius(f0, z, vecs=2000, seed=0, create_graph=False)
    np.testing.assert_allclose(float(estimate.data), exact, rtol=0.1)
    assert not estimate.requires_grad  # no recorded VJPs without create_graph


def test_the_same_seed_draws_the_same_probes(xp, to_xp):
    z = npdeq.Tensor(to_xp(np.ones((2, 3))), requires_grad=True)
    f0 = npdeq.tanh(z * 0.5)
    a, b = (jacobian_frobenius(f0, z, vecs=3, seed=7) for _ in range(2))
    c = jacobian_frobenius(f0, z, vecs=3, seed=8)
    assert float(a.data) == float(b.data) != float(c.data)


@pytest.mark.parametrize("two_state", [False, True], ids=["mlp", "two-state"])
def test_gradient_matches_finite_differences_with_fixed_probes(xp, to_xp, two_state):
    """TorchDEQ issue #10: the regulariser's gradient must reach the parameters."""
    prob = TwoStateProblem(to_xp, seed=2) if two_state else MLPProblem(to_xp, seed=2)
    rng = np.random.default_rng(3)
    z_arrays = [to_xp(rng.standard_normal(tuple(s.shape)))
                for s in (prob.z0 if two_state else (prob.z0,))]

    def estimate(*params):
        # Finite differences call this under no_grad: f must still be recorded for its VJPs.
        with npdeq.enable_grad():
            zs = [npdeq.Tensor(a, requires_grad=True) for a in z_arrays]
            out = prob.func(*params)(*zs)
            return jacobian_frobenius(out, zs if two_state else zs[0], vecs=3, seed=11)

    params = [prob.params[k] for k in prob.names]
    check_grads(estimate, *params, rtol=1e-6, atol=1e-9)
    leaves = [npdeq.Tensor(p, requires_grad=True) for p in params]
    grads = npdeq.grad(estimate(*leaves), leaves)
    assert float(sum((g * g).sum().data for g in grads)) > 1e-6  # nonzero, not just matching


def test_the_graph_of_f0_is_kept_for_the_task_loss(xp, to_xp):
    W = npdeq.Tensor(to_xp(np.eye(2) * 0.5), requires_grad=True)
    z = npdeq.Tensor(to_xp(np.ones((1, 2))), requires_grad=True)
    f0 = npdeq.tanh(z @ W)
    reg = jacobian_frobenius(f0, z, seed=0)
    (f0.sum() + reg).backward()
    assert W.grad is not None and z.grad is not None


def test_f0_independent_of_z0_gives_zero(xp, to_xp, check_array):
    z = npdeq.Tensor(to_xp(np.ones((2, 2))), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.ones((2, 2))), requires_grad=True)
    out = jacobian_frobenius(b * 2.0, z, seed=0)
    check_array(out, shape=())
    assert float(out.data) == 0.0


def test_errors():
    z = npdeq.tensor(np.ones((1, 2)), requires_grad=True)
    f0 = z * 2.0
    with pytest.raises(ValueError, match="vecs must be an int >= 1, got 0"):
        jacobian_frobenius(f0, z, vecs=0)
    with pytest.raises(ValueError, match="vecs must be"):
        jacobian_frobenius(f0, z, vecs=True)
    with pytest.raises(ValueError, match="does not match the 1 probes"):
        jacobian_frobenius(f0, z, vecs=2, probes=[np.ones((1, 2))])
    with pytest.raises(ValueError, match=r"probes\[0\] part 0 has shape \(2,\)"):
        jacobian_frobenius(f0, z, probes=[np.ones(2)])
    with pytest.raises(ValueError, match="probes must be a non-empty"):
        jacobian_frobenius(f0, z, probes=[])
    with pytest.raises(ValueError, match="z0.* does not require grad"):
        jacobian_frobenius(f0, npdeq.tensor(np.ones((1, 2))))
    with pytest.raises(ValueError, match="f0.* has no graph"):
        jacobian_frobenius(npdeq.tensor(np.ones((1, 2))), z)
    with pytest.raises(TypeError, match="f0\\[0\\] is a ndarray"):
        jacobian_frobenius(np.ones((1, 2)), z)
    with pytest.raises(ValueError, match="z0 is an empty sequence"):
        jacobian_frobenius(f0, [])
