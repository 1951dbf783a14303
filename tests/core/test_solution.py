"""The solve's record, ``info['solution']``: every field checked against an independent
computation in every mode of both cores (training/eval, one state/a tuple state, Jacobian
regularisation on/off), the ``jac_loss_freq`` semantics, and the return codes."""

from __future__ import annotations

import dataclasses
import gc
import warnings
import weakref

import numpy as np
import pytest

import npdeq
from npdeq import backend
from npdeq.core import DEQIndexing, DEQSliced, DEQSolution
from npdeq.grad.state import as_state_tuple, pack_tensors, unpack_tensors
from npdeq.nn import init, manual_seed
from npdeq.testing import numerical_jacobian

from core_problems import TwoState, assert_close, mlp_map

CORES = {"indexing": DEQIndexing, "sliced": DEQSliced}
# Training graphs the record must describe: IFT, PhantomGrad, and several sampled states.
TRAINING = [dict(ift=True), dict(grad=2), dict(n_states=2, grad=[1, 2], ift=True)]
JAC = dict(jac_loss_weight=0.5, jac_loss_freq=1.0)


def np_state(z):
    """A state (Tensor/array or tuple of them) as a list of NumPy arrays."""
    return [backend.to_numpy(s.data if isinstance(s, npdeq.Tensor) else s)
            for s in as_state_tuple(z)]


def packed(z):
    return np.concatenate([s.reshape(s.shape[0], -1) for s in np_state(z)], axis=1)


def problem(name, to_xp):
    """``(func, z0, params)``: the MLP map (one state) or the two-state map, with every
    parameter requiring grad."""
    m = mlp_map(to_xp) if name == "mlp" else TwoState(to_xp)
    p = {k: npdeq.Tensor(v, requires_grad=True) for k, v in m.params.items()}
    func = ((lambda z: m.func(z, **p)) if name == "mlp" else m.func(**p))
    return func, m.z0, p


def packed_func(func, shapes):
    """``func`` as a map on the packed ``(B, D)`` state, for a dense Jacobian."""
    return lambda z: pack_tensors(as_state_tuple(func(*unpack_tensors(z, shapes))))


def dense_estimate(func, z_star, seed):
    """The Hutchinson estimate the core must report, from a finite-difference Jacobian: the
    probe the core drew from npdeq's default generator after ``manual_seed(seed)``, applied
    to the dense Jacobian of the whole batch."""
    states = as_state_tuple(z_star)
    shapes = [tuple(s.shape) for s in states]
    manual_seed(seed)
    rng = init.generator()
    probes = [backend.random_normal(shape, like=s.data, seed=rng) for shape, s in zip(shapes,
                                                                                     states)]
    z = pack_tensors([npdeq.Tensor(s.data) for s in states]).data
    n = int(np.prod(z.shape))
    jac = numerical_jacobian(packed_func(func, shapes), z).reshape(n, n)  # whole batch
    v = packed(tuple(probes)).reshape(-1)
    return float(np.sum((v @ jac) ** 2) / n)


def run(core, func, z0, training, **settings):
    deq = CORES[core](f_max_iter=30, f_tol=1e-30, **settings).train(training)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
        return deq(func, z0)


@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("name", ["mlp", "two_state"])
@pytest.mark.parametrize("training, settings",
                         [(False, {})] + [(True, s) for s in TRAINING])
@pytest.mark.parametrize("jac", [False, True], ids=["no_jac", "jac"])
def test_record_in_every_mode(xp, to_xp, check_array, core, name, training, settings, jac):
    func, z0, params = problem(name, to_xp)
    manual_seed(11)
    z_out, info = run(core, func, z0, training, **settings, **(JAC if jac else {}))
    sol = info["solution"]
    assert isinstance(sol, DEQSolution)
    # z_star: the returned state's value, detached, in the state's structure
    assert type(sol.z_star) is type(z_out[-1])
    for s, z in zip(as_state_tuple(sol.z_star), as_state_tuple(z_out[-1])):
        assert not s.requires_grad
        check_array(s, shape=z.shape, dtype=xp.float64)
        assert_close(s, z, rtol=0, atol=0)
    # u0: the initial state used
    for u, a in zip(as_state_tuple(sol.u0), as_state_tuple(z0)):
        assert_close(u, a, rtol=0, atol=0)
    # residual: ||f(z*) - z*|| per sample, recomputed here
    with npdeq.no_grad():
        image = func(*(npdeq.Tensor(s.data) for s in as_state_tuple(sol.z_star)))
    expected = np.linalg.norm(packed(image) - packed(sol.z_star), axis=1)
    check_array(sol.residual, shape=(z0[0] if name != "mlp" else z0).shape[:1])
    np.testing.assert_allclose(backend.to_numpy(sol.residual), expected, rtol=1e-12,
                               atol=1e-15)
    # nfe: the solver's count (tol is out of reach: the whole budget)
    assert sol.nfe == info["nfe"] == 30
    assert "solution" not in sol.stats and "backward" not in sol.stats
    assert_close(sol.stats["abs_lowest"], info["abs_lowest"], rtol=0, atol=0)
    # jacobian_loss: None when off; the dense-Jacobian value of the drawn probe when on
    if not jac:
        assert sol.jacobian_loss is None
        return
    loss = sol.jacobian_loss
    check_array(loss, shape=(), dtype=xp.float64)
    assert loss.requires_grad is training
    expected = dense_estimate(func, sol.z_star, seed=11)
    np.testing.assert_allclose(float(backend.to_scalar(loss.data)), expected, rtol=1e-6)
    if training:  # trainable: reaches the parameters of f
        loss.backward()
        assert all(p.grad is not None for k, p in params.items() if k != "x")


def test_jacobian_loss_matches_the_dense_frobenius_norm_in_expectation(xp, to_xp):
    """A linear map z -> z A^T + x has J = A for each sample: over a large batch the one-probe
    estimate averages to ||A||_F^2 / D."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))
    A = 0.6 * A / np.linalg.norm(A, 2)
    a, x = to_xp(A), to_xp(rng.standard_normal((3000, 3)))
    func = lambda z: z @ npdeq.Tensor(a).T + x  # noqa: E731
    manual_seed(0)
    _, info = run("sliced", func, to_xp(np.zeros((3000, 3))), False, **JAC)
    estimate = float(backend.to_scalar(info["solution"].jacobian_loss.data))
    assert abs(estimate / (np.sum(A * A) / 3) - 1.0) < 0.1


@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_jac_loss_freq_semantics(core):
    """The decision is host-side: NumPy only."""
    func, z0, _ = problem("mlp", np.asarray)

    def computed(training, calls=1, **settings):
        return [run(core, func, z0, training, ift=True, **settings)[1]["solution"]
                .jacobian_loss is not None for _ in range(calls)]

    # off unless both the weight and the frequency are positive, in either mode
    for settings in ({}, dict(jac_loss_weight=0.5), dict(jac_loss_freq=1.0)):
        assert computed(True, **settings) == computed(False, **settings) == [False]
    # freq >= 1: every training call (and no coin is drawn: test_record_in_every_mode finds
    # the probe to be the generator's first draw after manual_seed)
    assert computed(True, 3, **JAC) == [True] * 3
    # 0 < freq < 1: a draw u < freq per training call, reproducible through manual_seed
    half = dict(jac_loss_weight=0.5, jac_loss_freq=0.5)
    manual_seed(5)
    first = computed(True, 30, **half)
    manual_seed(5)
    assert computed(True, 30, **half) == first
    assert 5 < sum(first) < 25
    # eval: always when on (no draw)
    assert computed(False, 3, **half) == [True] * 3


def test_return_codes(to_xp):
    """converged / max_iter / nonfinite per sample, with the solver's flags."""
    def func(z):
        # sample 0 converges fast; sample 1 slowly; sample 2 blows up to inf then NaN
        scale = npdeq.Tensor(to_xp(np.array([[0.1], [0.99], [1.0]])))
        blow = npdeq.Tensor(to_xp(np.array([[0.0], [0.0], [1e308]])))
        return scale * z + 1.0 + blow * (z + 1.0) * 10.0

    deq = DEQIndexing(f_max_iter=8, f_tol=1e-6).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        _, info = deq(func, to_xp(np.zeros((3, 2))))
    sol = info["solution"]
    assert sol.retcode == ["converged", "max_iter", "nonfinite"]
    assert not sol.success
    assert backend.to_numpy(sol.converged).tolist() == [True, False, False]
    assert backend.to_numpy(sol.nonfinite).tolist() == [False, False, True]
    assert "retcode=['converged', 'max_iter', 'nonfinite']" in repr(sol)


def test_record_is_immutable_and_replace_adds_fields(to_xp):
    func, z0, _ = problem("mlp", to_xp)
    sol = run("indexing", func, z0, False)[1]["solution"]
    with pytest.raises(AttributeError):
        sol.nfe = 3
    extra = sol.replace(skip_loss=npdeq.tensor(1.0))
    assert extra.skip_loss is not None and sol.skip_loss is None and extra.nfe == sol.nfe
    with pytest.raises(TypeError):
        sol.replace(unknown=1)


def test_record_under_no_grad_and_with_a_tensor_initial_state(to_xp):
    """An eval call under no_grad still gets its Jacobian term (recorded internally); a
    Tensor z_init that requires grad is recorded detached, not modified."""
    func, z0, _ = problem("mlp", to_xp)
    z_init = npdeq.Tensor(z0 + 0.1, requires_grad=True)
    before = backend.to_numpy(z_init.data).copy()
    deq = DEQIndexing(f_tol=1e-6, **JAC).eval()
    with npdeq.no_grad():
        _, info = deq(func, z_init)
    sol = info["solution"]
    assert sol.jacobian_loss is not None and not sol.jacobian_loss.requires_grad
    assert not sol.u0.requires_grad and sol.u0 is not z_init
    np.testing.assert_array_equal(backend.to_numpy(z_init.data), before)
    assert sol.success


def test_the_residual_costs_a_call_of_f_only_when_read():
    calls = []

    def f(z):
        calls.append(1)
        return 0.5 * z + 1.0

    deq = npdeq.get_deq(core="indexing", f_tol=1e-8).eval()
    _, info = deq(f, np.zeros((2, 3)))
    assert len(calls) == info["nfe"]  # building the record evaluated nothing
    residual = info["solution"].residual
    assert len(calls) == info["nfe"] + 1
    assert info["solution"].residual is residual  # computed once, then kept
    assert len(calls) == info["nfe"] + 1
    np.testing.assert_allclose(residual, 0.0, atol=1e-7)


def test_reading_the_residual_leaves_the_record_unchanged_and_lets_go_of_f():
    class Half:
        calls = 0

        def __call__(self, z):
            Half.calls += 1
            return 0.5 * z + 1.0

    f = Half()
    alive = weakref.ref(f)
    _, info = npdeq.get_deq(core="indexing", f_tol=1e-8).eval()(f, np.zeros((2, 3)))
    sol = info["solution"]
    copy = sol.replace(nfe=0)
    fields = [getattr(sol, k.name) for k in dataclasses.fields(sol)]
    del f
    residual = copy.residual
    assert [getattr(sol, k.name) for k in dataclasses.fields(sol)] == fields
    assert sol.residual is residual and Half.calls == info["nfe"] + 1  # one call for both
    gc.collect()
    assert alive() is None  # the record keeps the residual, not f and what f holds
    assert not hasattr(sol, "__dict__")  # a slotted record: nothing can be cached on it


def test_a_read_record_pickles_takes_weak_references_and_a_residual_value():
    import pickle

    deq = npdeq.get_deq(core="indexing", f_tol=1e-8, jac_loss_weight=1.0, jac_loss_freq=1.0)
    _, info = deq.train()(lambda z: 0.5 * z + 1.0, np.zeros((2, 3)))
    sol = info["solution"]
    assert sol.jacobian_loss is not None  # the residual was computed with the Jacobian term
    again = pickle.loads(pickle.dumps(sol))
    np.testing.assert_array_equal(again.residual, sol.residual)
    assert weakref.ref(sol)() is sol
    given = sol.replace(residual_of=np.array([1.0, 2.0]))  # a value, not a callable
    np.testing.assert_array_equal(given.residual, [1.0, 2.0])
