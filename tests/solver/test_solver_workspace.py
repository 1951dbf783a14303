"""Work arrays borrowed across solves (``npdeq.solver.workspace``) and the tracker's packed
per-iteration flags: a solve's results never depend on what an earlier solve left in a
reused buffer, nested borrows never share an array, and the one-read flags of large states
make the same decisions as the small-state path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import npdeq.solver.stats as stats
from npdeq.solver import anderson_solver, fixed_point_iter
from npdeq.solver.workspace import borrowed

from solver_problems import host


def test_borrowed_arrays_are_reused_and_never_shared_while_borrowed(xp, xp_device):
    shape = (2, 3, 4)
    with borrowed(xp, shape, xp.float64, xp_device, count=2) as (a, b):
        assert a is not b and tuple(a.shape) == shape and a.dtype == xp.float64
        with borrowed(xp, shape, xp.float64, xp_device, count=2) as (c, d):  # nested solve
            assert len({id(a), id(b), id(c), id(d)}) == 4
    with borrowed(xp, shape, xp.float64, xp_device, count=2) as (e, f):
        # NumPy hands the same memory out again; other namespaces allocate afresh.
        assert ((e is a or e is c) if xp.__name__.endswith("numpy") else e is not a)
        assert xp.__name__.endswith("numpy") or f is not b


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_anderson_results_do_not_depend_on_a_previous_solve(xp, to_xp, tau):
    """A solve that leaves NaN in the (reused) history must not change the next one."""
    rng = np.random.default_rng(0)
    batch, dim = 3, 5
    A = to_xp(0.5 * rng.standard_normal((dim, dim)) / np.sqrt(dim))
    b = to_xp(rng.standard_normal((batch, dim)))
    x0 = to_xp(np.zeros((batch, dim)))

    def run():
        return anderson_solver(lambda z: xp.tanh(z @ A + b), x0, max_iter=9, tol=1e-12, m=6,
                               tau=tau)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z_first, _, info_first = run()
        # Sample 0 is NaN at every evaluation; the others keep the loop (and the history
        # writes) going for all nine iterations.
        shift = to_xp(np.array([[np.nan] * dim, [1.0] * dim, [2.0] * dim]))
        _, _, info = anderson_solver(lambda z: 0.99 * z + shift, x0, max_iter=9, tol=1e-12,
                                     m=6, tau=tau)
        assert info["nfe"] == 9 and bool(info["nonfinite"][0])
        z_again, _, info_again = run()
    np.testing.assert_array_equal(host(z_again), host(z_first))
    for key in ("abs_trace", "rel_trace", "nstep"):
        np.testing.assert_array_equal(host(info_again[key]), host(info_first[key]))


@pytest.mark.parametrize("solver", [anderson_solver, fixed_point_iter])
@pytest.mark.parametrize("per_sample", [True, False])
def test_large_state_flags_decide_as_the_small_state_path(solver, per_sample, monkeypatch):
    """Large states read packed sample counts once per iteration; forcing the small-state
    path (a selection and one boolean read) must give identical results, with samples that
    converge at different iterations and one that goes non-finite."""
    rng = np.random.default_rng(1)
    batch, dim = 64, 256  # batch * dim reaches LARGE_STATE
    assert batch * dim >= stats.LARGE_STATE
    rates = np.linspace(0.3, 1.6, batch)[:, None]
    # 0.5 I plus a large nilpotent part in 2x2 blocks: contractive (eigenvalues 0.5 * rate)
    # but far from normal, so residuals grow for a few iterations before they shrink.
    J = 0.5 * np.eye(dim)
    J[np.arange(0, dim, 2), np.arange(1, dim, 2)] = 3.0
    target = rng.standard_normal((batch, dim))
    bad = np.zeros((batch, 1))
    bad[5] = np.nan  # sample 5 goes non-finite at once

    def func(z):
        return rates * (z @ J) + target + bad

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return solver(func, np.zeros((batch, dim)), max_iter=40, tol=1e-6,
                          per_sample=per_sample)

    z_large, _, info_large = run()
    monkeypatch.setattr(stats, "LARGE_STATE", 1 << 62)
    z_small, _, info_small = run()
    np.testing.assert_array_equal(z_large, z_small)
    for key in ("abs_lowest", "abs_trace", "nstep", "converged", "nonfinite"):
        np.testing.assert_array_equal(info_large[key], info_small[key], err_msg=key)
    assert info_large["nfe"] == info_small["nfe"]
    assert info_large["nonfinite"][5] and not info_large["converged"][5]
    # The decisions the flags drive all occurred: samples froze at different iterations,
    # and some sample's residual grew while it was still moving (not every one improved).
    steps = info_large["nstep"]
    assert len(set(steps[info_large["converged"]].tolist())) > 1
    trace = info_large["abs_trace"]
    assert np.any(np.diff(trace, axis=1) > 0)
