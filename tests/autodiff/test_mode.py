"""Grad mode: no_grad / enable_grad / set_grad_enabled / is_grad_enabled, restored on exit and
on error, nested, thread-local; nothing is recorded while it is off."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import npdeq
from npdeq import enable_grad, is_grad_enabled, no_grad, set_grad_enabled


def test_enabled_by_default_and_restored_on_exit():
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        with enable_grad():
            assert is_grad_enabled()
            with set_grad_enabled(False):
                assert not is_grad_enabled()
            assert is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()
    with no_grad():
        with pytest.raises(KeyError):
            with enable_grad():
                raise KeyError("x")
        assert not is_grad_enabled()


def test_nothing_is_recorded_under_no_grad(xp, to_xp, check_array):
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0, 3.0])), requires_grad=True)
    with no_grad():
        y = npdeq.tanh(x * 2.0 + 1.0)
        z = (y @ x) + y[0] + npdeq.concat([x, y]).sum()
    for t in (y, z):
        assert not t.requires_grad and t._node is None and t.is_leaf
    check_array(y, shape=(3,), dtype=xp.float64)
    np.testing.assert_allclose(y.numpy(), np.tanh(2 * np.array([1.0, 2.0, 3.0]) + 1))
    with pytest.raises(RuntimeError, match="does not require grad"):
        z.backward()
    assert x.grad is None


def test_enable_grad_records_inside_no_grad(xp, to_xp):
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    with no_grad():
        with enable_grad():
            y = (x * x).sum()
        assert y.requires_grad
        # backward works under no_grad: the graph was recorded.
        y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_set_grad_enabled_with_a_flag(xp, to_xp):
    x = npdeq.Tensor(to_xp(np.array([1.0])), requires_grad=True)
    for flag in (False, True, 0, 1):
        with set_grad_enabled(flag):
            assert is_grad_enabled() is bool(flag)
            assert (x * 2.0).requires_grad is bool(flag)


def test_grad_mode_is_thread_local():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def worker():
        seen["start"] = is_grad_enabled()  # the main thread is inside no_grad now
        x = npdeq.tensor([1.0], requires_grad=True)
        seen["recorded"] = (x * 2.0).requires_grad
        with no_grad():
            entered.set()
            release.wait(10)
            seen["inside"] = is_grad_enabled()
        seen["end"] = is_grad_enabled()

    with no_grad():
        thread = threading.Thread(target=worker)
        thread.start()
        assert entered.wait(10)
        assert not is_grad_enabled()
    # The worker is inside its own no_grad; this thread is not affected by it.
    assert is_grad_enabled()
    assert (npdeq.tensor([1.0], requires_grad=True) * 2.0).requires_grad
    release.set()
    thread.join(10)
    assert seen == {"start": True, "recorded": True, "inside": False, "end": True}
