"""npdeq.nn.Module and the containers: registration, traversal, modes, moving between
namespaces and devices, state dicts and ``.npz`` files."""

from __future__ import annotations

import re

import array_api_strict
import numpy as np
import pytest

import npdeq
from npdeq import backend, nn
from npdeq.autodiff import Tensor

DEVICE1 = array_api_strict.Device("device1")


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


def on(a, xp, device):
    """Whether array ``a`` lives in namespace ``xp`` on ``device``."""
    return backend.array_namespace(a) is xp and backend.device(a) == device


class Block(nn.Module):
    """A Linear with a buffer, a frozen parameter and a plain attribute."""

    def __init__(self, seed=0, n_in=3):
        super().__init__()
        self.lin = nn.Linear(n_in, 2, seed=seed)
        self.scale = nn.Parameter(np.full(2, 2.0))
        self.register_buffer("running", np.arange(2.0))
        self.register_buffer("count", np.zeros((), dtype=np.int64))
        self.note = "plain"

    def forward(self, x):
        return self.lin(x) * self.scale + self.running


class Net(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        self.first = Block(seed)
        self.act = nn.Tanh()
        self.second = Block(seed + 1, n_in=2)
        self.head = nn.Linear(2, 1, bias=False, seed=seed + 2)

    def forward(self, x):
        return self.head(self.second(self.act(self.first(x))))


# A module's own parameters come before its children's, as PyTorch lists them.
NET_PARAMETERS = ["first.scale", "first.lin.weight", "first.lin.bias", "second.scale",
                  "second.lin.weight", "second.lin.bias", "head.weight"]
NET_BUFFERS = ["first.running", "first.count", "second.running", "second.count"]


# --- registration ------------------------------------------------------------------------


def test_setattr_registers_parameters_modules_and_plain_attributes():
    m = Block()
    assert list(m._parameters) == ["scale"]
    assert list(m._modules) == ["lin"]
    assert list(m._buffers) == ["running", "count"]
    assert m.note == "plain" and "note" in m.__dict__
    for name in ("scale", "lin", "running"):
        assert name not in m.__dict__, f"{name} stored twice"
    # Re-assigning under the same name moves it between registries, never keeps both.
    m.note = nn.Parameter(np.zeros(1))
    assert "note" in m._parameters and "note" not in m.__dict__
    m.note = nn.Identity()
    assert "note" in m._modules and "note" not in m._parameters
    m.note = 3
    assert m.note == 3 and "note" not in m._modules
    assert [n for n, _ in m.named_parameters()] == ["scale", "lin.weight", "lin.bias"]


def test_assigning_a_plain_value_to_a_parameter_raises():
    m = Block()
    with pytest.raises(TypeError, match="parameter 'scale'"):
        m.scale = Tensor(np.ones(1))
    assert isinstance(m.scale, nn.Parameter)
    m.scale = None  # an absent parameter stays registered, as a missing bias
    assert "scale" in m._parameters and m.scale is None
    assert "scale" not in m.state_dict()
    del m.scale  # deleting first is how a computed Tensor takes a parameter's place
    m.scale = Tensor(np.ones(1))
    assert "scale" not in m._parameters and isinstance(m.scale, Tensor)


def test_assigning_to_a_buffer_updates_the_buffer():
    m = Block()
    m.running = np.full(2, 7.0)
    assert "running" in m._buffers and "running" not in m.__dict__
    np.testing.assert_array_equal(host(m.state_dict()["running"]), [7.0, 7.0])
    m.running = Tensor(np.ones(2))  # a Tensor's array is kept
    assert not isinstance(m._buffers["running"], Tensor)
    m.running = None
    assert "running" not in m.state_dict() and m.running is None
    with pytest.raises(TypeError, match="'count'"):
        m.count = 3


def test_attributes_before_super_init_raise():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(1))
            super().__init__()

    with pytest.raises(AttributeError, match=r"super\(\).__init__"):
        Broken()


def test_delattr_unregisters():
    m = Block()
    del m.scale
    del m.lin
    del m.running
    del m.note
    assert list(m.named_parameters()) == []
    assert list(m.state_dict()) == ["count"]
    for name in ("scale", "lin", "running", "note"):
        assert not hasattr(m, name)
    with pytest.raises(AttributeError, match="missing"):
        del m.missing
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'absent'"):
        m.absent


def test_register_buffer_checks_its_arguments():
    m = Block()
    with pytest.raises(TypeError, match="name"):
        m.register_buffer("a.b", np.zeros(1))
    with pytest.raises(TypeError, match="name"):
        m.register_buffer("", np.zeros(1))
    with pytest.raises(KeyError, match="scale"):
        m.register_buffer("scale", np.zeros(1))
    with pytest.raises(KeyError, match="lin"):
        m.register_buffer("lin", np.zeros(1))
    with pytest.raises(TypeError, match="'u'"):
        m.register_buffer("u", [1.0, 2.0])
    m.register_buffer("note", np.ones(1))  # replaces a plain attribute
    assert "note" not in m.__dict__ and "note" in m.state_dict()
    m.register_buffer("t", Tensor(np.ones(3), requires_grad=True))
    assert not isinstance(m.state_dict()["t"], Tensor)
    m.register_buffer("nothing", None)
    assert m.nothing is None and "nothing" not in m.state_dict()


def test_register_parameter_and_add_module_check_types():
    m = nn.Module()
    with pytest.raises(TypeError, match="'w'.*Parameter"):
        m.register_parameter("w", Tensor(np.zeros(1), requires_grad=True))
    with pytest.raises(TypeError, match="'sub'.*Module"):
        m.add_module("sub", nn.Linear)
    m.register_parameter("w", nn.Parameter(np.zeros(1)))
    m.add_module("sub", nn.Tanh())
    assert [n for n, _ in m.named_parameters()] == ["w"]
    assert [n for n, _ in m.named_modules()] == ["", "sub"]
    m.register_parameter("w", None)
    assert list(m.parameters()) == []


def test_parameter_is_a_trainable_leaf():
    p = nn.Parameter(np.ones(2))
    assert p.requires_grad and p.is_leaf and isinstance(p, Tensor)
    assert not nn.Parameter(np.ones(2), requires_grad=False).requires_grad
    with pytest.raises(TypeError):
        nn.Parameter(np.arange(3))
    shared = Tensor(np.ones(2))
    assert nn.Parameter(shared).data is shared.data
    assert repr(p).startswith("Parameter containing:\n")


def test_forward_is_required():
    with pytest.raises(NotImplementedError, match="Module"):
        nn.Module()(np.ones(1))


# --- traversal ---------------------------------------------------------------------------


def test_named_parameters_and_modules_are_in_registration_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NET_PARAMETERS
    assert [n for n, _ in net.named_modules()] == [
        "", "first", "first.lin", "act", "second", "second.lin", "head"]
    assert [n for n, _ in net.named_children()] == ["first", "act", "second", "head"]
    assert list(net.children()) == [net.first, net.act, net.second, net.head]
    assert [n for n, _ in net.named_buffers()] == NET_BUFFERS
    assert [n for n, _ in net.named_parameters(prefix="model")] == [
        "model." + n for n in NET_PARAMETERS]
    params = dict(net.named_parameters())
    assert params["second.scale"] is net.second.scale
    assert len(list(net.buffers())) == 4


def test_shared_parameters_and_modules_are_listed_once():
    net = Net()
    net.second.lin.weight = net.first.lin.weight
    net.extra = net.first  # the same submodule under two names
    names = [n for n, _ in net.named_parameters()]
    assert names == [n for n in NET_PARAMETERS if n != "second.lin.weight"]
    assert len({id(p) for p in net.parameters()}) == len(names)
    assert [n for n, _ in net.named_modules()].count("extra") == 0
    assert list(net.state_dict()) == names + NET_BUFFERS


def test_apply_visits_children_before_their_parent():
    net = Net()
    seen = []
    assert net.apply(seen.append) is net
    assert seen[-1] is net and len(seen) == 7
    assert seen.index(net.first.lin) < seen.index(net.first)


def test_train_and_eval_recurse():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.first.train(False)
    assert not net.first.lin.training and net.second.training and net.training
    with pytest.raises(TypeError, match=r"train: mode must be True or False, got 1"):
        net.train(1)


def test_zero_grad_and_requires_grad():
    net = Net()
    loss = net(np.ones((4, 3))).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert net.first.requires_grad_(False) is net.first
    net(np.ones((4, 3))).sum().backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(grads[n] is None for n in NET_PARAMETERS if n.startswith("first."))
    assert all(grads[n] is not None for n in NET_PARAMETERS if not n.startswith("first."))
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())


def test_repr_nests_children_with_their_settings():
    net = nn.Sequential(nn.Linear(2, 3, seed=0), nn.Sequential(nn.ReLU(), nn.GELU("tanh")),
                        nn.Conv2d(1, 2, 3, padding=1, bias=False, seed=0))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): ReLU()\n"
        "    (1): GELU(approximate='tanh')\n"
        "  )\n"
        "  (2): Conv2d(1, 2, kernel_size=(3, 3), stride=1, padding=1)\n"
        ")")
    assert repr(nn.LayerNorm((2, 3))) == "LayerNorm((2, 3), eps=1e-05)"
    assert repr(nn.GroupNorm(2, 4)) == "GroupNorm(2, 4, eps=1e-05)"


def test_deepcopy_gives_an_independent_model():
    import copy

    net = Net().eval()
    clone = copy.deepcopy(net)
    assert not clone.training and not clone.first.lin.training
    for (name, a), b in zip(clone.named_parameters(), net.parameters()):
        assert a is not b and isinstance(a, nn.Parameter) and a.requires_grad, name
        np.testing.assert_array_equal(host(a), host(b), err_msg=name)
    clone.first.lin.weight.data[...] = 0.0
    clone.first.running = np.full(2, 5.0)
    assert np.abs(host(net.first.lin.weight)).max() > 0
    np.testing.assert_array_equal(host(net.first.running), [0.0, 1.0])


# --- containers --------------------------------------------------------------------------


def test_sequential_applies_its_stages_in_order():
    a, b = nn.Linear(3, 4, seed=0), nn.Linear(4, 2, seed=1)
    net = nn.Sequential(a, nn.Tanh(), b)
    x = np.random.default_rng(0).standard_normal((5, 3))
    expected = np.tanh(x @ host(a.weight).T + host(a.bias)) @ host(b.weight).T + host(b.bias)
    np.testing.assert_allclose(host(net(x)), expected, rtol=1e-12)
    assert len(net) == 3 and net[0] is a and net[-1] is b and list(net)[2] is b
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight",
                                                      "2.bias"]
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(a, np.tanh)


def test_module_list_registers_its_items():
    blocks = nn.ModuleList([nn.Linear(2, 2, seed=i) for i in range(2)])
    assert blocks.append(nn.Linear(2, 1, seed=5)) is blocks
    assert len(blocks) == 3 and blocks[-1].out_features == 1
    assert [n for n, _ in blocks.named_parameters()][-2:] == ["2.weight", "2.bias"]
    holder = nn.Module()
    holder.blocks = blocks
    assert len(list(holder.parameters())) == 6
    with pytest.raises(TypeError, match="Module"):
        blocks.append("not a module")


# --- moving ------------------------------------------------------------------------------


def _snapshot(net):
    return {k: host(v) for k, v in net.state_dict().items()}


def test_to_round_trip_keeps_values_identity_and_devices():
    net = Net()
    before = _snapshot(net)
    params = list(net.parameters())
    net(np.ones((2, 3))).sum().backward()
    assert net.to(DEVICE1) is net
    assert list(net.parameters()) == params and all(a is b for a, b in
                                                   zip(net.parameters(), params))
    for name, array in net.state_dict().items():
        assert on(array, array_api_strict, DEVICE1), name
        np.testing.assert_array_equal(host(array), before[name], err_msg=name)
    assert all(p.grad is None for p in net.parameters()), "grads from the old device kept"
    assert net.first.count.dtype == array_api_strict.int64
    # The moved model computes on device1.
    out = net(array_api_strict.asarray(np.ones((2, 3)), device=DEVICE1))
    assert on(out.data, array_api_strict, DEVICE1)
    net.to("cpu")
    numpy_ns = backend.array_namespace(np.zeros(0))
    for name, array in net.state_dict().items():
        assert isinstance(array, np.ndarray), name
        np.testing.assert_array_equal(array, before[name], err_msg=name)
    assert backend.array_namespace(net.first.running) is numpy_ns


@pytest.mark.parametrize("target, expected", [
    pytest.param(lambda: array_api_strict, "CPU_DEVICE", id="module"),
    pytest.param(lambda: DEVICE1, "device1", id="device"),
    pytest.param(lambda: array_api_strict.asarray(np.zeros(1), device=DEVICE1), "device1",
                 id="array"),
])
def test_to_accepts_a_namespace_a_device_or_an_array(target, expected):
    net = Net()
    net.to(target())
    expected = array_api_strict.Device(expected)
    for name, array in net.state_dict().items():
        assert on(array, array_api_strict, expected), name
    net.to(np)
    assert all(isinstance(a, np.ndarray) for a in net.state_dict().values())


def test_to_between_strict_devices():
    net = Net().to(DEVICE1)
    net.to(array_api_strict.Device("CPU_DEVICE"))
    for array in net.state_dict().values():
        assert on(array, array_api_strict, array_api_strict.Device("CPU_DEVICE"))


@pytest.mark.parametrize("start", ["numpy", "device1"])
def test_to_dtype_casts_floating_parameters_and_buffers_only(start):
    net = Net()
    before = _snapshot(net)
    if start == "device1":
        net.to(DEVICE1)
    xp = backend.array_namespace(net.first.scale.data)
    net.to(dtype="float32")
    for name, array in net.state_dict().items():
        expected = xp.int64 if name.endswith("count") else xp.float32
        assert array.dtype == expected, name
        np.testing.assert_array_equal(host(array), before[name].astype(host(array).dtype))
        if start == "device1":
            assert backend.device(array) == DEVICE1, name
    net.to(dtype=xp.float64)
    assert net.head.weight.dtype == xp.float64


@pytest.mark.parametrize("dtype", ["int32", np.int32, "bool", "complex128"],
                         ids=["int32-name", "int32-type", "bool", "complex128"])
def test_to_refuses_a_non_floating_dtype(dtype):
    net = Net()
    before = _snapshot(net)
    with pytest.raises(TypeError, match="floating"):
        net.to(dtype=dtype)
    for name, array in net.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


def test_to_refuses_unknown_targets_and_dtypes():
    net = Net()
    with pytest.raises(ValueError, match="tpu"):
        net.to("tpu")
    with pytest.raises(TypeError, match="cannot move"):
        net.to(object())
    with pytest.raises(ValueError, match="float128x"):
        net.to(dtype="float128x")


@pytest.mark.parametrize("target", ["gpu", "cuda", "cuda:0", "GPU"])
def test_to_gpu_without_cupy_says_why_in_one_line(monkeypatch, target):
    monkeypatch.setattr(npdeq.backend, "cupy_available", lambda: False)
    net = Net()
    with pytest.raises(RuntimeError) as info:
        net.to(target)
    message = str(info.value)
    assert "\n" not in message and "CuPy" in message and repr(target) in message
    assert all(isinstance(a, np.ndarray) for a in net.state_dict().values())


def test_to_with_nothing_to_move_is_a_no_op():
    tanh = nn.Tanh()
    assert tanh.to(DEVICE1) is tanh and tanh.to(dtype="float32") is tanh
    assert list(tanh.state_dict()) == []


@pytest.mark.parametrize("args", [(), (None,), ("cpu",), (np,)], ids=["no-args", "none",
                                                                        "cpu", "numpy"])
def test_to_where_the_module_already_is_keeps_every_array(args):
    net = Net()
    before = net.state_dict()
    assert net.to(*args) is net
    after = net.state_dict()
    assert list(after) == list(before)
    for name, array in after.items():
        assert array is before[name], name  # not copied
        assert type(array) is np.ndarray and array.dtype == before[name].dtype, name
    assert after["first.count"].dtype == np.int64
    assert after["first.lin.weight"].dtype == np.float64


# --- state dicts -------------------------------------------------------------------------


def test_state_dict_round_trip():
    source, target = Net(seed=0), Net(seed=10)
    state = source.state_dict()
    assert list(state) == NET_PARAMETERS + NET_BUFFERS
    assert state["first.lin.weight"] is source.first.lin.weight.data  # shared, as PyTorch
    params = list(target.parameters())
    target.load_state_dict(state)
    assert all(a is b for a, b in zip(target.parameters(), params))
    for name, array in target.state_dict().items():
        np.testing.assert_array_equal(array, host(state[name]), err_msg=name)
    x = np.random.default_rng(0).standard_normal((3, 3))
    np.testing.assert_array_equal(host(target(x)), host(source(x)))


def test_load_state_dict_copies():
    source, target = Net(seed=0), Net(seed=10)
    target.load_state_dict(source.state_dict())
    for (name, a), b in zip(target.state_dict().items(), source.state_dict().values()):
        assert not np.shares_memory(a, b), f"{name} shares memory with the source"
    source.first.lin.weight.data[...] = 0.0
    assert np.abs(host(target.first.lin.weight)).max() > 0


def test_load_state_dict_names_missing_unexpected_and_misshaped_entries():
    net = Net()
    before = _snapshot(net)
    state = dict(Net(seed=3).state_dict())
    missing = dict(state)
    del missing["second.scale"]
    with pytest.raises(KeyError, match=r"missing second\.scale"):
        net.load_state_dict(missing)
    extra = dict(state, **{"third.weight": np.zeros(2)})
    with pytest.raises(KeyError, match=r"unexpected third\.weight"):
        net.load_state_dict(extra)
    both = dict(missing, **{"third.weight": np.zeros(2)})
    with pytest.raises(KeyError, match=r"second\.scale.*third\.weight"):
        net.load_state_dict(both)
    for name in ("head.weight", "first.running"):
        wrong = dict(state, **{name: np.zeros((5, 5))})
        with pytest.raises(ValueError, match=f"'{name}'.*\\(5, 5\\)"):
            net.load_state_dict(wrong)
        with pytest.raises(ValueError, match=f"'{name}'"):
            net.load_state_dict(wrong, strict=False)
    # Strict failures change nothing.
    net2 = Net()
    with pytest.raises(KeyError):
        net2.load_state_dict(missing)
    for name, array in net2.state_dict().items():
        np.testing.assert_array_equal(array, before[name])
    with pytest.raises(TypeError, match="mapping"):
        net.load_state_dict([("head.weight", np.zeros((1, 2)))])


def test_load_state_dict_non_strict_loads_what_matches():
    net, other = Net(seed=0), Net(seed=5)
    before = _snapshot(net)
    state = {"head.weight": host(other.head.weight), "first.scale": np.full(2, 9.0),
             "unknown": np.zeros(3)}
    net.load_state_dict(state, strict=False)
    after = _snapshot(net)
    np.testing.assert_array_equal(after["head.weight"], host(other.head.weight))
    np.testing.assert_array_equal(after["first.scale"], [9.0, 9.0])
    for name in NET_PARAMETERS + NET_BUFFERS:
        if name not in state:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_load_state_dict_converts_to_the_models_namespace_device_and_dtype():
    net = Net(seed=10).to(DEVICE1).to(dtype="float32")
    source = Net(seed=0)
    state = dict(source.state_dict())
    state["head.weight"] = Tensor(state["head.weight"])  # Tensors are accepted too
    state["first.count"] = np.array(4.0)  # converted to the buffer's integer dtype
    net.load_state_dict(state)
    for name, array in net.state_dict().items():
        assert on(array, array_api_strict, DEVICE1), name
        expected = array_api_strict.int64 if name.endswith("count") else \
            array_api_strict.float32
        assert array.dtype == expected, name
        np.testing.assert_array_equal(host(array),
                                      host(state[name]).astype(host(array).dtype))
    # And back: a float32 device1 state dict into a float64 NumPy model.
    fresh = Net(seed=20)
    fresh.load_state_dict(net.state_dict())
    for name, array in fresh.state_dict().items():
        assert isinstance(array, np.ndarray), name
        assert array.dtype == (np.int64 if name.endswith("count") else np.float64), name
        np.testing.assert_array_equal(array, host(net.state_dict()[name]), err_msg=name)


# --- .npz files --------------------------------------------------------------------------


# --- state dicts: dtypes are the model's ---------------------------------------------------


@pytest.mark.parametrize("given", [np.int64, np.int32, np.float32])
def test_load_state_dict_casts_to_the_parameters_dtype(xp, xp_device, given):
    target = nn.Linear(2, 3, seed=0).to(xp_device if xp_device != "cpu" else None)
    values = np.arange(6).reshape(3, 2).astype(given)
    target.load_state_dict({"weight": values, "bias": np.array([1, 2, 3], dtype=given)})
    weight = target.weight
    assert weight.dtype == xp.float64 and weight.requires_grad
    assert on(weight.data, backend.array_namespace(target.bias.data), backend.device(weight.data))
    np.testing.assert_array_equal(host(weight), values.astype(np.float64))
    assert isinstance(weight, nn.Parameter)


def test_load_state_dict_keeps_float32_parameters_float32():
    target = nn.Linear(2, 3, seed=0).to(dtype="float32")
    target.load_state_dict(nn.Linear(2, 3, seed=1).state_dict())
    assert target.weight.dtype == np.float32 and target.bias.dtype == np.float32


@pytest.mark.parametrize("key, value, error, match", [
    pytest.param("first.lin.weight", np.ones((2, 3), dtype=np.complex128), TypeError,
                 r"'first.lin.weight' has dtype complex128, the model expects float64",
                 id="complex-into-float"),
    pytest.param("first.lin.weight", np.ones((2, 3), dtype=bool), TypeError,
                 r"'first.lin.weight' has dtype bool", id="bool-into-float"),
    pytest.param("first.count", np.array(2.5), ValueError,
                 r"'first.count' has dtype float64, the model expects int64.*whole",
                 id="fraction-into-int"),
    pytest.param("first.count", np.array(np.nan), ValueError, "'first.count'",
                 id="nan-into-int"),
    pytest.param("first.count", np.array(2.0**70), ValueError, "'first.count'",
                 id="too-big-into-int"),
    pytest.param("first.count", np.array(1 + 1j), TypeError, "'first.count'",
                 id="complex-into-int"),
    pytest.param("first.running", [1.0, 2.0], TypeError, r"'first.running' must be an array",
                 id="list"),
])
def test_load_state_dict_refuses_what_cannot_be_cast_and_changes_nothing(key, value, error,
                                                                         match):
    net = Net(seed=0)
    before = {k: host(v).copy() for k, v in net.state_dict().items()}
    state = {k: v.copy() for k, v in Net(seed=5).state_dict().items()}
    state[key] = value
    with pytest.raises(error, match=match):
        net.load_state_dict(state)
    for name, array in net.state_dict().items():  # nothing loaded, not even earlier entries
        np.testing.assert_array_equal(host(array), before[name], err_msg=name)
        assert host(array).dtype == before[name].dtype


def test_load_state_dict_into_float32_refuses_overflow():
    target = nn.Linear(2, 1, seed=0).to(dtype="float32")
    with pytest.raises(ValueError, match="'weight'.*infinities"):
        target.load_state_dict({"weight": np.array([[1e300, 0.0]]), "bias": np.zeros(1)})
    target.load_state_dict({"weight": np.array([[np.inf, 0.0]]), "bias": np.zeros(1)})
    assert target.weight.dtype == np.float32  # an infinity given is loaded as one


def test_load_state_dict_casts_whole_floats_into_an_integer_buffer():
    net = Net(seed=0)
    state = net.state_dict()
    state["first.count"] = np.array(7.0)
    state["second.count"] = np.array(3, dtype=np.int32)
    net.load_state_dict(state)
    assert net.first.count.dtype == np.int64 and int(net.first.count) == 7
    assert net.second.count.dtype == np.int64 and int(net.second.count) == 3


def test_save_load_round_trip(tmp_path):
    net = Net(seed=0)
    path = tmp_path / "net.npz"
    nn.save(net, path)
    state = nn.load(path)
    assert sorted(state) == sorted(NET_PARAMETERS + NET_BUFFERS)
    for name, array in net.state_dict().items():
        assert isinstance(state[name], np.ndarray)
        assert state[name].dtype == array.dtype
        np.testing.assert_array_equal(state[name], array, err_msg=name)
    target = Net(seed=7)
    assert nn.load(str(path), into=target) is not None
    x = np.random.default_rng(1).standard_normal((2, 3))
    np.testing.assert_array_equal(host(target(x)), host(net(x)))


def test_save_from_and_load_into_a_model_on_device1(tmp_path):
    source = Net(seed=0).to(DEVICE1)
    nn.save(source, tmp_path / "dev.npz")
    target = Net(seed=9).to(DEVICE1)
    params = list(target.parameters())
    nn.load(tmp_path / "dev.npz", into=target)
    assert all(a is b for a, b in zip(target.parameters(), params))
    for (name, a), b in zip(target.state_dict().items(), source.state_dict().values()):
        assert on(a, array_api_strict, DEVICE1), name
        np.testing.assert_array_equal(host(a), host(b), err_msg=name)


def test_load_finds_the_file_save_wrote_without_a_suffix(tmp_path):
    net = Net()
    nn.save(net, tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint.npz").exists()
    for path in (tmp_path / "checkpoint", str(tmp_path / "checkpoint")):
        assert sorted(nn.load(path)) == sorted(net.state_dict())
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "absent")


def test_save_takes_any_entry_name(tmp_path):
    """Names numpy.savez would take for its own keyword arguments."""
    state = {"file": np.arange(3.0), "allow_pickle": np.ones((2, 2)), "a.b": np.float32(1.5)}
    nn.save(state, tmp_path / "odd.npz")
    loaded = nn.load(tmp_path / "odd.npz")
    assert sorted(loaded) == sorted(state)
    for name, array in state.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == np.asarray(array).dtype


def test_load_into_checks_names_and_save_checks_its_argument(tmp_path):
    nn.save(nn.Linear(2, 3, seed=0), tmp_path / "lin.npz")
    with pytest.raises(KeyError, match="unexpected bias"):
        nn.load(tmp_path / "lin.npz", into=nn.Linear(2, 3, bias=False))
    nn.load(tmp_path / "lin.npz", into=nn.Linear(2, 3, bias=False), strict=False)
    with pytest.raises(ValueError, match="'weight'"):
        nn.load(tmp_path / "lin.npz", into=nn.Linear(3, 3))
    with pytest.raises(TypeError, match="Module or a state dict"):
        nn.save([np.zeros(1)], tmp_path / "list.npz")
    with pytest.raises(TypeError, match="strings"):
        nn.save({1: np.zeros(1)}, tmp_path / "int.npz")


# --- .npz files that are not valid: the error names the path and what is wrong -----------


def _bad_file(tmp_path, kind):
    good = tmp_path / "good.npz"
    nn.save(nn.Linear(4, 3, seed=0), good)
    data = good.read_bytes()
    path = tmp_path / f"{kind}.npz"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(b"these bytes are not an archive " * 4)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "npy":
        np.save(tmp_path / "array.npy", np.ones(3))
        path = tmp_path / "array.npy"
    elif kind == "pickled":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    elif kind == "corrupted":
        flipped = bytearray(data)
        flipped[len(data) // 4] ^= 0xFF  # inside the first member's data: a CRC mismatch
        path.write_bytes(bytes(flipped))
    return path


@pytest.mark.parametrize("kind, reason", [
    ("truncated", "starts as a zip archive.*truncated or corrupted"),
    ("garbage", "does not start with a zip signature"),
    ("empty", r"empty \(0 bytes\)"),
    ("npy", "single .npy array"),
    ("pickled", "member 'x'.*Python objects"),
    ("corrupted", "corrupted or truncated: member 'weight'"),
])
def test_load_of_an_invalid_file_names_the_path_and_the_problem(tmp_path, kind, reason):
    path = _bad_file(tmp_path, kind)
    target = nn.Linear(4, 3, seed=1)
    before = host(target.weight).copy()
    with pytest.raises(ValueError) as info:
        nn.load(path, into=target)
    message = str(info.value)
    assert repr(str(path)) in message
    assert re.search(reason, message), message
    np.testing.assert_array_equal(host(target.weight), before)


def test_load_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        nn.load(tmp_path / "missing.npz")
