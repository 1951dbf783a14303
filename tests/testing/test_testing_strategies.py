"""Strategies: maps have the stated contraction, states and configs are well formed, and
everything lands in the requested namespace and device.

Raw arrays are wrapped in a Tensor for ``check_array``, which reads ``x.data`` (a NumPy
array's ``data`` is its buffer)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given, strategies as st

from npdeq import Tensor, backend
from npdeq.testing.strategies import (MATRIX_STRUCTURES, SOLVER_NAMES, contractive_maps,
                                      deq_configs, states)


@given(data=st.data())
def test_contractive_maps_have_the_stated_contraction(xp, xp_device, check_array, data):
    m = data.draw(contractive_maps(xp=xp, device=xp_device))
    W = backend.to_numpy(m.params["W"])
    d, b = W.shape[0], m.z0.shape[0]
    np.testing.assert_allclose(np.linalg.norm(W, 2), m.contraction, rtol=1e-10)
    if m.structure == "orthogonal":  # every singular value equals the contraction
        np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), m.contraction,
                                   rtol=1e-10)
    for name, shape in {"W": (d, d), "U": (d, m.params["x"].shape[1]), "b": (d,),
                        "x": (b, m.params["x"].shape[1])}.items():
        check_array(Tensor(m.params[name]), shape=shape, dtype=xp.float64)
    check_array(Tensor(m.z0), shape=(b, d), dtype=xp.float64)
    # The map's Lipschitz constant in z is at most the contraction (exactly, if linear).
    rng = np.random.default_rng(0)
    z1, z2 = (xp.asarray(rng.standard_normal((b, d)), device=xp_device) for _ in range(2))
    delta = backend.to_numpy(m.func(z1, **m.params) - m.func(z2, **m.params))
    gap = np.linalg.norm(backend.to_numpy(z1 - z2), axis=1)
    assert np.all(np.linalg.norm(delta, axis=1) <= m.contraction * gap * (1 + 1e-12))


@given(m=contractive_maps(dim=st.integers(1, 5), kind="linear", contraction=0.9))
def test_linear_reference_fixed_point_is_a_fixed_point(m):
    z = m.reference_fixed_point()
    p = {k: backend.to_numpy(v) for k, v in m.params.items()}
    np.testing.assert_allclose(m.func(z, **p), z, rtol=1e-10, atol=1e-12)


@given(m=contractive_maps(dim=3, kind="tanh_mlp", contraction=st.floats(0.1, 0.8)))
def test_tanh_reference_fixed_point_is_a_fixed_point(m):
    z = m.reference_fixed_point()
    p = {k: backend.to_numpy(v) for k, v in m.params.items()}
    np.testing.assert_allclose(m.func(z, **p), z, atol=1e-12)


@given(m=contractive_maps(dim=4, batch=2, in_dim=3, contraction=0.3, kind="tanh_mlp",
                          structure="rank1", dtype="float32"))
def test_fixed_values_are_respected(m):
    assert (m.kind, m.structure, m.contraction) == ("tanh_mlp", "rank1", 0.3)
    assert m.params["W"].dtype == np.float32 and m.z0.shape == (2, 4)
    assert np.linalg.matrix_rank(m.params["W"], tol=1e-5) == 1
    assert set(MATRIX_STRUCTURES) >= {"dense", "orthogonal"}


@given(data=st.data())
def test_states_share_the_batch_dimension(xp, xp_device, check_array, data):
    z = data.draw(states(batch=3, xp=xp, device=xp_device))
    parts = z if isinstance(z, tuple) else (z,)
    for p in parts:
        check_array(Tensor(p), dtype=xp.float64)
        assert p.shape[0] == 3 and 2 <= p.ndim <= 3
        assert np.all(np.abs(backend.to_numpy(p)) <= 2.0)


@given(single=states(as_tuple=False, count=3), pair=states(as_tuple=True, count=2,
                                                           dtype="float32"))
def test_states_tuple_control(single, pair):
    assert not isinstance(single, tuple)
    assert isinstance(pair, tuple) and len(pair) == 2
    assert all(p.dtype == np.float32 for p in pair) and pair[0].shape[0] == pair[1].shape[0]


@given(config=deq_configs(partial=False, max_iter=12))
def test_deq_configs_are_consistent(config):
    assert config["f_solver"] in SOLVER_NAMES and config["b_solver"] in SOLVER_NAMES
    assert 1 <= config["f_max_iter"] <= 12 and 1 <= config["b_max_iter"] <= 12
    assert config["f_stop_mode"] in ("abs", "rel") and config["core"] in ("indexing", "sliced")
    assert 0.1 <= config["tau"] <= 1.0 and config["grad"] >= 1
    assert config["n_states"] <= config["f_max_iter"]
    if config["indexing"] is not None:
        assert all(1 <= i <= config["f_max_iter"] for i in config["indexing"])
        assert config["indexing"] == sorted(config["indexing"])
    if config["sup_loc"] is not None:
        assert all(1 <= i <= config["grad"] for i in config["sup_loc"])


@given(config=deq_configs(solvers=["anderson"]), full=deq_configs(partial=False))
def test_partial_configs_draw_subsets(config, full):
    assert config.get("f_solver", "anderson") == "anderson"
    assert set(config) <= set(full)


@given(config=deq_configs(max_iter=50))
def test_partial_configs_stay_consistent_with_the_defaults(config):
    # A kept sup_loc keeps the grad it was drawn within, an indexing its f_max_iter.
    from npdeq.core.config import DEFAULTS

    full = {**DEFAULTS, **config}
    if full["sup_loc"] is not None:
        grads = full["grad"] if isinstance(full["grad"], list) else [full["grad"]]
        assert all(1 <= i <= min(grads) for i in full["sup_loc"])
    if full["indexing"] is not None:
        assert all(1 <= i <= full["f_max_iter"] for i in full["indexing"])
        assert full["n_states"] == 1


def test_importing_npdeq_does_not_import_hypothesis():
    code = ("import sys, npdeq, npdeq.testing; "
            "assert 'hypothesis' not in sys.modules, 'hypothesis imported'; "
            "npdeq.testing.contractive_maps; assert 'hypothesis' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
