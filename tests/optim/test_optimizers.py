"""npdeq.optim: SGD, Adam and AdamW against NumPy transcriptions of PyTorch's update rules
over several steps, parameter groups, argument checking, dtypes (a step never changes a
parameter's dtype), namespaces and devices, and a small end-to-end fit."""

from __future__ import annotations

import math

import array_api_strict
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import npdeq
from npdeq import backend, nn, optim
from npdeq.autodiff import Tensor

DEVICE1 = array_api_strict.Device("device1")


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


# --- references: PyTorch's formulas (torch.optim.sgd / adam / adamw, single-tensor path) --


def sgd_reference(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False):
    """The parameter after each step."""
    buf, out = None, []
    for g in grads:
        d_p = g + weight_decay * p if weight_decay != 0 else g
        if momentum != 0:
            buf = d_p.copy() if buf is None else momentum * buf + (1 - dampening) * d_p
            d_p = d_p + momentum * buf if nesterov else buf
        p = p - lr * d_p
        out.append(p)
    return out


def adam_reference(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    beta1, beta2 = betas
    exp_avg, exp_avg_sq, out = np.zeros_like(p), np.zeros_like(p), []
    for step, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay != 0:
            g = g + weight_decay * p
        exp_avg = beta1 * exp_avg + (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        denom = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
        p = p - step_size * exp_avg / denom
        out.append(p)
    return out


# --- strategies --------------------------------------------------------------------------


@st.composite
def trajectories(draw):
    """A starting point and 1-5 gradients of one shape."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4))
    values = st.floats(-10.0, 10.0, allow_nan=False, allow_subnormal=False)
    start = draw(hnp.arrays(np.float64, shape, elements=values))
    grads = draw(st.lists(hnp.arrays(np.float64, shape, elements=values),
                          min_size=1, max_size=5))
    return start, grads


lrs = st.floats(1e-4, 1.0)
decays = st.just(0.0) | st.floats(1e-4, 0.5)


@st.composite
def sgd_settings(draw):
    momentum = draw(st.just(0.0) | st.floats(0.1, 0.99))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.just(0.0) | st.floats(0.0, 0.9))
    return {"lr": draw(lrs), "momentum": momentum, "dampening": dampening,
            "weight_decay": draw(decays), "nesterov": nesterov}


@st.composite
def adam_settings(draw):
    return {"lr": draw(lrs), "betas": (draw(st.floats(0.0, 0.99)), draw(st.floats(0.0, 0.9999))),
            "eps": draw(st.sampled_from([1e-8, 1e-3, 0.5])), "weight_decay": draw(decays)}


def run(optimizer_cls, settings, start, grads, to_xp, check_array, dtype=None):
    """Step an optimizer over ``grads`` (set as ``.grad``, as backward() leaves them); return
    the parameter after each step, checking it stays in the namespace/device under test."""
    p = nn.Parameter(to_xp(start, dtype=dtype))
    opt = optimizer_cls([p], **settings)
    out = []
    for g in grads:
        opt.zero_grad()
        assert p.grad is None
        p.grad = Tensor(to_xp(g, dtype=dtype))
        held = p.data
        held_values = host(held).copy()
        opt.step()
        # .data is replaced, not written: arrays a recorded graph holds must not change.
        np.testing.assert_array_equal(host(held), held_values)
        check_array(p, shape=start.shape, dtype=p.dtype)
        out.append(host(p))
    return out


def assert_trajectory(observed, expected, rtol=1e-10, atol=1e-12):
    for step, (o, e) in enumerate(zip(observed, expected), start=1):
        np.testing.assert_allclose(o, e, rtol=rtol, atol=atol, err_msg=f"after step {step}")


# --- update rules ------------------------------------------------------------------------


@given(trajectory=trajectories(), settings=sgd_settings())
def test_sgd_matches_pytorchs_rule(xp, to_xp, check_array, trajectory, settings):
    start, grads = trajectory
    observed = run(optim.SGD, settings, start, grads, to_xp, check_array)
    assert_trajectory(observed, sgd_reference(start, grads, **settings))


@pytest.mark.parametrize("settings, expected", [
    # p -= 0.1 g
    pytest.param({"lr": 0.1}, [0.9, 0.7, 0.4], id="plain"),
    # b = 1, 2.9, 5.61
    pytest.param({"lr": 0.1, "momentum": 0.9}, [0.9, 0.61, 0.049], id="momentum"),
    # b = 1 (no dampening on the first step), 0.9 + 0.5 * 2 = 1.9, 1.71 + 1.5 = 3.21
    pytest.param({"lr": 0.1, "momentum": 0.9, "dampening": 0.5}, [0.9, 0.71, 0.389],
                 id="dampening"),
    # b = 1, 2.9, 5.61; steps g + 0.9 b = 1.9, 4.61, 8.049
    pytest.param({"lr": 0.1, "momentum": 0.9, "nesterov": True}, [0.81, 0.349, -0.4559],
                 id="nesterov"),
    # g + 0.2 p = 1.2, 2.176, 3.13248
    pytest.param({"lr": 0.1, "weight_decay": 0.2}, [0.88, 0.6624, 0.349152],
                 id="weight-decay"),
])
def test_sgd_variants_by_hand(settings, expected):
    """Three steps from p = 1 with gradients 1, 2, 3, worked out by hand."""
    p = nn.Parameter(np.array([1.0]))
    opt = optim.SGD([p], **settings)
    trace = []
    for g in (1.0, 2.0, 3.0):
        p.grad = Tensor(np.array([g]))
        opt.step()
        trace.append(float(p.data[0]))
    np.testing.assert_allclose(trace, expected, rtol=1e-12)


@given(trajectory=trajectories(), settings=adam_settings())
def test_adam_matches_pytorchs_rule(xp, to_xp, check_array, trajectory, settings):
    start, grads = trajectory
    observed = run(optim.Adam, settings, start, grads, to_xp, check_array)
    assert_trajectory(observed, adam_reference(start, grads, **settings))


@given(trajectory=trajectories(), settings=adam_settings())
def test_adamw_matches_pytorchs_rule(xp, to_xp, check_array, trajectory, settings):
    start, grads = trajectory
    observed = run(optim.AdamW, settings, start, grads, to_xp, check_array)
    assert_trajectory(observed, adam_reference(start, grads, decoupled=True, **settings))


def test_adam_and_adamw_differ_only_in_how_they_decay():
    start, grads = np.array([2.0, -3.0]), [np.array([0.5, 0.5])] * 3
    settings = {"lr": 0.1, "weight_decay": 0.3}
    coupled = run(optim.Adam, settings, start, grads, np.asarray, lambda *a, **k: None)
    decoupled = run(optim.AdamW, settings, start, grads, np.asarray, lambda *a, **k: None)
    assert not np.allclose(coupled[-1], decoupled[-1])
    assert_trajectory(coupled, adam_reference(start, grads, **settings))
    assert_trajectory(decoupled, adam_reference(start, grads, decoupled=True, **settings))


def test_defaults_are_pytorchs():
    p = nn.Parameter(np.zeros(1))
    assert optim.SGD([p]).defaults == {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0,
                                       "weight_decay": 0.0, "nesterov": False}
    assert optim.Adam([p]).defaults == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                        "weight_decay": 0.0}
    assert optim.AdamW([p]).defaults["weight_decay"] == 1e-2


@pytest.mark.parametrize("make", [
    pytest.param(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), id="sgd"),
    pytest.param(lambda ps: optim.Adam(ps, lr=0.1), id="adam"),
    pytest.param(lambda ps: optim.AdamW(ps, lr=0.1), id="adamw"),
])
def test_gradients_from_backward_and_dtype_and_device(xp, to_xp, check_array, make):
    """Parameters keep their namespace, device and dtype (float32 included) over steps, with
    gradients that backward() computed."""
    for dtype in (np.float64, np.float32):
        w = nn.Parameter(to_xp(np.array([1.0, -2.0, 3.0]), dtype=dtype))
        opt = make([w])
        for _ in range(3):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
            check_array(w, shape=(3,), dtype=getattr(xp, np.dtype(dtype).name))
        assert np.all(np.abs(host(w)) < [1.0, 2.0, 3.0]), "steps did not descend"


# --- groups, skipping, zero_grad ---------------------------------------------------------


def test_parameter_groups_have_their_own_settings():
    a, b, c = (nn.Parameter(np.ones(2)) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5},
                     {"params": c, "lr": 0.01, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5, 0.01]
    assert [g["momentum"] for g in opt.param_groups] == [0.0, 0.0, 0.9]
    for _ in range(2):
        for p in (a, b, c):
            p.grad = Tensor(np.ones(2))
        opt.step()
    np.testing.assert_allclose(host(a), sgd_reference(np.ones(2), [np.ones(2)] * 2, 0.1)[-1])
    np.testing.assert_allclose(host(b), sgd_reference(np.ones(2), [np.ones(2)] * 2, 0.5)[-1])
    np.testing.assert_allclose(host(c), sgd_reference(np.ones(2), [np.ones(2)] * 2, 0.01,
                                                      momentum=0.9)[-1])
    d = nn.Parameter(np.ones(1))
    opt.add_param_group({"params": [d], "lr": 2.0})
    d.grad = Tensor(np.ones(1))
    opt.step()
    np.testing.assert_allclose(host(d), [-1.0])
    with pytest.raises(ValueError, match="unknown optimizer settings.*'betas'"):
        opt.add_param_group({"params": [nn.Parameter(np.ones(1))], "betas": (0.9, 0.9)})
    with pytest.raises(TypeError, match="'params'"):
        opt.add_param_group({"lr": 0.1})


def test_parameters_without_gradients_are_skipped():
    a, b = nn.Parameter(np.array([1.0, 2.0])), nn.Parameter(np.array([3.0]))
    frozen = nn.Parameter(np.array([5.0]), requires_grad=False)
    opt = optim.Adam([a, b, frozen], lr=0.1)
    a.grad = Tensor(np.array([1.0, -1.0]))
    opt.step()
    np.testing.assert_array_equal(host(b), [3.0])
    np.testing.assert_array_equal(host(frozen), [5.0])
    # b's first update is Adam's first step (its own step count), whatever a has done.
    a.grad, b.grad = Tensor(np.array([1.0, -1.0])), Tensor(np.array([2.0]))
    opt.step()
    np.testing.assert_allclose(host(b), adam_reference(np.array([3.0]), [np.array([2.0])],
                                                       lr=0.1)[0], rtol=1e-12)
    np.testing.assert_allclose(host(a), adam_reference(np.array([1.0, 2.0]),
                                                       [np.array([1.0, -1.0])] * 2,
                                                       lr=0.1)[-1], rtol=1e-12)


def test_zero_grad_clears_every_group():
    a, b = nn.Parameter(np.ones(1)), nn.Parameter(np.ones(1))
    opt = optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    (a * b).sum().backward()
    assert a.grad is not None and b.grad is not None
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    opt.step()  # nothing to do
    np.testing.assert_array_equal(host(a), [1.0])


def test_an_optimizer_built_before_a_move_updates_the_moved_model():
    model = nn.Linear(3, 2, seed=0)
    opt = optim.Adam(model.parameters(), lr=0.1)
    model.to(DEVICE1)
    before = {n: host(p) for n, p in model.named_parameters()}
    x = array_api_strict.asarray(np.ones((4, 3)), device=DEVICE1)
    model(x).sum().backward()
    opt.step()
    for name, p in model.named_parameters():
        assert backend.device(p.data) == DEVICE1, name
        assert not np.array_equal(host(p), before[name]), f"{name} was not updated"


@pytest.mark.parametrize("make", [
    pytest.param(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), id="sgd-momentum"),
    pytest.param(lambda ps: optim.Adam(ps, lr=0.1), id="adam"),
    pytest.param(lambda ps: optim.AdamW(ps, lr=0.1), id="adamw"),
])
def test_optimizer_state_follows_a_model_moved_between_steps(make):
    """Momentum and moments built on NumPy float64 follow the model to device1 and float32:
    no mixing of devices, no float64 moments turning the parameters back into float64."""
    model, twin = nn.Linear(3, 2, seed=0), nn.Linear(3, 2, seed=0)
    opt, twin_opt = make(model.parameters()), make(twin.parameters())
    x = np.random.default_rng(0).standard_normal((4, 3))
    for net, o in ((model, opt), (twin, twin_opt)):
        (net(x) ** 2).sum().backward()
        o.step()
    model.to(DEVICE1).to(dtype="float32")
    for _ in range(2):
        for net, o, inp in ((model, opt, array_api_strict.asarray(x.astype(np.float32),
                                                                  device=DEVICE1)),
                            (twin, twin_opt, x)):
            o.zero_grad()
            (net(inp) ** 2).sum().backward()
            o.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert backend.device(p.data) == DEVICE1, name
        assert p.dtype == array_api_strict.float32, f"{name} is {p.dtype}"
        np.testing.assert_allclose(host(p), host(q), rtol=1e-4, atol=1e-5, err_msg=name)


# --- argument checking -------------------------------------------------------------------


def test_a_parameter_given_twice_is_named():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"position 1 of parameter group 0 \(shape \(2,\)\).*"
                                         "twice"):
        optim.SGD([p, p])
    with pytest.raises(ValueError, match=r"position 1 of parameter group 1 \(shape \(3, 1\)\)"):
        optim.Adam([{"params": [q]}, {"params": [p, q]}])
    opt = optim.SGD([p])
    with pytest.raises(ValueError, match="twice"):
        opt.add_param_group({"params": [q, p]})
    assert len(opt.param_groups) == 1, "a rejected group must not be added"


@pytest.mark.parametrize("params, named", [
    pytest.param(lambda p: [p, Tensor(np.ones(2), requires_grad=True)],
                 r"Tensor at position 1", id="tensor"),
    pytest.param(lambda p: [p, np.ones(2)], r"ndarray at position 1", id="ndarray-in-list"),
    pytest.param(lambda p: [array_api_strict.ones(2)], r"Array at position 0",
                 id="strict-array-in-list"),
    pytest.param(lambda p: np.ones(3), r"an array \(ndarray\)", id="ndarray"),
    pytest.param(lambda p: np.float64(1.0), r"an array \(float64\)", id="numpy-scalar"),
    pytest.param(lambda p: array_api_strict.ones(3), r"an array \(Array\)", id="strict-array"),
    pytest.param(lambda p: [{"params": [p]}, {"params": [3.0]}],
                 r"float at position 0 of parameter group 1", id="in-a-group"),
])
def test_a_non_parameter_is_named(params, named):
    p = nn.Parameter(np.ones(2))
    with pytest.raises(TypeError, match=named):
        optim.SGD(params(p), lr=0.1)


@pytest.mark.parametrize("build, match", [
    pytest.param(lambda ps: optim.SGD(ps, lr=-0.1), "lr", id="sgd-lr"),
    pytest.param(lambda ps: optim.SGD(ps, lr="0.1"), "lr", id="sgd-lr-type"),
    pytest.param(lambda ps: optim.SGD(ps, momentum=-0.5), "momentum", id="sgd-momentum"),
    pytest.param(lambda ps: optim.SGD(ps, weight_decay=-1.0), "weight_decay", id="sgd-decay"),
    pytest.param(lambda ps: optim.SGD(ps, nesterov=True), "nesterov", id="nesterov-no-momentum"),
    pytest.param(lambda ps: optim.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True),
                 "nesterov", id="nesterov-dampening"),
    pytest.param(lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), "betas", id="adam-beta2"),
    pytest.param(lambda ps: optim.Adam(ps, betas=(-0.1, 0.9)), "betas", id="adam-beta1"),
    pytest.param(lambda ps: optim.Adam(ps, betas=(0.9,)), "betas", id="adam-betas-length"),
    pytest.param(lambda ps: optim.Adam(ps, eps=-1e-8), "eps", id="adam-eps"),
    pytest.param(lambda ps: optim.AdamW(ps, lr=-1.0), "lr", id="adamw-lr"),
    pytest.param(lambda ps: optim.Adam([{"params": ps, "lr": -1.0}]), "lr", id="group-lr"),
    pytest.param(lambda ps: optim.Adam([]), "empty", id="empty"),
])
def test_bad_settings_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build([nn.Parameter(np.ones(2))])


# --- end to end --------------------------------------------------------------------------


def test_linear_regression_with_adam_converges(xp, xp_device, to_xp, check_array):
    rng = np.random.default_rng(0)
    w_true, b_true = rng.standard_normal((2, 3)), rng.standard_normal(2)
    x = rng.standard_normal((64, 3))
    y = x @ w_true.T + b_true
    model = nn.Linear(3, 2, seed=1, xp=xp, device=xp_device)
    opt = optim.Adam(model.parameters(), lr=0.1)
    sched = optim.CosineAnnealingLR(opt, T_max=300, eta_min=1e-3)
    xs, ys = to_xp(x), to_xp(y)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = npdeq.mse_loss(model(xs), ys)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
        sched.step()
    check_array(model.weight, shape=(2, 3), dtype=xp.float64)
    assert npdeq.mse_loss(model(xs), ys).item() < 1e-6 * first
    np.testing.assert_allclose(host(model.weight), w_true, atol=1e-3)
    np.testing.assert_allclose(host(model.bias), b_true, atol=1e-3)


def test_sgd_momentum_buffer_does_not_alias_the_gradient():
    p = nn.Parameter(np.zeros(2))
    opt = optim.SGD([p], lr=1.0, momentum=0.9)
    p.grad = Tensor(np.ones(2))
    opt.step()
    p.grad.data[...] = 100.0  # a user editing the gradient in place after the step
    np.testing.assert_array_equal(opt.state[id(p)]["momentum_buffer"], [1.0, 1.0])


# --- hardening: every setting finite and in range, gradients checked before any update ---

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("build, match", [
    pytest.param(lambda ps: optim.SGD(ps, lr=NAN), r"SGD: lr .*got nan", id="sgd-lr-nan"),
    pytest.param(lambda ps: optim.SGD(ps, lr=INF), r"lr .*got inf", id="sgd-lr-inf"),
    pytest.param(lambda ps: optim.SGD(ps, lr=True), "lr", id="sgd-lr-bool"),
    pytest.param(lambda ps: optim.SGD(ps, momentum=NAN), "momentum", id="sgd-momentum-nan"),
    pytest.param(lambda ps: optim.SGD(ps, momentum=INF), "momentum", id="sgd-momentum-inf"),
    pytest.param(lambda ps: optim.SGD(ps, weight_decay=NAN), "weight_decay",
                 id="sgd-decay-nan"),
    pytest.param(lambda ps: optim.SGD(ps, dampening=NAN), "dampening", id="sgd-dampening-nan"),
    pytest.param(lambda ps: optim.SGD(ps, dampening=1.5), "dampening", id="sgd-dampening-big"),
    pytest.param(lambda ps: optim.Adam(ps, lr=NAN), "lr", id="adam-lr-nan"),
    pytest.param(lambda ps: optim.Adam(ps, betas=(NAN, 0.9)), r"betas\[0\]",
                 id="adam-beta1-nan"),
    pytest.param(lambda ps: optim.Adam(ps, betas=(0.9, NAN)), r"betas\[1\]",
                 id="adam-beta2-nan"),
    pytest.param(lambda ps: optim.Adam(ps, betas=0.9), "betas", id="adam-betas-scalar"),
    pytest.param(lambda ps: optim.Adam(ps, eps=NAN), "eps", id="adam-eps-nan"),
    pytest.param(lambda ps: optim.Adam(ps, eps=INF), "eps", id="adam-eps-inf"),
    pytest.param(lambda ps: optim.Adam(ps, eps=0.0), "eps", id="adam-eps-zero"),
    pytest.param(lambda ps: optim.Adam(ps, weight_decay=INF), "weight_decay",
                 id="adam-decay-inf"),
    pytest.param(lambda ps: optim.AdamW(ps, weight_decay=NAN), "weight_decay",
                 id="adamw-decay-nan"),
    pytest.param(lambda ps: optim.AdamW([{"params": ps, "betas": (0.9, INF)}]), "betas",
                 id="group-betas-inf"),
])
def test_non_finite_settings_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build([nn.Parameter(np.ones(2))])


def test_nesterov_must_be_a_bool():
    with pytest.raises(TypeError, match="nesterov"):
        optim.SGD([nn.Parameter(np.ones(2))], momentum=0.9, nesterov=1)


def test_add_param_group_checks_settings_and_adds_nothing_on_error():
    opt = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    for bad in ({"lr": NAN}, {"momentum": -INF}, {"weight_decay": NAN}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            opt.add_param_group({"params": [nn.Parameter(np.ones(3))], **bad})
    assert len(opt.param_groups) == 1


def test_numpy_scalars_are_accepted_as_settings():
    def run(lr, momentum, T_max):
        p = nn.Parameter(np.array([1.0, -2.0]))
        opt = optim.SGD([p], lr=lr, momentum=momentum)
        sched = optim.CosineAnnealingLR(opt, T_max=T_max, eta_min=lr / 10)
        for _ in range(3):
            p.grad = Tensor(np.array([0.5, 1.0]))
            opt.step()
            sched.step()
        return host(p)

    plain = run(0.1, 0.9, 4)
    np.testing.assert_array_equal(run(np.float64(0.1), np.float64(0.9), np.int64(4)), plain)
    np.testing.assert_allclose(run(np.float32(0.1), np.float32(0.9), np.int32(4)), plain,
                               rtol=1e-6)
    p = nn.Parameter(np.ones(2))
    opt = optim.Adam([p], betas=(np.float32(0.9), np.float64(0.99)), eps=np.float32(1e-8))
    p.grad = Tensor(np.ones(2))
    opt.step()
    assert host(p).dtype == np.float64


def test_a_learning_rate_set_to_nan_by_hand_is_refused_at_the_step():
    p = nn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = NAN
    p.grad = Tensor(np.ones(2))
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    np.testing.assert_array_equal(host(p), [1.0, 1.0])


@pytest.mark.parametrize("make_opt", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                      lambda ps: optim.Adam(ps, lr=0.1)], ids=["sgd", "adam"])
def test_a_wrong_shaped_gradient_names_the_parameter_and_nothing_moves(make_opt):
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones((3, 2)))
    opt = make_opt([{"params": [a]}, {"params": [b]}])
    a.grad, b.grad = Tensor(np.ones(2)), Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"parameter 0 of group 1 \(shape \(3, 2\)\) has "
                                         r"shape \(2, 3\)"):
        opt.step()
    np.testing.assert_array_equal(host(a), np.ones(2))  # the first group was not stepped
    np.testing.assert_array_equal(host(b), np.ones((3, 2)))
    assert opt.state == {}


@pytest.mark.parametrize("grad, match", [
    pytest.param(lambda: Tensor(np.ones(2, dtype=np.complex128)), "complex", id="complex"),
    pytest.param(lambda: array_api_strict.ones(2, dtype=array_api_strict.float64),
                 "array_api_strict", id="namespace"),
    pytest.param(lambda: [1.0, 1.0], "list", id="not-an-array"),
])
def test_a_gradient_of_another_kind_is_refused_before_any_update(grad, match):
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.SGD([a, b], lr=0.1)
    a.grad, b.grad = Tensor(np.ones(2)), grad()
    with pytest.raises(TypeError, match=r"parameter 1 of group 0.*" + match):
        opt.step()
    np.testing.assert_array_equal(host(a), np.ones(2))
    assert host(a).dtype == np.float64


def test_a_raw_array_gradient_of_the_right_kind_is_used():
    p = nn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.5)
    p.grad = np.array([1.0, 2.0])
    opt.step()
    np.testing.assert_array_equal(host(p), [0.5, 0.0])


# --- dtypes: a step never changes a parameter's dtype --------------------------------------

MAKERS = {
    "sgd-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.1),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.1),
}


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_a_gradient_of_another_dtype_is_cast_to_the_parameters(xp, to_xp, check_array, make):
    """A float64 gradient of a float32 parameter: the update and the state buffers are in
    float32, and equal the steps taken with the gradient cast to float32 first."""
    start = np.array([1.0, -2.0, 0.5])
    grads = [np.array([0.3, -1.0, 1e-3]), np.array([2.0, 0.1, -0.7])]
    p, q = (nn.Parameter(to_xp(start, dtype=np.float32)) for _ in range(2))
    opt_p, opt_q = make([p]), make([q])
    for g in grads:
        p.grad = Tensor(to_xp(g, dtype=np.float64))
        q.grad = Tensor(to_xp(g, dtype=np.float32))
        opt_p.step()
        opt_q.step()
        check_array(p, shape=(3,), dtype=xp.float32)
        for key, value in opt_p.state[id(p)].items():
            if key != "step":
                check_array(value, shape=(3,), dtype=xp.float32)
        np.testing.assert_array_equal(host(p), host(q))
    assert p.grad.dtype == xp.float64  # the gradient itself is left as it was


def test_a_float32_gradient_of_a_float64_parameter_keeps_float64():
    p = nn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.5, momentum=0.5)
    p.grad = Tensor(np.array([1.0, 2.0], dtype=np.float32))
    opt.step()
    assert host(p).dtype == np.float64 and opt.state[id(p)]["momentum_buffer"].dtype == np.float64
    np.testing.assert_array_equal(host(p), [0.5, 0.0])


def test_zero_grad_can_leave_zeros_and_step_calls_the_closure(xp, to_xp, check_array):
    p = nn.Parameter(to_xp(np.array([1.0, 2.0]), dtype=np.float32))
    opt = optim.SGD([p], lr=0.5)
    p.grad = Tensor(to_xp(np.array([1.0, 1.0]), dtype=np.float32))
    opt.zero_grad(set_to_none=False)
    check_array(p.grad, shape=(2,), dtype=xp.float32)
    np.testing.assert_array_equal(host(p.grad), [0.0, 0.0])
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [1] and loss.item() == 5.0
    np.testing.assert_allclose(host(p), [0.0, 0.0])


# --- state_dict / load_state_dict (PyTorch's checkpoint of an optimizer) -------------------

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=0.05),
    "adamw": lambda ps: optim.AdamW([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.01}]),
}


def _params(xp_arrays):
    return [nn.Parameter(a) for a in xp_arrays]


def _train(opt, params, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.shape)
        opt.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_resumes_the_same_trajectory(name):
    start = [np.linspace(-1, 1, 6).reshape(2, 3), np.arange(4.0)]
    a = _params([x.copy() for x in start])
    opt_a = OPTIMIZERS[name](a)
    _train(opt_a, a, 3, seed=0)
    saved = opt_a.state_dict()
    assert sorted(saved) == ["param_groups", "state"]
    assert [g["params"] for g in saved["param_groups"]] in ([[0, 1]], [[0], [1]])
    b = _params([p.data.copy() for p in a])
    fresh = _params([p.data.copy() for p in a])
    opt_b, opt_fresh = OPTIMIZERS[name](b), OPTIMIZERS[name](fresh)
    opt_b.param_groups[0]["lr"] = 123.0          # overwritten by the load
    opt_b.load_state_dict(saved)
    assert [g["lr"] for g in opt_b.param_groups] == [g["lr"] for g in opt_a.param_groups]
    for opt, ps in ((opt_a, a), (opt_b, b), (opt_fresh, fresh)):
        _train(opt, ps, 2, seed=1)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.data, pb.data)
    # Without the state (momentum, moments, step count) the trajectory differs.
    assert not np.array_equal(a[0].data, fresh[0].data)


def test_loaded_state_follows_the_parameters_dtype():
    p = nn.Parameter(np.ones(3))
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    q = nn.Parameter(np.ones(3, dtype=np.float32))
    opt32 = optim.Adam([q], lr=0.1)
    opt32.load_state_dict(opt.state_dict())
    q.grad = np.ones(3, dtype=np.float32)
    opt32.step()
    assert q.data.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opt32.state[id(q)].values()
               if hasattr(v, "dtype"))


@pytest.mark.parametrize("change, match", [
    (lambda sd: {**sd, "extra": 1}, "keys 'state' and 'param_groups'"),
    (lambda sd: {**sd, "param_groups": sd["param_groups"] * 2}, "2 parameter groups"),
    (lambda sd: {**sd, "param_groups": [{**sd["param_groups"][0], "params": [0]}]},
     "1 parameters in the state, 2 here"),
    (lambda sd: {**sd, "param_groups": [{**sd["param_groups"][0], "lr": float("nan")}]},
     "lr"),
    (lambda sd: {**sd, "param_groups": [{**sd["param_groups"][0], "gamma": 0.5}]},
     "unknown settings"),
    (lambda sd: {**sd, "state": {7: {}}}, "parameter 7"),
    (lambda sd: {**sd, "state": {0: {"momentum_buffer": np.zeros(5)}}}, "shape"),
])
def test_load_state_dict_refuses_what_does_not_fit(change, match):
    ps = _params([np.ones(2), np.ones(3)])
    opt = optim.SGD(ps, lr=0.1, momentum=0.5)
    _train(opt, ps, 1, seed=0)
    before = opt.state_dict()
    with pytest.raises((ValueError, TypeError), match=match):
        opt.load_state_dict(change(before))
    assert opt.param_groups[0]["lr"] == 0.1          # nothing changed
    np.testing.assert_array_equal(opt.state[id(ps[0])]["momentum_buffer"],
                                  before["state"][0]["momentum_buffer"])
