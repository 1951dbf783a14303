"""npdeq.optim.lr_scheduler: PyTorch's import paths, each schedule against its closed form or
by hand (PyTorch's values), chaining, state dicts, resuming, ReduceLROnPlateau's rule
(modes, thresholds, patience, cooldown, min_lr, eps) and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npdeq import backend, nn, optim
from npdeq.autodiff import Tensor
from npdeq.optim import lr_scheduler
from npdeq.optim.lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, MultiStepLR,
                                      ReduceLROnPlateau, StepLR)

NAN, INF = float("nan"), float("inf")


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


def make_opt(*lrs):
    return optim.SGD([{"params": [nn.Parameter(np.zeros(1))], "lr": lr} for lr in lrs])


def steps(sched, n=1):
    for _ in range(n):
        sched.step()
    return sched.get_last_lr()


def test_the_import_paths_are_pytorchs():
    import npdeq

    assert npdeq.optim.lr_scheduler is lr_scheduler
    assert optim.CosineAnnealingLR is CosineAnnealingLR
    assert npdeq.optim.lr_scheduler.LambdaLR is LambdaLR
    assert issubclass(StepLR, lr_scheduler.LRScheduler)


# --- epoch schedules, PyTorch's values ------------------------------------------------------

# (schedule, the groups' rates after construction and after each of 6 steps, from base 1, 2)
SCHEDULES = {
    "lambda": (lambda o: LambdaLR(o, lambda e: 1 / (e + 1)),
               [[1 / (e + 1), 2 / (e + 1)] for e in range(7)]),
    "lambda-per-group": (lambda o: LambdaLR(o, [lambda e: 0.5 ** e, lambda e: e]),
                         [[0.5 ** e, 2.0 * e] for e in range(7)]),
    "step": (lambda o: StepLR(o, step_size=3, gamma=0.5),
             [[0.5 ** (e // 3), 2 * 0.5 ** (e // 3)] for e in range(7)]),
    "multistep": (lambda o: MultiStepLR(o, milestones=[4, 1, 4], gamma=0.1),
                  [[b * f for b in (1, 2)] for f in (1, .1, .1, .1, 1e-3, 1e-3, 1e-3)]),
    "exponential": (lambda o: ExponentialLR(o, gamma=0.9),
                    [[0.9 ** e, 2 * 0.9 ** e] for e in range(7)]),
    "cosine": (lambda o: CosineAnnealingLR(o, T_max=4, eta_min=0.5),
               [[0.5 + (b - 0.5) * (1 + math.cos(math.pi * min(e, 4) / 4)) / 2 for b in (1, 2)]
                for e in range(7)]),
}


@pytest.mark.parametrize("make, expected", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_schedules_set_pytorchs_rates(make, expected):
    opt = make_opt(1.0, 2.0)
    sched = make(opt)
    seen = [sched.get_last_lr()] + [steps(sched) for _ in range(6)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12, atol=1e-15)
    assert [g["lr"] for g in opt.param_groups] == seen[-1]
    assert sched.last_epoch == 6
    assert [g["initial_lr"] for g in opt.param_groups] == sched.base_lrs == [1.0, 2.0]


@pytest.mark.parametrize("make, expected", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_a_schedule_restored_from_its_state_dict_continues_the_same(make, expected):
    opt = make_opt(1.0, 2.0)
    sched = make(opt)
    steps(sched, 2)
    state = sched.state_dict()
    assert "optimizer" not in state
    opt2 = make_opt(1.0, 2.0)
    sched2 = make(opt2)
    sched2.load_state_dict(state)
    for group, lr in zip(opt2.param_groups, sched.get_last_lr()):
        group["lr"] = lr  # as optimizer.load_state_dict would
    assert steps(sched2, 3) == steps(sched, 3)
    np.testing.assert_allclose(sched2.get_last_lr(), expected[5], rtol=1e-12, atol=1e-15)


def test_chainable_schedules_compose_as_pytorchs():
    opt = make_opt(1.0)
    first, second = ExponentialLR(opt, gamma=0.5), StepLR(opt, step_size=2, gamma=0.1)
    rates = []
    for _ in range(4):
        first.step()
        second.step()
        rates.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(rates, [0.5, 0.025, 0.0125, 6.25e-4], rtol=1e-12)


def test_resuming_needs_initial_lr():
    opt = make_opt(1.0)
    with pytest.raises(ValueError, match="'initial_lr'"):
        StepLR(opt, step_size=2, last_epoch=3)
    StepLR(opt, step_size=2)
    sched = StepLR(opt, step_size=2, last_epoch=3)  # epoch 4 decays
    assert sched.last_epoch == 4 and sched.get_last_lr() == [0.1]


class Warmup:
    """A stateful lr_lambda: its fields travel in the state dict, as PyTorch's."""

    def __init__(self, length):
        self.length = length

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.length)


def test_lambda_state_dict_keeps_callable_objects_only():
    sched = LambdaLR(make_opt(1.0, 1.0), [Warmup(4), lambda e: 1.0])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"length": 4}, None]
    other = LambdaLR(make_opt(1.0, 1.0), [Warmup(10), lambda e: 1.0])
    other.load_state_dict(state)
    assert other.lr_lambdas[0].length == 4 and other.last_epoch == 0


@pytest.mark.parametrize("make, match", [
    (lambda o: StepLR(o, step_size=0), "step_size"),
    (lambda o: StepLR(o, step_size=2, gamma=NAN), "gamma"),
    (lambda o: MultiStepLR(o, milestones=[1, -1]), r"milestones\[1\]"),
    (lambda o: ExponentialLR(o, gamma=-0.5), "gamma"),
    (lambda o: LambdaLR(o, [lambda e: 1.0] * 2), "one per parameter group"),
    (lambda o: LambdaLR(o, lambda e: NAN), "learning rate of group 0.*nan"),
    (lambda o: StepLR(o, step_size=1, last_epoch=-2), "last_epoch"),
])
def test_bad_schedule_arguments_raise_value_error_naming_them(make, match):
    opt = make_opt(1.0)
    with pytest.raises(ValueError, match=match):
        make(opt)
    assert opt.param_groups[0]["lr"] == 1.0


def test_schedules_need_an_optimizer_and_callables():
    with pytest.raises(TypeError, match="Optimizer"):
        StepLR([nn.Parameter(np.zeros(1))], step_size=2)
    with pytest.raises(TypeError, match="callable"):
        LambdaLR(make_opt(1.0), 0.5)
    with pytest.raises(TypeError, match="Optimizer"):
        ReduceLROnPlateau(None)


# --- ReduceLROnPlateau -------------------------------------------------------------------


def plateau_reference(metrics, lr, mode="min", factor=0.1, patience=10, threshold=1e-4,
                      threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
    """PyTorch's ReduceLROnPlateau.step, transcribed; the rate after each metric."""
    best = INF if mode == "min" else -INF
    bad = cool = 0
    out = []
    for m in metrics:
        if mode == "min" and threshold_mode == "rel":
            better = m < best * (1 - threshold)
        elif mode == "min":
            better = m < best - threshold
        elif threshold_mode == "rel":
            better = m > best * (threshold + 1)
        else:
            better = m > best + threshold
        if better:
            best, bad = m, 0
        else:
            bad += 1
        if cool > 0:
            cool -= 1
            bad = 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > eps:
                lr = new
            cool, bad = cooldown, 0
        out.append(lr)
    return out


@given(metrics=st.lists(st.sampled_from([1.0, 0.99995, 0.9, 0.5, 2.0, NAN, -1.0]), max_size=25),
       mode=st.sampled_from(["min", "max"]), threshold_mode=st.sampled_from(["rel", "abs"]),
       patience=st.integers(0, 3), cooldown=st.integers(0, 2),
       threshold=st.sampled_from([0.0, 1e-4, 0.2]), min_lr=st.sampled_from([0.0, 0.05]))
def test_reduce_on_plateau_matches_pytorchs_rule(metrics, mode, threshold_mode, patience,
                                                 cooldown, threshold, min_lr):
    kwargs = dict(mode=mode, factor=0.5, patience=patience, threshold=threshold,
                  threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, **kwargs)
    seen = []
    for m in metrics:
        sched.step(m)
        seen.append(sched.get_last_lr()[0])
    assert seen == plateau_reference(metrics, 1.0, **kwargs)
    assert opt.param_groups[0]["lr"] == (seen[-1] if seen else 1.0)


def test_reduce_on_plateau_by_hand_with_cooldown_min_lr_and_eps(xp, to_xp):
    opt = make_opt(1.0, 0.1)
    sched = ReduceLROnPlateau(opt, patience=1, factor=0.5, cooldown=1, min_lr=[0.3, 0.0],
                              eps=0.03)
    # Metrics as a Tensor, a 0-d array of the namespace under test and a NumPy scalar.
    for metric in (Tensor(to_xp(np.array(1.0))), to_xp(np.array([1.0])), np.float64(1.0)):
        sched.step(metric)
    # Third bad epoch > patience: 1.0 -> 0.5; 0.1 -> 0.05 (a change of 0.05 > eps).
    assert sched.get_last_lr() == [0.5, 0.05]
    steps_ = [sched.step(1.0) or sched.get_last_lr() for _ in range(4)]
    # Cooldown epoch; two bad ones; 0.5 -> 0.3 (min_lr); 0.05 -> 0.025 is under eps: kept.
    assert steps_ == [[0.5, 0.05], [0.5, 0.05], [0.3, 0.05], [0.3, 0.05]]
    state = sched.state_dict()
    assert state["best"] == 1.0 and "optimizer" not in state
    again = ReduceLROnPlateau(make_opt(0.3, 0.05))
    again.load_state_dict(state)
    assert (again.patience, again.cooldown, again.min_lrs) == (1, 1, [0.3, 0.0])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mode": "mean"}, ValueError, "mode='mean'"),
    ({"threshold_mode": "relative"}, ValueError, "threshold_mode"),
    ({"factor": 1.0}, ValueError, "factor"), ({"factor": NAN}, ValueError, "factor"),
    ({"patience": -1}, ValueError, "patience"), ({"patience": 1.5}, ValueError, "patience"),
    ({"cooldown": -1}, ValueError, "cooldown"), ({"threshold": -1e-4}, ValueError, "threshold"),
    ({"min_lr": [0.0, 0.0]}, ValueError, "one per parameter group"),
    ({"min_lr": -1.0}, ValueError, "min_lr"), ({"eps": INF}, ValueError, "eps"),
])
def test_reduce_on_plateau_checks_its_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReduceLROnPlateau(make_opt(1.0), **kwargs)


@pytest.mark.parametrize("metric, error", [
    ("0.5", TypeError), (None, TypeError), (True, TypeError), (np.ones(2), ValueError)])
def test_reduce_on_plateau_needs_one_number(metric, error):
    sched = ReduceLROnPlateau(make_opt(1.0))
    with pytest.raises(error, match="metrics"):
        sched.step(metric)
    assert sched.last_epoch == 0


# --- CosineAnnealingLR (npdeq's form: stays at eta_min after T_max; optional warm-up) ------

def cosine_reference(step, base, T_max, eta_min=0.0, warmup=0):
    """The documented schedule: linear warm-up from base / warmup to base over ``warmup``
    steps, then half a cosine from base to eta_min over T_max steps, then eta_min."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(step - warmup, T_max)
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / T_max)) / 2


@given(T_max=st.integers(1, 20), warmup=st.integers(0, 5),
       eta_min=st.just(0.0) | st.floats(0.0, 0.01), bases=st.lists(st.floats(0.02, 2.0),
                                                                  min_size=1, max_size=3))
def test_cosine_annealing_matches_its_closed_form(T_max, warmup, eta_min, bases):
    opt = optim.SGD([{"params": [nn.Parameter(np.zeros(1))], "lr": base} for base in bases])
    sched = optim.CosineAnnealingLR(opt, T_max=T_max, eta_min=eta_min, warmup=warmup)
    assert sched.base_lrs == bases
    for step in range(warmup + T_max + 4):
        expected = [cosine_reference(step, b, T_max, eta_min, warmup) for b in bases]
        np.testing.assert_allclose([g["lr"] for g in opt.param_groups], expected, rtol=1e-12,
                                   atol=1e-15, err_msg=f"step {step}")
        np.testing.assert_allclose(sched.get_lr(), expected, rtol=1e-12, atol=1e-15)
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        sched.step()


def test_cosine_annealing_by_hand():
    opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    values = [opt.param_groups[0]["lr"]] + [steps(sched)[0] for _ in range(5)]
    half = 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2
    np.testing.assert_allclose(values, [1.0, half, 0.55, 1.1 - half, 0.1, 0.1], rtol=1e-12)
    opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=2, warmup=4)
    values = [opt.param_groups[0]["lr"]] + [steps(sched)[0] for _ in range(7)]
    np.testing.assert_allclose(values, [0.25, 0.5, 0.75, 1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-15)


def test_the_schedule_drives_the_optimizer():
    p = nn.Parameter(np.array([0.0]))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=2)
    total = 0.0
    for _ in range(3):
        total -= opt.param_groups[0]["lr"]
        p.grad = Tensor(np.array([1.0]))
        opt.step()
        sched.step()
    np.testing.assert_allclose(host(p), [total])
    np.testing.assert_allclose(total, -(1.0 + 0.5 + 0.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"T_max": 0}, "T_max"), ({"T_max": 2.5}, "T_max"), ({"T_max": 3, "warmup": -1}, "warmup"),
    ({"T_max": 3, "warmup": 1.5}, "warmup")])
def test_cosine_annealing_checks_its_arguments(kwargs, match):
    opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=match):
        optim.CosineAnnealingLR(opt, **kwargs)




@pytest.mark.parametrize("kwargs, match", [
    ({"T_max": NAN}, "T_max"), ({"T_max": np.int64(0)}, "T_max"), ({"T_max": True}, "T_max"),
    ({"T_max": 3, "eta_min": NAN}, "eta_min"), ({"T_max": 3, "eta_min": -INF}, "eta_min"),
    ({"T_max": 3, "eta_min": -0.1}, "eta_min"), ({"T_max": 3, "warmup": NAN}, "warmup")])
def test_cosine_annealing_refuses_non_finite_arguments(kwargs, match):
    opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=match):
        optim.CosineAnnealingLR(opt, **kwargs)
    assert opt.param_groups[0]["lr"] == 1.0


def test_cosine_annealing_needs_an_optimizer():
    with pytest.raises(TypeError, match="Optimizer"):
        optim.CosineAnnealingLR([nn.Parameter(np.zeros(1))], T_max=3)
