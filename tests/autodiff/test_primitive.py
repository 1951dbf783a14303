"""The primitive registry: a new op in a few lines, missing rules, shared multi-argument rules,
what a node records, and the namespace/device checks every op makes."""

from __future__ import annotations

import inspect

import array_api_strict
import numpy as np
import pytest

import npdeq
from npdeq import backend
from npdeq.autodiff.graph import parents, topological_order, walk
from npdeq.testing.gradcheck import check_grads


# A new op: the raw forward on arrays of any namespace, its VJP written with npdeq ops.
@npdeq.primitive
def softsign(x):
    return x / (1.0 + backend.array_namespace(x).abs(x))


npdeq.defvjp(softsign, lambda g, ans, x: g / (1.0 + npdeq.abs(x)) ** 2)


@npdeq.primitive(name="scaled_product")
def scaled_product(a, b, scale=1.0):
    return scale * a * b


# No rule for b: scaled_product cannot be differentiated with respect to it.
npdeq.defvjp(scaled_product, lambda g, ans, a, b, scale=1.0: g * b * scale, None)


def test_a_new_op_in_a_few_lines(xp, to_xp, check_array):
    x0 = np.array([[-2.0, -0.5], [0.25, 3.0]])
    out = softsign(to_xp(x0))
    assert softsign.name == "softsign" and "softsign" in repr(softsign)
    check_array(out, shape=(2, 2), dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), x0 / (1 + np.abs(x0)), rtol=1e-15)
    # The rule is written with npdeq ops, so second derivatives come for free.
    check_grads(softsign, to_xp(x0), order=2, modes=("rev", "fwd"))


def test_a_missing_rule_is_an_error_only_for_that_argument(xp, to_xp):
    a = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.array([3.0, 4.0])), requires_grad=True)
    (ga,) = npdeq.grad(scaled_product(a, b.detach(), scale=2.0).sum(), [a])
    np.testing.assert_array_equal(ga.numpy(), [6.0, 8.0])
    with pytest.raises(NotImplementedError, match="scaled_product: no VJP rule for argument 1"):
        npdeq.grad(scaled_product(a, b).sum(), [a, b])
    with pytest.raises(NotImplementedError, match="no VJP rule for argument 0"):
        npdeq.primitive(lambda x: x * 2.0, name="no_rules")(a).sum().backward()


def test_an_op_without_rules_still_runs_on_constants(xp, to_xp, check_array):
    double = npdeq.primitive(lambda x: x * 2.0, name="double")
    out = double(to_xp(np.array([1.0])))
    check_array(out, shape=(1,), dtype=xp.float64)
    with npdeq.no_grad():
        assert not double(npdeq.Tensor(to_xp(np.ones(1)), requires_grad=True)).requires_grad


def test_rules_run_only_for_arguments_that_need_a_gradient(xp, to_xp):
    calls = []

    def rule(argnum):
        def vjp(g, ans, a, b):
            calls.append(argnum)
            return g * (b if argnum == 0 else a)
        return vjp

    mul = npdeq.defvjp(npdeq.primitive(lambda a, b: a * b, name="logged_mul"), rule(0), rule(1))
    a = npdeq.Tensor(to_xp(np.array([2.0])), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.array([5.0])), requires_grad=True)
    npdeq.grad(mul(a, b.detach()).sum(), [a])
    assert calls == [0]
    calls.clear()
    # grad prunes the walk to what reaches its inputs, even when b requires a gradient too.
    npdeq.grad(mul(a, b).sum(), [b])
    assert calls == [1]


def test_defvjp_argnums_computes_cotangents_together(xp, to_xp):
    seen = []

    def shared(argnums, g, ans, a, b):
        seen.append(tuple(argnums))
        common = g * 2.0  # the step both cotangents share
        return tuple(common * (b if i == 0 else a) for i in argnums)

    prod = npdeq.defvjp_argnums(npdeq.primitive(lambda a, b: 2.0 * a * b, name="prod2"), shared)
    a = npdeq.Tensor(to_xp(np.array([2.0, 3.0])), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.array([5.0, 7.0])), requires_grad=True)
    ga, gb = npdeq.grad(prod(a, b).sum(), [a, b])
    assert seen == [(0, 1)]
    np.testing.assert_array_equal(ga.numpy(), [10.0, 14.0])
    np.testing.assert_array_equal(gb.numpy(), [4.0, 6.0])
    prod(a.detach(), b).sum().backward()
    assert seen[-1] == (1,)


def test_node_records_the_call(xp, to_xp):
    a = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    c = to_xp(np.array([3.0, 4.0]))
    y = scaled_product(a, c, scale=0.5)
    node = y._node
    assert isinstance(node, npdeq.Node) and node.primitive is scaled_product
    assert node.args[0] is a and node.args[1] is c and node.kwargs == {"scale": 0.5}
    assert [(argnum, p) for argnum, p in node.parents] == [(0, a)]
    assert not node.freed
    z = npdeq.tanh(y)
    assert z._node.clock > node.clock
    z.sum().backward()
    assert node.freed and node.args is None and node.parents == ()


def test_a_primitive_is_its_public_op(xp, to_xp, check_array):
    @npdeq.primitive
    def _cube(x):
        """The cube of ``x``."""
        return x * x * x

    npdeq.defvjp(_cube, lambda g, ans, x: g * 3.0 * x * x)
    # name, docstring and signature of the function; the error-message name drops the "_"
    assert _cube.__name__ == "_cube" and _cube.__doc__ == "The cube of ``x``."
    assert str(inspect.signature(_cube)) == "(x)" and _cube.name == "cube"
    assert npdeq.erf.__doc__.startswith("The error function") and npdeq.erf.name == "erf"
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    # bound as a method, like a function: Tensor.exp is the primitive itself
    assert npdeq.Tensor.exp is npdeq.exp
    check_array(x.exp(), shape=(2,), dtype=xp.float64)
    np.testing.assert_allclose(x.exp().numpy(), np.exp([1.0, 2.0]), rtol=1e-15)
    np.testing.assert_array_equal(npdeq.grad(_cube(x).sum(), x).numpy(), [3.0, 12.0])


def test_graph_walks_and_parents(xp, to_xp):
    a = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    b = a * 2.0
    c = b * b + npdeq.tanh(b)
    assert parents(a) == () and parents(b) == (a,)
    order = topological_order([c, b, c])  # repeated and dependent roots: each once
    assert len(order) == len({id(t) for t in order}) == 4 and order[0] is c
    position = {id(t): i for i, t in enumerate(order)}
    for t in order:  # each tensor before its parents
        assert all(position[id(t)] < position[id(p)] for p in parents(t) if not p.is_leaf)
    assert [t for t in walk([c], lambda t: t is not b) if t is a] == []  # not past b


# --- namespaces and devices --------------------------------------------------------------


def _strict(values, device=None):
    return array_api_strict.asarray(np.asarray(values), device=device)


_MIXING = {
    "add": lambda a, b: npdeq.add(a, b),
    "mul": lambda a, b: npdeq.Tensor(a, requires_grad=True) * b,
    "matmul": lambda a, b: npdeq.matmul(a, b),
    "where": lambda a, b: npdeq.where(npdeq.Tensor(a) > 0.0, a, b),
    "concat": lambda a, b: npdeq.concat([a, b]),
    "maximum": lambda a, b: npdeq.maximum(npdeq.Tensor(a, requires_grad=True), b),
}


@pytest.mark.parametrize("name", list(_MIXING))
def test_mixing_namespaces_is_a_clear_error(name):
    a, b = np.array([1.0, 2.0]), _strict([3.0, 4.0])
    with pytest.raises(TypeError, match=f"{name}: cannot mix arrays of different namespaces: "
                                        "numpy and array_api_strict"):
        _MIXING[name](a, b)
    with pytest.raises(TypeError, match="array_api_strict and numpy"):
        _MIXING[name](b, a)


@pytest.mark.parametrize("name", list(_MIXING))
def test_mixing_devices_is_a_clear_error(name):
    a = _strict([1.0, 2.0])
    b = _strict([3.0, 4.0], device=array_api_strict.Device("device1"))
    with pytest.raises(ValueError, match=f"{name}: arrays are on different devices "
                                         r"\(.*CPU_DEVICE.*and.*device1.*\).*move them"):
        _MIXING[name](a, b)


def test_mixing_is_checked_for_tensors_and_python_scalars_pass(xp, to_xp, check_array):
    t = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    out = npdeq.add(npdeq.mul(t, 2), 0.5)
    check_array(out, shape=(2,), dtype=xp.float64)
    other = np.ones(2) if not backend.is_numpy(xp) else _strict([1.0, 1.0])
    with pytest.raises(TypeError, match="add: cannot mix arrays of different namespaces"):
        npdeq.add(t, npdeq.Tensor(other))
