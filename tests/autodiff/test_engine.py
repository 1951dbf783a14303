"""The engine: backward (accumulating into .grad), grad (outputs, inputs, grad_outputs,
retain_graph, create_graph, allow_unused; .grad untouched), vjp, higher orders, deep graphs,
graph lifetime, and the error messages."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import npdeq
from npdeq.autodiff.engine import partial_grad
from npdeq.backend import to_numpy
from npdeq.testing.gradcheck import check_grads


@pytest.fixture
def x(to_xp):
    return npdeq.Tensor(to_xp(np.array([1.0, -2.0, 0.5])), requires_grad=True)


X0 = np.array([1.0, -2.0, 0.5])


# --- backward ----------------------------------------------------------------------------


def test_backward_accumulates_into_grad(xp, to_xp, check_array, x):
    (x * x).sum().backward()
    (3.0 * x).sum().backward()
    check_array(x.grad, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(x.grad.numpy(), 2 * X0 + 3.0)
    assert not x.grad.requires_grad
    x.grad = None
    npdeq.backward(npdeq.tanh(x).sum())
    np.testing.assert_allclose(x.grad.numpy(), 1 - np.tanh(X0) ** 2, rtol=1e-15)


def test_backward_with_a_cotangent_and_several_outputs(xp, to_xp, check_array, x):
    y = x * 2.0
    y.backward(to_xp(np.array([1.0, 10.0, 100.0])))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 20.0, 200.0])
    x.grad = None
    a, b = x * x, npdeq.exp(x)
    npdeq.backward([a, b], [to_xp(np.ones(3)), npdeq.Tensor(to_xp(np.full(3, 2.0)))])
    check_array(x.grad, shape=(3,), dtype=xp.float64)
    np.testing.assert_allclose(x.grad.numpy(), 2 * X0 + 2 * np.exp(X0), rtol=1e-15)


def test_backward_fills_only_leaves_that_require_grad(xp, to_xp, check_array, x):
    c = npdeq.Tensor(to_xp(np.array([4.0, 5.0, 6.0])))
    y = x * c
    (y * y).sum().backward()
    assert c.grad is None and y.grad is None
    check_array(x.grad, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(x.grad.numpy(), 2 * X0 * np.array([4.0, 5.0, 6.0]) ** 2)


def test_shared_subexpressions_sum_their_cotangents(xp, to_xp, check_array, x):
    y = x * x
    z = (y + y * y + npdeq.tanh(y)).sum()
    (g,) = npdeq.grad(z, [x])
    check_array(g, shape=(3,), dtype=xp.float64)
    y0 = X0 * X0
    np.testing.assert_allclose(g.numpy(), (1 + 2 * y0 + 1 - np.tanh(y0) ** 2) * 2 * X0,
                               rtol=1e-14)


def test_backward_of_a_scalar_leaf(xp, to_xp, check_array):
    s = npdeq.Tensor(to_xp(np.array(3.0)), requires_grad=True)
    s.backward()
    check_array(s.grad, shape=(), dtype=xp.float64)
    assert s.grad.item() == 1.0


# --- grad -----------------------------------------------------------------------------------


def test_grad_does_not_touch_dot_grad(xp, to_xp, check_array, x):
    y = (x * x).sum()
    (g,) = npdeq.grad(y, [x])
    assert x.grad is None
    check_array(g, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(g.numpy(), 2 * X0)
    assert not g.requires_grad


def test_grad_return_forms_and_grad_outputs(xp, to_xp, check_array, x):
    w = npdeq.Tensor(to_xp(np.array([2.0, 3.0, 4.0])), requires_grad=True)
    y = x * w
    u = to_xp(np.array([1.0, -1.0, 0.5]))
    gx, gw = npdeq.grad(y, (x, w), grad_outputs=u, retain_graph=True)
    check_array(gx, shape=(3,), dtype=xp.float64)
    check_array(gw, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(gx.numpy(), [2.0, -3.0, 2.0])
    np.testing.assert_array_equal(gw.numpy(), X0 * [1.0, -1.0, 0.5])
    single = npdeq.grad(y, x, grad_outputs=npdeq.Tensor(u), retain_graph=True)
    assert isinstance(single, npdeq.Tensor)
    assert isinstance(npdeq.grad([y.sum()], [x]), tuple)


def test_grad_with_respect_to_an_intermediate(xp, to_xp, check_array, x):
    h = npdeq.tanh(x)
    out = (h * h).sum()
    gh, gx = npdeq.grad(out, [h, x])
    check_array(gh, shape=(3,), dtype=xp.float64)
    check_array(gx, shape=(3,), dtype=xp.float64)
    np.testing.assert_allclose(gh.numpy(), 2 * np.tanh(X0), rtol=1e-15)
    np.testing.assert_allclose(gx.numpy(), 2 * np.tanh(X0) * (1 - np.tanh(X0) ** 2),
                               rtol=1e-15)


def test_grad_of_several_outputs_sums_them(xp, to_xp, check_array, x):
    gx = npdeq.grad([(x * x).sum(), (3.0 * x).sum()], x)
    check_array(gx, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(gx.numpy(), 2 * X0 + 3.0)


def test_unused_input(xp, to_xp, check_array, x):
    other = npdeq.Tensor(to_xp(np.ones(2)), requires_grad=True)
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match=r"inputs\[1\] \(shape \(2,\)\) is not in the graph.*"
                                           "allow_unused=True"):
        npdeq.grad(y, [x, other], retain_graph=True)
    gx, gother = npdeq.grad(y, [x, other], allow_unused=True)
    assert gother is None
    check_array(gx, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(gx.numpy(), 2 * X0)


def test_grad_of_an_input_that_does_not_require_grad(xp, to_xp, x):
    c = npdeq.Tensor(to_xp(np.ones(3)))
    with pytest.raises(RuntimeError, match=r"inputs\[0\] \(shape \(3,\)\) does not require "
                                           "grad"):
        npdeq.grad((x * c).sum(), [c])
    with pytest.raises(TypeError, match=r"inputs\[0\] is a ndarray, not a Tensor"):
        npdeq.grad((x * c).sum(), [np.ones(3)])


def test_non_scalar_output_needs_a_cotangent(xp, to_xp, x):
    y = x * 2.0
    message = (r"grad can be created implicitly only for scalar outputs; output 0 has shape "
               r"\(3,\)")
    with pytest.raises(RuntimeError, match=message):
        y.backward()
    with pytest.raises(RuntimeError, match=message):
        npdeq.grad(y, x)
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape \(2,\) but output 0 has "
                                         r"shape \(3,\)"):
        npdeq.grad(y, x, grad_outputs=to_xp(np.ones(2)))
    with pytest.raises(ValueError, match="got 2 grad_outputs for 1 outputs"):
        npdeq.grad(y, x, grad_outputs=[to_xp(np.ones(3))] * 2)


def test_output_without_a_graph(xp, to_xp, x):
    with pytest.raises(RuntimeError, match="output 0 does not require grad"):
        npdeq.grad(npdeq.Tensor(to_xp(np.ones(()))), x)


# --- vjp --------------------------------------------------------------------------------


def test_vjp(xp, to_xp, check_array):
    a0, b0 = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -1.0])
    out, vjp_fn = npdeq.vjp(lambda a, b: npdeq.tanh(a @ b), to_xp(a0), npdeq.Tensor(to_xp(b0)))
    check_array(out, shape=(2,), dtype=xp.float64)
    assert not out.requires_grad
    np.testing.assert_allclose(out.numpy(), np.tanh(a0 @ b0), rtol=1e-15)
    d = 1 - np.tanh(a0 @ b0) ** 2
    for u0 in (np.array([1.0, 0.0]), np.array([0.3, -2.0])):  # callable repeatedly
        ga, gb = vjp_fn(to_xp(u0))
        check_array(ga, shape=(2, 2), dtype=xp.float64)
        check_array(gb, shape=(2,), dtype=xp.float64)
        np.testing.assert_allclose(ga.numpy(), np.outer(u0 * d, b0), rtol=1e-14)
        np.testing.assert_allclose(gb.numpy(), a0.T @ (u0 * d), rtol=1e-14)


def test_vjp_of_an_unused_primal_is_none(xp, to_xp, check_array):
    _, vjp_fn = npdeq.vjp(lambda a, b: a * 2.0, to_xp(np.ones(2)), to_xp(np.ones(3)))
    ga, gb = vjp_fn(to_xp(np.ones(2)))
    assert gb is None
    check_array(ga, shape=(2,), dtype=xp.float64)
    np.testing.assert_array_equal(ga.numpy(), [2.0, 2.0])


def test_vjp_records_even_under_no_grad(xp, to_xp, check_array):
    with npdeq.no_grad():
        _, vjp_fn = npdeq.vjp(npdeq.exp, to_xp(np.zeros(2)))
    check_array(vjp_fn(to_xp(np.ones(2)))[0], shape=(2,), dtype=xp.float64)
    np.testing.assert_array_equal(vjp_fn(to_xp(np.ones(2)))[0].numpy(), [1.0, 1.0])


# --- higher order -------------------------------------------------------------------------


def test_gradient_of_a_gradient(xp, to_xp, check_array, x):
    y = (x * x * x).sum()
    (g,) = npdeq.grad(y, [x], create_graph=True)
    assert g.requires_grad
    np.testing.assert_allclose(g.numpy(), 3 * X0 ** 2)
    (h,) = npdeq.grad(g.sum(), [x], create_graph=True)
    check_array(h, shape=(3,), dtype=xp.float64)
    np.testing.assert_allclose(h.numpy(), 6 * X0)
    (t,) = npdeq.grad(h.sum(), [x])
    np.testing.assert_allclose(t.numpy(), [6.0, 6.0, 6.0])


def test_backward_with_create_graph_gives_a_differentiable_grad(xp, to_xp, check_array, x):
    npdeq.tanh(x).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (h,) = npdeq.grad(x.grad.sum(), [x])
    check_array(x.grad, shape=(3,), dtype=xp.float64)
    check_array(h, shape=(3,), dtype=xp.float64)
    t = np.tanh(X0)
    np.testing.assert_allclose(h.numpy(), -2 * t * (1 - t ** 2), rtol=1e-14)


def test_hessian_vector_product_against_finite_differences(xp, to_xp):
    rng = np.random.default_rng(1)
    w = to_xp(rng.standard_normal((3, 3)))

    def f(x):
        return npdeq.logsumexp(npdeq.tanh(npdeq.matmul(w, x)) * x)

    check_grads(f, to_xp(rng.standard_normal(3)), order=3, modes=("rev", "fwd"), rtol=1e-5)


def test_partial_grad_stops_at_its_inputs(xp, to_xp, check_array, x):
    h = x * 2.0
    out = (h * x).sum()
    gh, gx = partial_grad(out, [h, x], None)
    check_array(gh, shape=(3,), dtype=xp.float64)
    check_array(gx, shape=(3,), dtype=xp.float64)
    np.testing.assert_array_equal(gh.numpy(), X0)   # d out / d h holding x fixed
    np.testing.assert_array_equal(gx.numpy(), 2 * X0)  # the path through h is excluded
    (total,) = npdeq.grad(out, [x])  # the graph was retained
    np.testing.assert_array_equal(total.numpy(), 4 * X0)


# --- deep graphs and graph lifetime ------------------------------------------------------


def test_deep_graph_has_no_recursion_limit(xp, to_xp, check_array):
    x = npdeq.Tensor(to_xp(np.array([0.3, -0.2])), requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 0.9999 + 0.0001
    (g,) = npdeq.grad(y.sum(), [x], retain_graph=True)
    check_array(g, shape=(2,), dtype=xp.float64)
    np.testing.assert_allclose(g.numpy(), [0.9999 ** 20000] * 2, rtol=1e-10)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.9999 ** 20000] * 2, rtol=1e-10)
    # Dropping a long chain that was never differentiated must not overflow the C stack.
    y = x
    for _ in range(20000):
        y = npdeq.tanh(y)
    del y
    gc.collect()


def test_saved_arrays_are_released_after_backward(xp, to_xp):
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    h = npdeq.tanh(x)
    saved = weakref.ref(h.data)  # h is an argument of the mul node below
    loss = (h * h).sum()
    del h
    gc.collect()
    assert saved() is not None  # the graph holds it until backward
    loss.backward()
    gc.collect()
    assert saved() is None
    with pytest.raises(RuntimeError, match="backward through the graph a second time .*"
                                           "retain_graph=True"):
        loss.backward()


def test_retain_graph_keeps_saved_arrays(xp, to_xp):
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    h = npdeq.tanh(x)
    saved = weakref.ref(h.data)
    loss = (h * h).sum()
    del h
    loss.backward(retain_graph=True)
    gc.collect()
    assert saved() is not None
    loss.backward(retain_graph=True)
    npdeq.grad(loss, [x], retain_graph=False)  # the last pass frees
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * np.tanh([1.0, 2.0]) * (
        1 - np.tanh([1.0, 2.0]) ** 2), rtol=1e-14)
    gc.collect()
    assert saved() is None
    with pytest.raises(RuntimeError, match="second time"):
        npdeq.grad(loss, [x])


def test_grad_defaults_to_retaining_only_with_create_graph(xp, to_xp, x):
    y = (x * x).sum()
    npdeq.grad(y, [x], create_graph=True)
    npdeq.grad(y, [x])  # the graph was retained by the create_graph call
    with pytest.raises(RuntimeError, match="second time"):
        npdeq.grad(y, [x])


def test_graph_is_freed_without_the_cycle_collector(xp, to_xp):
    # Rules are stateless and nodes hold only parents: dropping the output frees the graph
    # by reference counting alone.
    x = npdeq.Tensor(to_xp(np.array([1.0, 2.0])), requires_grad=True)
    gc.disable()
    try:
        h = npdeq.tanh(x * 2.0)
        out = npdeq.softmax(h @ npdeq.Tensor(to_xp(np.ones((2, 2))))).sum()
        refs = [weakref.ref(h), weakref.ref(out)]
        del h, out
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


# --- arrays replaced between forward and backward -----------------------------------------


def test_replacing_data_of_an_input_before_backward_is_an_error(xp, to_xp, x):
    """The rules read the arrays at backward time: W.data replaced after the forward (an
    optimizer step between forward and backward, say) would give the gradient at other
    values. It is an error naming the op, as PyTorch's version counter makes it."""
    w = npdeq.Tensor(to_xp(np.array([2.0, 3.0, 4.0])), requires_grad=True)
    loss = (npdeq.tanh(x * w)).sum()
    w.data = w.data * 2.0
    with pytest.raises(RuntimeError, match=r"argument 1 of 'mul' had its \.data replaced"):
        loss.backward()


def test_replacing_data_of_an_intermediate_or_output_is_an_error(xp, to_xp, x):
    h = npdeq.exp(x)
    loss = (h * h).sum()
    h.data = h.data + 1.0          # h is the output of exp (its rule reads ans) and an input
    with pytest.raises(RuntimeError, match="had its .data replaced"):
        loss.backward()


def test_replacing_data_after_backward_is_fine(xp, to_xp, check_array, x):
    """A training step (forward, backward, then the optimizer replaces .data) is not
    affected, nor is a new forward after the replacement."""
    w = npdeq.Tensor(to_xp(np.array([2.0, 3.0, 4.0])), requires_grad=True)
    (x * w).sum().backward()
    w.data = w.data - 0.1 * w.grad.data
    x.grad = None
    (x * w).sum().backward()
    check_array(x.grad, shape=(3,), dtype=xp.float64)
    np.testing.assert_allclose(to_numpy(x.grad.data), [1.9, 3.2, 3.95], rtol=1e-14)


def test_replacing_data_of_the_output_itself_is_an_error(xp, to_xp, x):
    """exp's rule reads its output (d exp(x) = exp(x) dx): replacing the output's array
    would change the gradient even though no input changed."""
    y = npdeq.exp(x)
    y.data = y.data * 0.0
    with pytest.raises(RuntimeError, match="its output of 'exp' had its .data replaced"):
        y.backward(to_xp(np.ones(3)))


# --- vjp_program: the walk computed once, replayed ------------------------------------------


def _replay_graph(to_xp):
    """Broadcasting, a promoted float32 input, a shared subexpression and a tuple state packed
    into one (B, D) output."""
    rng = np.random.default_rng(3)
    z1 = npdeq.Tensor(to_xp(rng.standard_normal((2, 3))), requires_grad=True)
    z2 = npdeq.Tensor(to_xp(rng.standard_normal((2, 2, 2))), requires_grad=True)
    b = npdeq.Tensor(to_xp(rng.standard_normal(3)), requires_grad=True)
    s = npdeq.Tensor(to_xp(rng.standard_normal((1, 1)), dtype=np.float32), requires_grad=True)
    unused = npdeq.Tensor(to_xp(np.ones(4)), requires_grad=True)
    h = npdeq.tanh(z1 * b + s)
    out = npdeq.concat([h * h + h, npdeq.reshape(npdeq.exp(z2) * b[:2], (2, 4))], axis=1)
    return out, (z1, z2, b, s, unused, z1, h)


def test_vjp_program_equals_the_walked_grad(xp, to_xp, check_array):
    out, inputs = _replay_graph(to_xp)
    program = npdeq.autodiff.program.vjp_program(out, inputs, allow_unused=True)
    rng = np.random.default_rng(4)
    for _ in range(3):  # replayed several times, as in an adjoint solve
        g = to_xp(rng.standard_normal((2, 7)))
        replayed = program(g)
        walked = npdeq.grad(out, inputs, g, retain_graph=True, allow_unused=True)
        assert replayed[4] is None and walked[4] is None
        for r, w, t in zip(replayed, walked, inputs):
            if t is inputs[4]:
                continue
            check_array(r, shape=tuple(t.shape), dtype=t.data.dtype)
            assert not r.requires_grad
            np.testing.assert_array_equal(r.numpy(), w.numpy())
    # several outputs, one of them given twice
    y = (inputs[0] * inputs[2]).sum()
    program = npdeq.autodiff.program.vjp_program([y, out, y], inputs[:3])
    g = to_xp(rng.standard_normal((2, 7)))
    walked = npdeq.grad([y, out, y], inputs[:3], [None, g, None], retain_graph=True)
    for r, w in zip(program([None, g, None]), walked):
        np.testing.assert_array_equal(r.numpy(), w.numpy())


def test_vjp_program_errors(xp, to_xp, x):
    other = npdeq.Tensor(to_xp(np.ones(2)), requires_grad=True)
    y = npdeq.tanh(x)
    vjp_program = npdeq.autodiff.program.vjp_program
    with pytest.raises(RuntimeError, match=r"inputs\[1\] \(shape \(2,\)\) is not in the graph"):
        vjp_program(y, [x, other])
    with pytest.raises(TypeError, match=r"inputs\[0\] is a ndarray"):
        vjp_program(y, [np.ones(3)])
    program = vjp_program(y, x)
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape \(2,\)"):
        program(to_xp(np.ones(2)))
    y.backward(to_xp(np.ones(3)))  # frees the graph
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        program(to_xp(np.ones(3)))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        vjp_program(y, x)
    z = x * 2.0
    program = vjp_program(z, x)
    x.data = to_xp(np.zeros(3))
    with pytest.raises(RuntimeError, match=r"had its \.data replaced"):
        program(to_xp(np.ones(3)))


def test_replay_memo_is_computed_once_per_program_and_kept_apart(xp, to_xp, monkeypatch):
    """group_norm's rule keeps its input statistics across one program's replays (they are
    computed at the first replay only), never across programs, never outside a program,
    and the replayed cotangents equal the walked ones at every replay."""
    from npdeq.autodiff.ops import normalization

    calls = []
    statistics = normalization._group_statistics
    monkeypatch.setattr(normalization, "_group_statistics",
                        lambda *a: calls.append(1) or statistics(*a))
    rng = np.random.default_rng(5)
    x = npdeq.Tensor(to_xp(rng.standard_normal((2, 4, 3)) + 2.0), requires_grad=True)
    w = npdeq.Tensor(to_xp(rng.standard_normal(4)), requires_grad=True)
    y = npdeq.group_norm(npdeq.tanh(x) * 3.0, 2, w) + npdeq.group_norm(x, 4)
    program = npdeq.autodiff.program.vjp_program(y, [x, w])
    other = npdeq.autodiff.program.vjp_program(y, x)
    calls.clear()
    for _ in range(4):
        g = to_xp(rng.standard_normal((2, 4, 3)))
        replayed = program(g)
        assert len(calls) == 2  # two group_norm nodes, at the first replay only
        walked = npdeq.grad(y, [x, w], g, retain_graph=True)
        for r, v in zip(replayed, walked):
            np.testing.assert_allclose(r.numpy(), v.numpy(), rtol=1e-12, atol=1e-12)
        assert len(calls) == 4  # the walk computes them every time
        calls[:] = calls[:2]
    calls.clear()
    other(g)
    assert len(calls) == 2  # another program keeps its own
    npdeq.autodiff.program.replay_memo(y, "statistics", lambda: calls.append(1))
    assert len(calls) == 3  # outside any program: computed
