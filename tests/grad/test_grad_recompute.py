"""rerun_in_backward: one node whose backward re-runs its computation; its gradients are the
plain call's, at first and second order, from a fresh recording or a kept one."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq.grad.recompute import record, rerun_in_backward
from npdeq.grad.state import pack_tensors, solver_map, unpack_tensors


def _setup(to_xp):
    rng = np.random.default_rng(0)
    W = npdeq.Tensor(to_xp(0.4 * rng.standard_normal((3, 3))), requires_grad=True)
    z = npdeq.Tensor(to_xp(rng.standard_normal((2, 3))), requires_grad=True)
    return W, z


@pytest.mark.parametrize("how", ["rerun", "kept"])
def test_gradients_equal_the_plain_call_to_second_order(xp, to_xp, check_array, how):
    W, z = _setup(to_xp)

    # fn closes over W and over its own input z: both paths reach z's gradient.
    def fn(a):
        return npdeq.tanh(a @ W) * z + a

    results = []
    for call in ("plain", how):
        if call == "plain":
            out = fn(z)
        else:
            kept = record(fn, (z,)) if how == "kept" else None
            with npdeq.no_grad():
                value = fn(z).data
            out = rerun_in_backward(fn, (z,), (W, z), value, kept)
            assert len(out._node.parents) == 2  # one node, on z and W
        gW, gz = npdeq.grad((out * out).sum(), [W, z], create_graph=True)
        second = npdeq.grad((gW * gW).sum() + (gz * gz).sum(), [W, z])
        results.append([t.numpy() for t in (out, gW, gz, *second)])
    for plain, rerun in zip(*results):
        np.testing.assert_allclose(rerun, plain, rtol=1e-13, atol=1e-15)
    check_array(out, shape=(2, 3))


def test_nothing_to_differentiate_gives_a_detached_value(xp, to_xp):
    value = to_xp(np.ones((2, 3)))
    out = rerun_in_backward(lambda a: a, (npdeq.Tensor(value),), (), value)
    assert not out.requires_grad and out._node is None


def test_pack_without_batch_and_the_single_state_shortcut(xp, to_xp):
    a = npdeq.Tensor(to_xp(np.arange(6.0).reshape(2, 3)), requires_grad=True)
    b = npdeq.Tensor(to_xp(np.arange(4.0)), requires_grad=True)
    flat = pack_tensors([a, b], batch=False)
    assert tuple(flat.shape) == (10,)
    back = unpack_tensors(flat, [(2, 3), (4,)], batch=False)
    np.testing.assert_array_equal(back[0].numpy(), a.numpy())
    np.testing.assert_array_equal(back[1].numpy(), b.numpy())
    assert pack_tensors([a]) is a and unpack_tensors(a, [(2, 3)])[0] is a  # nothing recorded
    (back[0].sum() + 2.0 * back[1].sum()).backward()
    np.testing.assert_array_equal(b.grad.numpy(), np.full(4, 2.0))


def test_solver_map_uses_first_call_once(xp, to_xp):
    seen = []

    def first(func, states):
        seen.append(len(states))
        return (func(*states) + 1.0,)

    f = solver_map(lambda z: z * 2.0, to_xp(np.ones((1, 2))), first)
    outs = [f(to_xp(np.ones((1, 2)))) for _ in range(3)]
    assert seen == [1] and not any(isinstance(o, npdeq.Tensor) for o in outs)
    np.testing.assert_array_equal(npdeq.backend.to_numpy(outs[0]), np.full((1, 2), 3.0))
    np.testing.assert_array_equal(npdeq.backend.to_numpy(outs[2]), np.full((1, 2), 2.0))
