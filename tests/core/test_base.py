"""DEQBase: settings, modes, the eval path, solver_kwargs and z_init checks, helpers."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import npdeq
from npdeq.core import DEQBase, DEQIndexing, DEQSliced
from npdeq.core.base import BackwardRecorder, array_map, initial_state, solver_parameters
from npdeq.solver import anderson_solver, register_solver, simple_fixed_point_iter

from core_problems import assert_close, halving


def test_settings_and_defaults():
    deq = DEQBase()
    assert (deq.f_solver, deq.b_solver, deq.f_max_iter, deq.b_max_iter) == (
        "fixed_point_iter", "fixed_point_iter", 40, 40)
    assert (deq.f_tol, deq.b_tol, deq.f_stop_mode, deq.b_stop_mode) == (1e-3, 1e-6, "abs", "abs")
    assert deq.eval_f_max_iter == 40 and deq.no_stat is False and deq.training is True
    assert DEQBase(f_solver="simple_fixed_point_iter").no_stat is True
    assert DEQBase(f_solver="simple_fixed_point_iter", no_stat=False).no_stat is False
    assert DEQBase(f_max_iter=10, eval_factor=1.5).eval_f_max_iter == 15
    assert DEQBase(f_max_iter=10, eval_factor=1.5, eval_f_max_iter=4).eval_f_max_iter == 4
    assert DEQBase(b_solver="direct").b_solver == "direct"
    deq = DEQBase({"norm_type": "spectral_norm"}, jac_loss_weight=0.5)  # stored for later
    assert deq.args.norm_type == "spectral_norm" and deq.args.jac_loss_weight == 0.5
    signature = inspect.signature(DEQBase)
    assert [p for p in signature.parameters][:3] == ["args", "f_solver", "b_solver"]
    assert repr(signature.parameters["f_tol"].default) == "0.001"


def test_train_and_eval_modes():
    deq = DEQBase()
    assert deq.eval() is deq and deq.training is False
    assert deq.train() is deq and deq.training is True
    assert deq.train(False).training is False
    with pytest.raises(TypeError, match=r"train: mode must be True or False, got 1"):
        deq.train(1)
    assert repr(DEQBase(f_max_iter=12).eval()) == "DEQBase(f_max_iter=12, mode='eval')"


def test_base_has_no_training_path_but_evaluates(xp, to_xp, check_array):
    deq = DEQBase(f_tol=1e-10, f_max_iter=100)
    with pytest.raises(NotImplementedError, match="DEQIndexing or DEQSliced"):
        deq(halving, to_xp(np.zeros((2, 3))))
    z_out, info = deq.eval()(halving, to_xp(np.zeros((2, 3))))
    check_array(z_out[0], shape=(2, 3), dtype=xp.float64)
    assert_close(z_out[0], np.full((2, 3), 2.0), rtol=1e-9)
    assert bool(npdeq.backend.to_numpy(info["converged"]).all()) and info["backward"] is None


# z -> A z + b per sample: z* = (I - A)^-1 b, and the spectral radius of df/dz is A's.
A_SYM = np.array([[0.3, 0.1], [0.1, 0.4]])
B_SHIFT = np.array([[1.0, -2.0], [0.5, 0.0]])


@pytest.mark.filterwarnings("ignore::npdeq.ConvergenceWarning")  # the 3-step solves
@pytest.mark.parametrize("core", [DEQIndexing, DEQSliced])
def test_call_and_forward_match_the_closed_form_and_the_solver(xp, to_xp, check_array, core):
    A, b = to_xp(A_SYM), to_xp(B_SHIFT)
    z0 = to_xp(np.zeros((2, 2)))
    closed_form = np.linalg.solve(np.eye(2) - A_SYM, B_SHIFT.T).T
    radius = np.abs(np.linalg.eigvalsh(A_SYM)).max()
    func = lambda z: z @ A.T + b  # noqa: E731
    deq = core(f_solver="anderson", f_tol=1e-12, f_max_iter=100).eval()
    for call in (deq, deq.forward):
        z_out, info = call(func, z0)
        check_array(z_out[0], shape=(2, 2), dtype=xp.float64)
        assert_close(z_out[0], closed_form, rtol=1e-9, atol=1e-10)
        # positional arguments in TorchDEQ's order: solver_kwargs, sradius_mode, writer
        z_out, info = call(func, z0, {"f_max_iter": 3, "m": 2}, True, None)
        assert info["nfe"] == 3
        np.testing.assert_allclose(npdeq.backend.to_numpy(info["sradius"]), radius, rtol=1e-6)
        direct, _, _ = anderson_solver(lambda z: z @ A.T + b, z0, max_iter=3, tol=1e-12, m=2)
        assert_close(z_out[0], direct, rtol=0, atol=0)
    deq = core(f_solver="anderson", f_tol=1e-12, f_max_iter=100, ift=True, b_tol=1e-12,
               b_max_iter=200)
    for call in (deq, deq.forward):   # the writer, fifth, receives the backward statistics
        written, W = [], npdeq.Tensor(A, requires_grad=True)
        z_out, info = call(lambda z: z @ W.T + b, z0, None, False, written.append)
        assert_close(z_out[-1], closed_form, rtol=1e-9, atol=1e-10)
        z_out[-1].sum().backward()
        assert written == [info["backward"]] and written[0] is not None
        # d(sum z*)/dA = (I - A)^-T 1 z*^T summed over samples
        u = np.linalg.solve((np.eye(2) - A_SYM).T, np.ones(2))
        assert_close(W.grad, np.outer(u, closed_form.sum(axis=0)), rtol=1e-8, atol=1e-10)


def test_the_configs_sradius_mode_is_the_default_of_the_call(xp, to_xp):
    A, b = to_xp(A_SYM), to_xp(B_SHIFT)
    z0 = to_xp(np.zeros((2, 2)))
    radius = np.abs(np.linalg.eigvalsh(A_SYM)).max()
    deq = DEQIndexing(sradius_mode=True, f_tol=1e-10).eval()
    for explicit, expected in ((None, radius), (True, radius), (False, 0.0)):
        _, info = deq(lambda z: z @ A.T + b, z0, sradius_mode=explicit)
        np.testing.assert_allclose(npdeq.backend.to_numpy(info["sradius"]), expected,
                                   rtol=1e-6)
    _, info = DEQIndexing(f_tol=1e-10).eval()(lambda z: z @ A.T + b, z0)
    assert not npdeq.backend.to_numpy(info["sradius"]).any()
    with pytest.raises(TypeError, match="sradius_mode must be True, False or None"):
        deq(lambda z: z @ A.T + b, z0, sradius_mode=1)


@pytest.mark.parametrize("core", [DEQIndexing, DEQSliced])
def test_solver_kwargs_reach_the_solver(xp, to_xp, core, monkeypatch):
    seen = []

    def spy(func, x0, max_iter=50, tol=1e-3, stop_mode="abs", indexing=None, m=6, lam=1e-4,
            tau=1.0, return_final=False):
        seen.append(dict(max_iter=max_iter, tol=tol, stop_mode=stop_mode, m=m, tau=tau))
        return anderson_solver(func, x0, max_iter, tol, stop_mode, indexing, m, lam, tau,
                               return_final)

    register_solver("spy", spy)
    deq = core(f_solver="spy", f_max_iter=20, f_tol=1e-7, f_stop_mode="rel")
    deq(halving, to_xp(np.zeros((1, 2))), solver_kwargs={"m": 3, "tau": 0.5})
    assert seen[-1] == dict(max_iter=20, tol=1e-7, stop_mode="rel", m=3, tau=0.5)
    deq(halving, to_xp(np.zeros((1, 2))), solver_kwargs={"tol": 1e-9, "stop_mode": "abs"})
    assert seen[-1]["tol"] == 1e-9 and seen[-1]["stop_mode"] == "abs"   # per call, they win


def test_solver_kwargs_errors(xp, to_xp):
    deq = DEQIndexing(f_solver="anderson")
    z0 = to_xp(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"unknown argument of solver 'anderson' 'lamb'; did "
                                         r"you mean 'lam'"):
        deq(halving, z0, solver_kwargs={"lamb": 1e-3})
    with pytest.raises(ValueError, match=r"may not set 'max_iter'.*use 'f_max_iter'"):
        deq(halving, z0, solver_kwargs={"max_iter": 3})
    with pytest.raises(ValueError, match="may not set 'indexing'"):
        deq(halving, z0, solver_kwargs={"indexing": [3]})
    with pytest.raises(ValueError, match="config key 'f_max_iter'"):
        deq(halving, z0, solver_kwargs={"f_max_iter": -2})
    with pytest.raises(TypeError, match="solver_kwargs must be a dict"):
        deq(halving, z0, solver_kwargs=[("m", 3)])
    with pytest.raises(ValueError, match="'simple_fixed_point_iter' 'm'"):
        DEQIndexing(f_solver="simple_fixed_point_iter")(halving, z0, solver_kwargs={"m": 3})


@pytest.mark.filterwarnings("ignore::npdeq.ConvergenceWarning")  # simple_: no tolerance
@pytest.mark.parametrize("core", [DEQIndexing, DEQSliced])
def test_every_solver_forward_and_backward(xp, to_xp, check_array, core):
    W = npdeq.tensor(to_xp(np.array([[0.3, 0.1], [-0.2, 0.4]])), requires_grad=True)
    func = lambda z: npdeq.tanh(z @ W.T + 1.0)  # noqa: E731
    for f_solver in ("fixed_point_iter", "simple_fixed_point_iter", "anderson", "broyden"):
        for b_solver in ("fixed_point_iter", "simple_fixed_point_iter", "anderson", "broyden",
                         "direct"):
            W.grad = None
            deq = core(f_solver=f_solver, b_solver=b_solver, ift=True, f_tol=1e-8, b_tol=1e-10,
                       b_max_iter=60, f_max_iter=40)
            z_out, info = deq(func, to_xp(np.zeros((3, 2))))
            (z_out[-1] * z_out[-1]).sum().backward()
            check_array(W.grad, shape=(2, 2), dtype=xp.float64)
            assert np.all(np.isfinite(W.grad.numpy()))
            assert info["backward"] is not None


def test_initial_state_forms(xp, to_xp, check_array):
    z = to_xp(np.zeros((2, 3)))
    t = npdeq.Tensor(z, requires_grad=True)
    assert initial_state(t) is z and initial_state(z) is z
    both = initial_state([t, to_xp(np.ones((2, 1)))])
    assert isinstance(both, tuple) and both[0] is z
    with pytest.raises(TypeError, match="empty tuple"):
        initial_state(())
    with pytest.raises(TypeError, match=r"z_init\[1\] must be an array"):
        initial_state((z, 3.0))
    # a Tensor z_init is taken by value: no gradient reaches it
    deq = DEQIndexing(ift=True, f_tol=1e-8)
    W = npdeq.tensor(to_xp(0.5 * np.eye(3)), requires_grad=True)
    z_out, _ = deq(lambda z: z @ W + 1.0, t)
    z_out[-1].sum().backward()
    assert t.grad is None and W.grad is not None
    check_array(z_out[-1], shape=(2, 3))


def test_forward_argument_errors(xp, to_xp):
    deq = DEQIndexing()
    z0 = to_xp(np.zeros((1, 2)))
    with pytest.raises(TypeError, match="func must be callable"):
        deq("f", z0)
    with pytest.raises(TypeError, match="backward_writer must be callable"):
        deq(halving, z0, backward_writer=3)
    with pytest.raises(TypeError, match="z_init must be an array"):
        deq(halving, [[0.0, 0.0]][0][0])


def test_array_map_and_helpers(xp, to_xp, check_array):
    W = npdeq.tensor(to_xp(np.eye(2)), requires_grad=True)
    calls = []

    def func(z, y):
        calls.append(npdeq.is_grad_enabled())
        return z @ W, y * 2.0

    f = array_map(func, (to_xp(np.zeros((1, 2))), to_xp(np.zeros((1, 3)))))
    a, b = f(to_xp(np.ones((1, 2))), to_xp(np.ones((1, 3))))
    check_array(a, shape=(1, 2))
    f(to_xp(np.ones((1, 2))), to_xp(np.ones((1, 3))))
    # the first call is recorded (the dtype check of the parameters), the others are not
    assert not isinstance(a, npdeq.Tensor) and calls == [True, False]
    single = array_map(lambda z: z * 3.0, to_xp(np.zeros((1, 2))))
    assert not isinstance(single(to_xp(np.ones((1, 2)))), npdeq.Tensor)
    assert solver_parameters(simple_fixed_point_iter) == frozenset({"tau", "tol", "stop_mode"})
    assert solver_parameters(lambda f, x0, **kw: None) is None
    assert {"m", "lam", "tol", "stop_mode"} <= solver_parameters(anderson_solver)
    stats, written = {}, []
    recorder = BackwardRecorder(written.append)
    recorder({"x": 1})                       # before attach: only the user's writer
    assert recorder.attach(stats) is stats and stats == {"backward": None}
    recorder({"x": 2})
    assert stats["backward"] == {"x": 2} and written == [{"x": 1}, {"x": 2}]
