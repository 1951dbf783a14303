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
def walks(monkeypatch):
    """Counts the walks of VJP programs (a replay runs none)."""
    calls = []
    walk = npdeq.autodiff.program.propagate
    monkeypatch.setattr(npdeq.autodiff.program, "propagate",
                        lambda *a, **k: calls.append(1) or walk(*a, **k))
    return calls


def _mlp(to_xp, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    W = npdeq.Tensor(to_xp(rng.standard_normal((5, 5)) * 0.3, dtype), requires_grad=True)
    b = npdeq.Tensor(to_xp(rng.standard_normal(5), dtype), requires_grad=True)
    z = npdeq.Tensor(to_xp(rng.standard_normal((3, 5)), dtype), requires_grad=True)
    return z, W, b, npdeq.tanh(z @ W.T + b)


def test_program_replays_after_its_first_call(xp, to_xp, check_array, walks):
    """The first call walks twice (traced, then at a probe cotangent that checks the
    replay); every later call replays, with the walk's values."""
    z, W, b, y = _mlp(to_xp)
    program = vjp_program(y, [z, W, b])
    rng = np.random.default_rng(1)
    for k in range(6):
        g = to_xp(rng.standard_normal((3, 5)))
        before = len(walks)
        got = program(g)
        assert len(walks) - before == (2 if k == 0 else 0)
        walked = npdeq.grad(y, [z, W, b], g, retain_graph=True)
        for r, w, t in zip(got, walked, (z, W, b)):
            check_array(r, shape=tuple(t.shape), dtype=t.data.dtype)
            assert not r.requires_grad
            np.testing.assert_array_equal(r.numpy(), w.numpy())


def test_a_trace_at_a_zero_cotangent_is_checked_where_it_was_zero(to_xp, walks, monkeypatch):
    """A path that gets a zero cotangent at the traced call (a unit row of a Jacobian) gets a
    nonzero one at the check: a rule that mixes its cotangent back in outside the ops
    (were it npdeq's) is caught there, not trusted."""
    monkeypatch.setattr(npdeq.autodiff.replay, "_LIBRARY", "")
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0, 3.0])), requires_grad=True)
    y1, y2 = x * 2.0, _sneaky(x)
    program = vjp_program([y1, y2], x)
    zero, one = to_xp(np.zeros(3)), to_xp(np.ones(3))
    program([one, zero])  # traced: y2's path gets zeros
    assert program._state is False
    (got,) = program([zero, one])
    (want,) = npdeq.grad([y1, y2], [x], [zero, one], retain_graph=True)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_replay_that_would_keep_much_more_than_the_walk_is_not_used(to_xp, walks):
    """A deep chain folds one constant per tanh (its 1 - y**2): beyond KEPT_LIMIT times the
    cotangents' size (above KEPT_FLOOR elements) the program walks, keeping no more than the
    walk does."""
    from npdeq.autodiff.program import KEPT_FLOOR, KEPT_LIMIT

    shape = (64, KEPT_FLOOR // 64 + 64)

    def chain(depth):
        z = npdeq.Tensor(to_xp(np.linspace(-1.0, 1.0, shape[0] * shape[1]).reshape(shape)),
                         requires_grad=True)
        h = z
        for _ in range(depth):
            h = npdeq.tanh(h * 0.9 + 0.1)
        return z, h

    for depth, replays in ((KEPT_LIMIT, True), (KEPT_LIMIT + 1, False)):
        z, h = chain(depth)
        program = vjp_program(h, z)
        program(to_xp(np.ones(shape)))
        assert bool(program._state) == replays


# A rule that takes its cotangent's array out of the tape and wraps a result back in.
_double = primitive(lambda x: 2.0 * x, name="double_raw")
defvjp(_double, lambda g, ans, x: npdeq.Tensor(2.0 * g.data))
# Worse: it mixes such an array into a recorded value.
_sneaky = primitive(lambda x: 2.0 * x, name="double_sneaky")
defvjp(_sneaky, lambda g, ans, x: g * 1.0 + npdeq.Tensor(g.data))
# A rule that branches on its cotangent's values (a replay would follow one branch only).
_cube = primitive(lambda x: x * x * x, name="cube_skipping_zeros")
defvjp(_cube, lambda g, ans, x: g * 3.0 * x * x if bool(npdeq.backend.any_true(g.data != 0))
       else g * 0.0)


def _walked_every_time(to_xp, out, inputs, walks, calls=5, checks=0):
    program = vjp_program(out, inputs)
    rng = np.random.default_rng(2)
    before = len(walks)
    for k in range(calls):
        g = to_xp(rng.standard_normal(tuple(out.shape)))
        got = program(g)
        walked = npdeq.grad(out, inputs, g, retain_graph=True)
        for r, w in zip(got, walked):
            np.testing.assert_array_equal(r.numpy(), w.numpy())
    assert len(walks) - before == calls + checks  # a check is a walk at a probe cotangent


@pytest.mark.parametrize("op", [_double, _sneaky, _cube], ids=["raw", "mixed", "branching"])
def test_rules_of_other_modules_are_walked_at_every_call(to_xp, op, walks):
    z, W, b, y = _mlp(to_xp)
    _walked_every_time(to_xp, npdeq.tanh(op(y)), [z, W], walks)


@pytest.mark.parametrize("op", [_double, _sneaky], ids=["raw", "mixed"])
def test_a_rule_outside_the_ops_fails_the_trace_or_its_check(to_xp, op, walks, monkeypatch):
    """Were these rules npdeq's, the trace would still not be used: the raw one hands on a
    cotangent the trace did not see, the mixed one fails the comparison with a walk."""
    monkeypatch.setattr(npdeq.autodiff.replay, "_LIBRARY", "")
    z, W, b, y = _mlp(to_xp)
    _walked_every_time(to_xp, npdeq.tanh(op(y)), [z, W], walks, checks=int(op is _sneaky))


def test_a_branching_rule_gives_the_right_jacobian(to_xp):
    """Unit cotangents give a node a zero cotangent at the trace and at its check alike;
    a replay of a rule that branches on that would be wrong from the third row on."""
    x = to_xp(np.array([0.1, 0.2, 1.0, 2.0]))
    J = npdeq.jacobian(lambda x: npdeq.concat([npdeq.sin(x[:2]), _cube(x[2:])]), x,
                       mode="reverse")
    expected = np.concatenate([np.cos([0.1, 0.2]), 3 * np.array([1.0, 2.0]) ** 2])
    np.testing.assert_allclose(np.diag(J.numpy()), expected, rtol=1e-12)


def test_seeds_are_traced_apart_from_the_graph_and_each_other(to_xp, walks):
    """One Tensor given for two outputs, or a cotangent that is itself a value of the graph,
    is traced as fresh seeds: the replay keeps the outputs' paths apart."""
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0, 3.0])), requires_grad=True)
    c = npdeq.Tensor(to_xp(np.array([0.5, -1.0, 2.0])))
    y1, y2 = x * c, npdeq.sin(x)
    program = vjp_program([y1, y2], x)
    g, h = npdeq.Tensor(to_xp(np.ones(3))), npdeq.Tensor(to_xp(np.full(3, 2.0)))
    program([g, g])
    program([h, h])
    program([c, c])
    for a, b in ((np.ones(3), np.zeros(3)), (np.zeros(3), np.ones(3)), (c.numpy(), -1.0)):
        a, b = to_xp(a), to_xp(np.broadcast_to(b, (3,)).copy())
        (got,) = program([a, b])
        (want,) = npdeq.grad([y1, y2], [x], [a, b], retain_graph=True)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert len(walks) == 2  # replayed from the third call on


def test_cotangents_of_another_dtype_are_walked(xp, to_xp, walks):
    """The engine casts a float64 cotangent into a float32 input, not a complex or integer
    one: a trace made with float64 cotangents is not used for those."""
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0, 3.0], dtype=np.float32)), requires_grad=True)
    y = npdeq.sin(x * to_xp(np.array([1.0, 2.0, 3.0])))  # float64
    program = vjp_program(y, x)
    for s in (1.0, 2.0, 3.0):
        program(to_xp(np.full(3, s)))
    assert len(walks) == 2
    cotangents = [np.array([1.0, -2.0, 3.0], dtype=np.float32)]
    if xp.__name__.endswith("numpy"):  # the array API promotes neither with float64
        cotangents += [np.array([1, -2, 3]), np.array([1 + 1j, -2j, 3.0])]
    for g in cotangents:
        (got,) = program(to_xp(g))
        (want,) = npdeq.grad(y, [x], to_xp(g), retain_graph=True)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    # seed() casts the float32 cotangent to the output's float64 before the walk: replayed.
    assert len(walks) == 2 + len(cotangents) - 1
    program(to_xp(np.full(3, 4.0)))
    assert len(walks) == 2 + len(cotangents) - 1  # float64 replays again


def test_a_check_that_meets_non_finite_values_leaves_the_program_walking(to_xp, walks):
    """sqrt's VJP at 0 is infinite: the check cannot tell, so the trace is not used."""
    x = npdeq.Tensor(to_xp(np.array([0.0, 1.0, 4.0])), requires_grad=True)
    y = npdeq.sqrt(x)
    program = vjp_program(y, x)
    for s in (1.0, 2.0, 3.0):
        with np.errstate(divide="ignore"):
            (got,) = program(to_xp(np.full(3, s)))
            (want,) = npdeq.grad(y, [x], to_xp(np.full(3, s)), retain_graph=True)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert program._state is False and len(walks) == 4  # traced and checked, then walks


def test_a_replaying_program_keeps_the_walks_graph_checks(to_xp):
    z, W, b, y = _mlp(to_xp)
    program = vjp_program(y, z)
    for s in (1.0, 2.0, 3.0):
        program(to_xp(np.full((3, 5), s)))
    assert program._state  # replaying
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
    assert program._state is False


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


def test_agree_asks_for_the_same_values(to_xp):
    """A replay makes the walk's calls on the walk's arrays: anything but equality (a
    frozen constant off by a rounding error included) is a disagreement."""
    a = to_xp(np.array([1.0, -2.0, 3.0], dtype=np.float32))
    assert agree(a, a * 1.0)
    assert not agree(a, a + to_xp(np.array([0.0, 0.0, 3e-7], dtype=np.float32)))
    assert not agree(a, to_xp(np.array([1.0, -2.0, np.nan], dtype=np.float32)))
    assert agree(to_xp(np.array([np.inf, 1.0])), to_xp(np.array([np.inf, 1.0]))) is None
    assert not agree(a, to_xp(np.array([1.0, -2.0, 3.0])))  # another dtype
    assert agree(None, None) and not agree(a, None)


def test_a_rule_replaced_after_a_trace_is_not_taken_for_npdeqs(to_xp, monkeypatch):
    """Whether a rule is npdeq's is read at each trace: sin's rule replaced by one that
    branches on its cotangent (after sin's own rule was traced) is walked."""
    x = to_xp(np.array([0.1, 0.2, 1.0, 2.0]))

    def fn(x):
        return npdeq.concat([npdeq.sin(x[:2]), npdeq.sin(x[2:])])

    npdeq.jacobian(fn, x, mode="reverse")
    sin = npdeq.autodiff.ops.trigonometric.sin
    monkeypatch.setitem(sin.vjps, 0, lambda g, ans, a: g * npdeq.cos(a) if bool(
        npdeq.backend.any_true(g.data != 0)) else g * 0.0)
    J = npdeq.jacobian(fn, x, mode="reverse")
    np.testing.assert_allclose(np.diag(J.numpy()), np.cos([0.1, 0.2, 1.0, 2.0]), rtol=1e-12)


def test_nested_recomputation_is_not_run_again(to_xp):
    """mem_gc's recomputation hands out its value once: inside a traced rule it is a
    constant of the trace, never a call to replay."""
    from npdeq.utils import mem_gc

    rng = np.random.default_rng(0)
    W = npdeq.Tensor(to_xp(0.3 * rng.standard_normal((3, 3))))
    inner = lambda y: npdeq.tanh(y @ W)  # noqa: E731
    f = lambda z: npdeq.tanh(mem_gc(inner, (z,)) @ W)  # noqa: E731
    x = to_xp(rng.standard_normal(3))
    plain = npdeq.jacobian(f, x, mode="reverse")
    nested = npdeq.jacobian(lambda z: mem_gc(f, (z,)), x, mode="reverse")
    np.testing.assert_allclose(nested.numpy(), plain.numpy(), rtol=1e-13, atol=1e-15)
