"""Power method on VJPs and the spectral radius of a DEQ map at a point."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq.core import DEQIndexing, DEQSliced, power_method, spectral_radius


def matrix_with_spectrum(rng, eigenvalues):
    """A non-symmetric matrix with the given real eigenvalues."""
    d = len(eigenvalues)
    Q = rng.standard_normal((d, d)) + 2 * np.eye(d)
    return Q @ np.diag(eigenvalues) @ np.linalg.inv(Q)


@pytest.mark.parametrize("dominant", [0.8, -0.7])
@pytest.mark.parametrize("core", [DEQIndexing, DEQSliced])
def test_sradius_mode_on_a_linear_map_matches_numpy(xp, to_xp, check_array, dominant, core):
    rng = np.random.default_rng(3)
    A0 = matrix_with_spectrum(rng, [dominant, 0.45, -0.3, 0.2, 0.1, -0.05])
    rho = np.max(np.abs(np.linalg.eigvals(A0)))
    A, b = npdeq.tensor(to_xp(A0), requires_grad=True), to_xp(rng.standard_normal((4, 6)))
    deq = core(f_solver="anderson", f_tol=1e-10, f_max_iter=100).eval()
    z_out, info = deq(lambda z: z @ A.T + b, to_xp(np.zeros((4, 6))), sradius_mode=True)
    check_array(info["sradius"], shape=(4,), dtype=xp.float64)
    np.testing.assert_allclose(npdeq.backend.to_numpy(info["sradius"]), rho, rtol=1e-3)
    assert A.grad is None and not z_out[0].requires_grad


def test_sradius_is_zero_unless_asked_and_in_training(xp, to_xp, check_array):
    A = npdeq.tensor(to_xp(0.5 * np.eye(3)), requires_grad=True)
    f = lambda z: z @ A.T + 1.0  # noqa: E731
    for deq in (DEQIndexing().eval(), DEQIndexing()):
        _, info = deq(f, to_xp(np.zeros((2, 3))), sradius_mode=deq.training)
        check_array(info["sradius"], shape=(2,))
        assert np.all(npdeq.backend.to_numpy(info["sradius"]) == 0)


def test_power_method_on_a_tuple_state(xp, to_xp, check_array):
    """Block-diagonal map on a (B, 2) and a (B, 3) state: the radius is the larger block's."""
    rng = np.random.default_rng(0)
    A0, B0 = matrix_with_spectrum(rng, [0.3, 0.1]), matrix_with_spectrum(rng, [-0.6, 0.2, 0.1])
    z = npdeq.tensor(to_xp(rng.standard_normal((3, 2))), requires_grad=True)
    y = npdeq.tensor(to_xp(rng.standard_normal((3, 3))), requires_grad=True)
    outs = (z @ npdeq.tensor(to_xp(A0)).T, y @ npdeq.tensor(to_xp(B0)).T)
    vectors, rho = power_method(outs, (z, y), n_iters=100, seed=1)
    check_array(rho, shape=(3,), dtype=xp.float64)
    np.testing.assert_allclose(rho.numpy(), 0.6, rtol=1e-6)
    assert isinstance(vectors, tuple) and tuple(vectors[1].shape) == (3, 3)
    check_array(vectors[0], shape=(3, 2))
    # the eigenvector of J^T lives in the second block only
    assert np.all(np.abs(vectors[0].numpy()) < 1e-6)


def test_spectral_radius_of_a_nonlinear_map_and_of_a_constant_map(xp, to_xp, check_array):
    W0 = np.diag([0.5, -0.25])
    W = npdeq.tensor(to_xp(W0))
    z = to_xp(np.zeros((2, 2)))          # tanh'(0) = 1: J = W
    rho = spectral_radius(lambda z: npdeq.tanh(z @ W.T), z, seed=0)
    check_array(rho, shape=(2,))
    np.testing.assert_allclose(npdeq.backend.to_numpy(rho), 0.5, rtol=1e-9)
    zero = spectral_radius(lambda z: z * 0.0 + 1.0, z, n_iters=3, seed=0)
    np.testing.assert_array_equal(npdeq.backend.to_numpy(zero), 0.0)
    check_array(zero, shape=(2,))


def test_power_method_errors():
    z = npdeq.tensor(np.zeros((1, 2)), requires_grad=True)
    with pytest.raises(ValueError, match="n_iters"):
        power_method(z * 2.0, z, n_iters=0)
    with pytest.raises(ValueError, match="square Jacobian"):
        power_method(npdeq.concat([z, z], axis=1), z)
