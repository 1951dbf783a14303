"""NumPy integer and float scalars are accepted wherever a Python int or float is, and give
the same result; bools, floats where a count is meant, NaN and infinities are refused with a
message naming the argument (the shared checks in ``npdeq.backend.checks``)."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq.backend import as_count, check_int, check_real
from npdeq.backend.checks import check_callable
from npdeq.core.sampling import sample_steps
from npdeq.core.sradius import power_method
from npdeq.grad import backward_factory, fixed_point, phantom_grad
from npdeq.grad.jacobian import jacobian_frobenius


@pytest.mark.parametrize("value, expected", [
    (3, 3), (np.int64(3), 3), (np.int32(3), 3), (np.array(3), 3),
    (True, None), (np.bool_(True), None), (3.0, None), (np.float64(3.0), None), ("3", None),
])
def test_as_count(value, expected):
    got = as_count(value)
    assert got == expected and (got is None or type(got) is int)


def test_check_count_and_number_name_the_argument():
    assert check_int("n", np.int64(2), 1) == 2
    with pytest.raises(ValueError, match=r"n must be an int >= 1, got 0"):
        check_int("n", 0, 1)
    assert type(check_real("tol", np.float32(0.5), 0.0)) is float
    for bad in (float("nan"), float("inf"), -1.0, True, "1", 1j):
        with pytest.raises(ValueError, match="tol must be a finite number"):
            check_real("tol", bad, 0.0)


def test_check_callable_names_the_argument_and_the_type():
    assert check_callable("func", len) is len
    with pytest.raises(TypeError, match=r"^fp: func must be callable, got int$"):
        check_callable("func", 3, owner="fp")


def _map():
    W = npdeq.Tensor(0.5 * np.eye(3), requires_grad=True)
    return W, (lambda z: npdeq.tanh(z @ W + 1.0)), np.zeros((2, 3))


CALLS = {
    "conv2d stride/padding/dilation/groups": lambda n: npdeq.conv2d(
        np.ones((1, 2, 5, 5)), np.ones((2, 1, 3, 3)), stride=n(1), padding=n(1),
        dilation=n(1), groups=n(2)),
    "group_norm num_groups": lambda n: npdeq.group_norm(np.arange(8.0).reshape(1, 4, 2),
                                                        n(2)),
    "power_method n_iters": lambda n: power_method(*(lambda z: (z @ np.diag([0.9, 0.5]), z))(
        npdeq.Tensor(np.ones((1, 2)), requires_grad=True)), n_iters=n(20), seed=0)[1],
    "jacobian_frobenius vecs": lambda n: jacobian_frobenius(*(lambda z: (2.0 * z, z))(
        npdeq.Tensor(np.ones((1, 2)), requires_grad=True)), vecs=n(2), seed=0),
    "sample_steps n_states": lambda n: np.array(sample_steps(24, n_states=n(2))),
    "phantom_grad k": lambda n: phantom_grad(_map()[1], (np.zeros((2, 3)),), k=n(3))[-1][0],
    "backward_factory grad_type": lambda n: backward_factory(n(2))(None, _map()[1],
                                                                   np.zeros((2, 3)))[0],
    "fixed_point grad": lambda n: fixed_point(_map()[1], np.zeros((2, 3)), grad=n(2))[0],
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_numpy_integers_accepted_and_bools_refused(name):
    call = CALLS[name]
    expected = call(int)
    got = call(np.int64)
    expected = expected.data if isinstance(expected, npdeq.Tensor) else expected
    got = got.data if isinstance(got, npdeq.Tensor) else got
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    with pytest.raises(ValueError):
        call(lambda v: True if v == 1 else float(v))


def test_phantom_tau_accepts_numpy_floats_and_refuses_nan():
    _, f, z0 = _map()
    a = phantom_grad(f, (z0,), k=2, tau=0.5)[-1][0]
    b = phantom_grad(f, (z0,), k=2, tau=np.float32(0.5))[-1][0]
    np.testing.assert_array_equal(a.data, b.data)
    assert b.data.dtype == np.float64
    with pytest.raises(ValueError, match="tau"):
        phantom_grad(f, (z0,), k=2, tau=float("nan"))
