"""A VJP program's traced replay (npdeq.autodiff.replay): after one traced walk and one walk
that confirms it, a program runs only raw array calls; it equals the walk at every call, keeps
the walk's graph checks, and falls back to walking where a rule works outside npdeq's ops."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import npdeq
from npdeq.autodiff import defvjp, primitive
from npdeq.autodiff.program import vjp_program
from npdeq.autodiff.replay import CallTrace, agree, tracing


@pytest.fixture
def counted_tanh(monkeypatch):
    """Counts the calls of tanh's VJP rule (a replay runs none)."""
    calls = []
    tanh = npdeq.autodiff.ops.elementwise.tanh
    rule = tanh.vjps[0]
    monkeypatch.setitem(tanh.vjps, 0, lambda *a, **k: calls.append(1) or rule(*a, **k))
    return calls


def _mlp(to_xp, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    W = npdeq.Tensor(to_xp(rng.standard_normal((5, 5)) * 0.3, dtype), requires_grad=True)
    b = npdeq.Tensor(to_xp(rng.standard_normal(5), dtype), requires_grad=True)
    z = npdeq.Tensor(to_xp(rng.standard_normal((3, 5)), dtype), requires_grad=True)
    return z, W, b, npdeq.tanh(z @ W.T + b)


def test_program_replays_after_a_confirming_walk(xp, to_xp, check_array, counted_tanh):
    z, W, b, y = _mlp(to_xp)
    program = vjp_program(y, [z, W, b])
    rng = np.random.default_rng(1)
    for k in range(6):
        g = to_xp(rng.standard_normal((3, 5)))
        before = len(counted_tanh)
        got = program(g)
        # The rule runs at the traced walk and the confirming one only.
        assert len(counted_tanh) - before == (1 if k < 2 else 0)
        walked = npdeq.grad(y, [z, W, b], g, retain_graph=True)
        for r, w, t in zip(got, walked, (z, W, b)):
            check_array(r, shape=tuple(t.shape), dtype=t.data.dtype)
            assert not r.requires_grad
            np.testing.assert_array_equal(r.numpy(), w.numpy())


def test_repeated_cotangents_do_not_confirm_the_trace(to_xp, counted_tanh):
    """The trace's own cotangent proves nothing: walks go on until another one comes."""
    z, W, b, y = _mlp(to_xp)
    program = vjp_program(y, z)
    g = to_xp(np.ones((3, 5)))
    for _ in range(3):
        program(g)
    assert len(counted_tanh) == 3
    program(2.0 * g)
    program(3.0 * g)
    assert len(counted_tanh) == 4  # confirmed at the fourth call, replayed at the fifth


# A rule that takes its cotangent's array out of the tape and wraps a result back in.
_double = primitive(lambda x: 2.0 * x, name="double_raw")
defvjp(_double, lambda g, ans, x: npdeq.Tensor(2.0 * g.data))
# Worse: it mixes such an array into a traced value, so the trace alone cannot tell.
_sneaky = primitive(lambda x: 2.0 * x, name="double_sneaky")
defvjp(_sneaky, lambda g, ans, x: g * 1.0 + npdeq.Tensor(g.data))


@pytest.mark.parametrize("op", [_double, _sneaky], ids=["raw", "mixed"])
def test_rules_outside_the_ops_are_walked_at_every_call(to_xp, op, counted_tanh):
    z, W, b, y = _mlp(to_xp)
    out = npdeq.tanh(op(y))
    program = vjp_program(out, [z, W])
    rng = np.random.default_rng(2)
    for k in range(5):
        g = to_xp(rng.standard_normal((3, 5)))
        got = program(g)
        walked = npdeq.grad(out, [z, W], g, retain_graph=True)
        for r, w in zip(got, walked):
            np.testing.assert_array_equal(r.numpy(), w.numpy())
    # Two tanh nodes walked at every call, plus the explicit walks.
    assert len(counted_tanh) == 2 * 5 + 2 * 5


def test_a_replaying_program_keeps_the_walks_graph_checks(to_xp):
    z, W, b, y = _mlp(to_xp)
    program = vjp_program(y, z)
    for s in (1.0, 2.0, 3.0):
        program(to_xp(np.full((3, 5), s)))
    assert program._replay and program._traced_seeds is None  # replaying
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape \(5,\)"):
        program(to_xp(np.ones(5)))
    z.data = z.data * 1.0
    with pytest.raises(RuntimeError, match=r"had its \.data replaced"):
        program(to_xp(np.ones((3, 5))))
    z, W, b, y = _mlp(to_xp)
    program = vjp_program(y, z)
    for s in (1.0, 2.0, 3.0):
        program(to_xp(np.full((3, 5), s)))
    y.backward(to_xp(np.ones((3, 5))))  # frees the graph
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        program(to_xp(np.ones((3, 5))))


def test_a_program_run_by_a_traced_rule_fails_the_outer_trace(to_xp):
    """The IFT rule solves its adjoint with a program of its own: a program over a DEQ's
    output walks at every call, and agrees with grad."""
    rng = np.random.default_rng(3)
    A = npdeq.Tensor(to_xp(rng.standard_normal((4, 4)) * 0.2), requires_grad=True)
    x = to_xp(rng.standard_normal((2, 4)))
    z, _ = npdeq.fixed_point(lambda z: npdeq.tanh(z @ A.T + x), to_xp(np.zeros((2, 4))),
                             solver="anderson", solver_kwargs=dict(tol=1e-12, max_iter=100),
                             b_solver_kwargs=dict(tol=1e-12, max_iter=200))
    program = vjp_program(z, A)
    for _ in range(3):
        g = to_xp(rng.standard_normal((2, 4)))
        (got,) = program(g)
        (walked,) = npdeq.grad(z, [A], g, retain_graph=True)
        np.testing.assert_allclose(got.numpy(), walked.numpy(), rtol=1e-10, atol=1e-12)
    assert program._replay is False


def test_traces_are_per_thread(to_xp):
    """A trace on one thread sees none of another thread's calls."""
    z, W, b, y = _mlp(to_xp)
    seed = npdeq.Tensor(to_xp(np.ones((3, 5))))
    trace = CallTrace([seed])
    started, done = threading.Event(), threading.Event()

    def other():
        started.wait()
        npdeq.tanh(seed) * 2.0
        done.set()

    worker = threading.Thread(target=other)
    worker.start()
    with tracing(trace):
        started.set()
        done.wait(timeout=30)
        out = npdeq.exp(seed)
    worker.join(timeout=30)
    assert len(trace.calls) == 1 and trace.calls[0][0] is npdeq.autodiff.ops.elementwise.exp.fun
    replay = trace.replay([out])
    (r,) = replay([to_xp(np.zeros((3, 5)))])
    np.testing.assert_array_equal(npdeq.backend.to_numpy(r), np.ones((3, 5)))


def test_agree_tells_rounding_from_a_frozen_constant(to_xp):
    a = to_xp(np.array([1.0, -2.0, 3.0], dtype=np.float32))
    assert agree(a, a * (1 + 1e-7))
    assert not agree(a, a + 1e-2)
    assert not agree(a, to_xp(np.array([1.0, -2.0, np.nan], dtype=np.float32)))
    assert agree(to_xp(np.array([np.inf, 1.0])), to_xp(np.array([np.inf, 1.0]))) is None
    assert not agree(a, to_xp(np.array([1.0, -2.0, 3.0])))  # another dtype
    assert agree(None, None) and not agree(a, None)
