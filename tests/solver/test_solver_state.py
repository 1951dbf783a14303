"""State packing (``pack_states``/``unpack_states``/``state_shapes``) and the checked func
wrapper: every solver rejects, at the first call, a func whose output differs from its input
in shape, dtype, namespace, device or structure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npdeq import backend
from npdeq.solver import (get_solver, pack_states, registered_solvers, state_shapes,
                          unpack_states)
from npdeq.solver.state import packed_map
from npdeq.testing.strategies import states

from solver_problems import check_raw, check_state, counted, host, other_namespace_array

ALL_SOLVERS = ("fixed_point_iter", "simple_fixed_point_iter", "anderson", "broyden")


# --- packing ------------------------------------------------------------------------------


@given(data=st.data())
def test_pack_unpack_round_trip(xp, xp_device, check_array, data):
    state = data.draw(states(xp=xp, device=xp_device, max_ndim=3), label="state")
    arrays = list(state) if isinstance(state, tuple) else [state]
    batch = arrays[0].shape[0]
    sizes = [int(np.prod(a.shape[1:])) for a in arrays]
    packed = pack_states(state)
    check_raw(check_array, packed, shape=(batch, sum(sizes)), dtype=xp.float64)
    expected = np.concatenate([host(a).reshape(batch, -1) for a in arrays], axis=1)
    np.testing.assert_array_equal(host(packed), expected)
    shapes = state_shapes(state)
    assert shapes == [tuple(a.shape) for a in arrays]
    back = unpack_states(packed, shapes, as_tuple=isinstance(state, tuple))
    check_state(check_array, back, state)
    for a, b in zip(back if isinstance(back, tuple) else [back], arrays):
        np.testing.assert_array_equal(host(a), host(b))
    # as_tuple=True always gives a tuple; other batch sizes reuse the trailing shapes.
    assert isinstance(unpack_states(packed, shapes), tuple)
    twice = unpack_states(xp.concat([packed, packed], axis=0), shapes)
    assert [tuple(a.shape) for a in twice] == [(2 * batch, *s[1:]) for s in shapes]


def test_pack_of_one_2d_array_is_the_array(xp, to_xp):
    z = to_xp(np.ones((3, 4)))
    assert pack_states(z) is z
    assert unpack_states(z, [(3, 4)], as_tuple=False) is z


def test_pack_of_mixed_shapes(xp, to_xp, check_array):
    zs = (to_xp(np.arange(6.0).reshape(2, 3)), to_xp(np.arange(8.0).reshape(2, 2, 2)))
    packed = pack_states(zs)
    check_raw(check_array, packed, shape=(2, 7), dtype=xp.float64)
    np.testing.assert_array_equal(host(packed), [[0, 1, 2, 0, 1, 2, 3], [3, 4, 5, 4, 5, 6, 7]])


@pytest.mark.parametrize("make, match", [
    (lambda to_xp: (), "empty tuple"),
    (lambda to_xp: to_xp(np.float64(1.0)), "0-dimensional"),
    (lambda to_xp: (to_xp(np.ones((2, 3))), to_xp(np.ones((3, 3)))), "batch"),
])
def test_bad_states_raise_value_error(make, match, xp, to_xp):
    with pytest.raises(ValueError, match=match):
        pack_states(make(to_xp))
    with pytest.raises(ValueError, match=match):
        state_shapes(make(to_xp))


def test_mixed_namespaces_raise_type_error(xp, to_xp):
    with pytest.raises(TypeError, match="namespaces"):
        pack_states((to_xp(np.ones((2, 3))), other_namespace_array(xp, (2, 3))))


def test_unpack_with_wrong_sizes_raises_value_error(xp, to_xp):
    with pytest.raises(ValueError, match=r"7 values per sample.*need 6"):
        unpack_states(to_xp(np.ones((2, 7))), [(2, 3), (2, 3)])


# --- packed_map: the checked func ---------------------------------------------------------


def test_packed_map_wraps_a_tuple_func(xp, to_xp, check_array):
    zs = (to_xp(np.ones((2, 3))), to_xp(np.ones((2, 2, 2))))
    f, z0, restore = packed_map(lambda a, b: (2.0 * a, b + 1.0), zs)
    check_raw(check_array, z0, shape=(2, 7), dtype=xp.float64)
    out = f(z0)
    np.testing.assert_array_equal(host(out), [[2, 2, 2, 2, 2, 2, 2]] * 2)
    check_state(check_array, restore(out), zs)


@pytest.mark.parametrize("x0, match", [
    (lambda to_xp: 1.5, "x0 must be an array, got float"),
    (lambda to_xp: [[0.0, 1.0]], r"x0\[0\] must be an array, got list"),
    (lambda to_xp: to_xp(np.zeros((2, 3), dtype=np.int64)), "floating"),
    (lambda to_xp: (to_xp(np.zeros((2, 3))), to_xp(np.zeros((2, 1), dtype=np.int32))),
     r"x0\[1\].*floating"),
])
def test_bad_x0_raises_type_error(x0, match, xp, to_xp):
    calls = counted(lambda z: z)
    with pytest.raises(TypeError, match=match):
        packed_map(calls, x0(to_xp))
    assert calls.calls == 0


def _wrong_output(kind, xp, to_xp, xp_device):
    """(func, x0, error type, words the message must contain) for one kind of mismatch."""
    single = to_xp(np.zeros((3, 4)))
    pair = (to_xp(np.zeros((3, 4))), to_xp(np.zeros((3, 2, 2))))
    if kind == "shape":
        return (lambda z: xp.zeros((3, 5), dtype=z.dtype, device=xp_device), single,
                ValueError, ["(3, 5)", "(3, 4)"])
    if kind == "shape-of-state-1":
        return (lambda z, y: (z, xp.zeros((3, 4), dtype=y.dtype, device=xp_device)), pair,
                ValueError, ["state 1", "(3, 4)", "(3, 2, 2)"])
    if kind == "dtype":
        return (lambda z: xp.astype(z, xp.float32), single, TypeError, ["float32", "float64"])
    if kind == "namespace":
        other = other_namespace_array(xp, (3, 4))
        names = [backend.namespace_name(ns) for ns in (xp, backend.array_namespace(other))]
        return lambda z: other, single, TypeError, names
    if kind == "structure-tuple":
        return (lambda z: (z, z), single, TypeError, ["tuple of 2 arrays", "one array"])
    if kind == "structure-array":
        return (lambda z, y: z, pair, TypeError, ["one array", "tuple of 2 arrays"])
    if kind == "structure-length":
        return (lambda z, y: (z, y, z), pair, TypeError,
                ["tuple of 3 arrays", "tuple of 2 arrays"])
    if kind == "not-an-array":
        return (lambda z: 1.0, single, TypeError, ["float", "array"])
    raise AssertionError(kind)


WRONG_OUTPUTS = ("shape", "shape-of-state-1", "dtype", "namespace", "structure-tuple",
                 "structure-array", "structure-length", "not-an-array")


@pytest.mark.parametrize("kind", WRONG_OUTPUTS)
@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_func_output_mismatch_raises_at_the_first_call(name, kind, xp, xp_device, to_xp):
    func, x0, error, words = _wrong_output(kind, xp, to_xp, xp_device)
    calls = counted(func)
    with pytest.raises(error) as excinfo:
        get_solver(name)(calls, x0, max_iter=10)
    assert calls.calls == 1
    for word in words:
        assert word in str(excinfo.value), (word, str(excinfo.value))


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_func_output_on_another_device_raises_value_error(name, xp, xp_device, to_xp):
    if backend.namespace_name(xp) != "array_api_strict":
        pytest.skip("needs a namespace with a second device")
    import array_api_strict

    other = array_api_strict.Device("device1" if str(xp_device) != str(
        array_api_strict.Device("device1")) else "CPU_DEVICE")
    calls = counted(lambda z: xp.zeros(z.shape, dtype=z.dtype, device=other))
    with pytest.raises(ValueError, match="device") as excinfo:
        get_solver(name)(calls, to_xp(np.zeros((2, 3))), max_iter=5)
    assert calls.calls == 1
    assert str(other) in str(excinfo.value) and str(xp_device) in str(excinfo.value)


def test_every_solver_is_listed():
    assert set(ALL_SOLVERS) <= set(registered_solvers())


def test_pack_states_checks_the_namespace_of_a_single_packed_array():
    import npdeq

    with pytest.raises(TypeError, match="pack_states"):
        pack_states(npdeq.Tensor(np.ones((2, 3))))
