"""The solvers' bookkeeping shortcuts give what the general computation gives: the tracker's
path for an iteration where every sample was pending, Anderson's Gram row on large states
(the new slot's entry taken from the tracker), the small batched solve and the packed counts
of the backend helpers behind them."""

from __future__ import annotations

import numpy as np
import pytest

from npdeq import backend
from npdeq.backend.counting import count_true
from npdeq.solver import anderson_solver
from npdeq.solver.stats import LARGE_STATE, SolveTracker

from solver_problems import host
from test_solver_rules import hand_anderson_step


# --- backend helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_small_solve_is_numpy_linalg_solve_bit_for_bit(dtype, batch):
    rng = np.random.default_rng(0)
    for n in range(1, 7):
        for scale in (1e-6, 1.0, 1e4):
            g = (scale * rng.standard_normal((batch, n, 9))).astype(dtype)
            a = g @ np.swapaxes(g, 1, 2) + dtype(1e-3 * scale ** 2) * np.eye(n, dtype=dtype)
            b = rng.standard_normal((batch, n)).astype(dtype)
            got = backend.solve_vectors(a, b)
            expected = np.linalg.solve(a, b[..., None])[..., 0]
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


def test_small_solve_of_a_singular_matrix_raises_linalg_error(xp, to_xp):
    a = to_xp(np.ones((2, 3, 3)))
    with pytest.raises(Exception) as caught:
        backend.solve_vectors(a, to_xp(np.ones((2, 3))))
    if backend.is_numpy(xp):
        assert isinstance(caught.value, np.linalg.LinAlgError)


def test_small_solve_in_any_namespace(xp, to_xp):
    a = to_xp(np.array([[[2.0, 1.0], [1.0, 3.0]], [[4.0, 0.0], [0.0, 0.5]]]))
    x = backend.solve_vectors(a, to_xp(np.ones((2, 2))))
    assert backend.array_namespace(x) is xp and x.shape == (2, 2)
    np.testing.assert_allclose(host(x), [[0.4, 0.2], [0.25, 2.0]], rtol=1e-14)


def test_count_true_reads_once(xp, to_xp, sync_calls):
    masks = [to_xp(np.array(m, dtype=bool)) for m in
             ([True, False, True, True], [False] * 4, [True] * 4)]
    assert count_true(*masks) == (3, 0, 4)
    assert count_true(masks[0]) == (3,)
    # NumPy arrays need no read at all; other namespaces one per call.
    assert len(sync_calls) == (0 if backend.is_numpy(xp) else 2)


# --- the tracker's path for "every sample pending" ------------------------------------------


def _observations(to_xp):
    """A sequence of (x, f(x)) for 4 samples: improvements, a non-improvement (sample 1 at
    step 3), convergence at tol 0.05 ('abs': sample 2 at step 4, sample 0 at step 6), NaN (sample 3
    at step 5), and an exact zero residual (sample 1 at step 6)."""
    x = np.zeros((4, 3))
    residuals = [
        [1.0, 1.0, 1.0, 1.0],
        [0.5, 0.8, 0.6, 0.9],
        [0.3, 0.9, 0.2, 0.7],
        [0.2, 0.7, 0.01, 0.6],
        [0.1, 0.6, 0.01, np.nan],
        [0.04, 0.0, 0.01, 0.5],
        [0.01, 0.0, 0.0, 0.4],
    ]
    out = []
    for k, r in enumerate(residuals):
        xk = x + 0.1 * k  # images of norm about k / 6: 'rel' differs from 'abs'
        fx = xk.copy()
        fx[:, 0] += np.array(r)
        out.append((to_xp(xk), to_xp(fx)))
    return out


def _run(tracker, observations, general):
    returned, nexts = [], []
    for x, fx in observations:
        if general:  # the general updates, as for a tracker whose samples a solver froze
            tracker._pending_arrays = (None, None)
        returned.append(tracker.observe(x, fx))
        nexts.append(host(tracker.next_iterate(fx)))
    z, trajectory, info = tracker.finish(lambda p: p, "test", warn=False)
    return returned, nexts, host(z), [host(t) for t in trajectory], info


@pytest.mark.parametrize("stop_mode", ["abs", "rel"])
@pytest.mark.parametrize("tol", [0.05, 0.0, None])
@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("return_final", [False, True])
@pytest.mark.parametrize("steps", [2, 3, 5, 7])
def test_pending_path_matches_the_general_updates(stop_mode, tol, per_sample, return_final,
                                                  steps, xp, to_xp):
    """Run for ``steps`` observations (a solve stopped there) both ways."""
    observations = _observations(to_xp)[:steps]
    runs = []
    for general in (False, True):
        tracker = SolveTracker(observations[0][0], tol, stop_mode, [1, 3, 5, 7],
                               return_final=return_final, per_sample=per_sample)
        runs.append(_run(tracker, observations, general))
    (ret, nexts, z, traj, info), (ret_g, nexts_g, z_g, traj_g, info_g) = runs
    assert ret == ret_g
    for a, b in zip(nexts + traj + [z], nexts_g + traj_g + [z_g]):
        np.testing.assert_array_equal(a, b)
    assert set(info) == set(info_g) and info["nfe"] == info_g["nfe"]
    for key in info:
        if key != "nfe":
            assert info[key].dtype == info_g[key].dtype, key
            np.testing.assert_array_equal(host(info[key]), host(info_g[key]), err_msg=key)


def test_pending_path_after_a_solver_froze_samples(xp, to_xp):
    """A solver that freezes samples itself (as GMRES does for non-finite products) replaces
    ``active``: the tracker no longer assumes every sample pending."""
    x0 = to_xp(np.zeros((2, 2)))
    tracker = SolveTracker(x0, 1e-3, "abs", [])
    assert tracker.observe(x0, to_xp(np.ones((2, 2))))
    tracker.active = to_xp(np.array([False, True]))
    tracker.nonfinite = to_xp(np.array([True, False]))
    tracker.all_active = False
    assert tracker.observe(x0, to_xp(np.full((2, 2), 0.5)))
    assert host(tracker.nstep).tolist() == [1, 2]
    np.testing.assert_allclose(host(tracker.lowest), [2 ** 0.5, 2 ** -0.5], rtol=1e-15)


# --- Anderson on a large state ---------------------------------------------------------------


@pytest.mark.parametrize("m, tau", [(3, 1.0), (4, 0.6)])
def test_anderson_mixes_as_documented_on_a_large_state(m, tau, xp, to_xp):
    """States of at least LARGE_STATE values take the Gram row without the new slot's
    product (the tracker's squared norm instead): past the ring buffer's wrap-around every
    iterate is still the documented mix of the last m iterates and images."""
    batch, dim = 2, LARGE_STATE // 2
    rng = np.random.default_rng(1)
    w = rng.standard_normal((dim, 8)) / np.sqrt(dim)
    u = rng.standard_normal((8, dim)) / np.sqrt(8)
    inj = rng.standard_normal((batch, dim))
    W1, U1, INJ = to_xp(w), to_xp(u), to_xp(inj)

    def host_func(z):  # a contraction of rank 8 around a fixed injection
        return 0.9 * np.tanh(z @ w) @ u + inj

    inputs = []

    def func(z):
        inputs.append(host(z).copy())
        return 0.9 * xp.tanh(z @ W1) @ U1 + INJ

    anderson_solver(func, to_xp(np.zeros((batch, dim))), max_iter=2 * m + 2, tol=0.0, m=m,
                    tau=tau)
    fs = [host_func(x) for x in inputs]
    for k in range(len(inputs) - 1):
        expected = hand_anderson_step(inputs[:k + 1], fs[:k + 1], m, 1e-4, tau)
        np.testing.assert_allclose(inputs[k + 1], expected, rtol=1e-8, atol=1e-10,
                                   err_msg=f"iterate {k + 1}")
