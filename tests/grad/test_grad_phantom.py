"""PhantomGrad rule: equals hand-unrolled back-propagation, flat memory, IFT limit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.grad import backward_factory, fixed_point, phantom_grad, supervised_steps

from deq_problems import MLPProblem, TwoStateProblem, contractive


def _hand_unrolled(func, z_star, k, tau, steps):
    z = tuple(npdeq.Tensor(a) for a in z_star)
    kept = []
    for step in range(1, k + 1):
        fz = func(*z)
        fz = fz if isinstance(fz, tuple) else (fz,)
        z = tuple(tau * a + (1.0 - tau) * b for a, b in zip(fz, z))
        if step in steps:
            kept.append(z)
    return kept


def _loss(states):
    total = None
    for i, state in enumerate(states):
        for s in state:
            term = ((s * s) * float(i + 1)).sum()
            total = term if total is None else total + term
    return total


@given(seed=st.integers(0, 2**16), k=st.integers(1, 6), tau=st.floats(0.1, 1.0),
       sup_gap=st.sampled_from([-1, 1, 2, 3]), two_state=st.booleans())
def test_phantom_equals_hand_unrolled(xp, to_xp, seed, k, tau, sup_gap, two_state):
    prob = TwoStateProblem(to_xp, seed) if two_state else MLPProblem(to_xp, seed)
    rng = np.random.default_rng(seed)
    z_star = tuple(to_xp(rng.standard_normal(tuple(z.shape)))
                   for z in (prob.z0 if two_state else (prob.z0,)))
    results = []
    for method in ("rule", "hand"):
        p = {n: npdeq.Tensor(prob.params[n], requires_grad=True) for n in prob.names}
        func = prob.func(*[p[n] for n in prob.names])
        steps = supervised_steps(k, sup_gap)
        if method == "rule":
            states = phantom_grad(func, z_star, k=k, tau=tau, sup_gap=sup_gap)
        else:
            states = _hand_unrolled(func, z_star, k, tau, steps)
        assert len(states) == len(steps)
        _loss(states).backward()
        results.append({n: p[n].grad.numpy() for n in prob.names})
    for n in prob.names:
        np.testing.assert_allclose(results[0][n], results[1][n], rtol=1e-10, atol=1e-12,
                                   err_msg=n)


def test_supervised_steps():
    assert supervised_steps(5) == [5]
    assert supervised_steps(6, sup_gap=2) == [2, 4, 6]
    assert supervised_steps(5, sup_gap=2) == [2, 4, 5]
    assert supervised_steps(5, sup_loc=[1, 3]) == [1, 3, 5]
    with pytest.raises(ValueError, match="sup_loc"):
        supervised_steps(3, sup_loc=[4])


def test_one_step_gradient_tends_to_ift_as_k_grows(xp, to_xp):
    prob = MLPProblem(to_xp, seed=3, norm=0.6)
    grads = {}
    for method in ("ift", 1, 5, 25):
        p = {n: npdeq.Tensor(prob.params[n], requires_grad=True) for n in prob.names}
        z, _ = fixed_point(prob.func(*[p[n] for n in prob.names]), prob.z0, grad=method,
                           solver_kwargs={"tol": 1e-12, "max_iter": 300},
                           b_solver_kwargs={"tol": 1e-12, "max_iter": 300})
        (z * z).sum().backward()
        grads[method] = p["W"].grad.numpy()
    errors = [np.linalg.norm(grads[k] - grads["ift"]) for k in (1, 5, 25)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4 * np.linalg.norm(grads["ift"])


def _peak_backward_bytes(k, memory, batch=32, dim=64, hidden=512):
    rng = np.random.default_rng(0)
    W1 = npdeq.Tensor(contractive(rng, dim, hidden, 0.9), requires_grad=True)
    W2 = npdeq.Tensor(contractive(rng, hidden, dim, 0.9), requires_grad=True)

    def func(z):
        return npdeq.tanh(npdeq.tanh(z @ W1) @ W2)

    z_star = (rng.standard_normal((batch, dim)),)
    tracemalloc.start()
    try:
        if memory is not None:  # the rule
            states = phantom_grad(func, z_star, k=k, tau=0.8, memory=memory)
        else:
            states = _hand_unrolled(func, z_star, k, 0.8, [k])
        _loss(states[-1:]).backward()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_phantom_activation_memory_does_not_grow_with_k():
    """memory='recompute' keeps one (B, D) state per step; 'store' and hand unrolling keep
    every step's graph.

    Growth is measured between k = 10 and k = 30, past the small-k regime where the moment
    of peak memory shifts between forward and backward.
    """
    state_bytes = 32 * 64 * 8
    steps = 20
    at_10 = {how: _peak_backward_bytes(10, how) for how in ("recompute", "store", None)}
    growth = {how: _peak_backward_bytes(30, how) - at_10[how] for how in ("recompute", None)}
    # Recompute: the extra states only (50% slack). Store and hand: each step holds several
    # (B, hidden) activations, each 8x a state.
    assert growth["recompute"] <= 1.5 * steps * state_bytes, growth
    assert growth[None] >= 8 * steps * state_bytes, growth
    assert at_10["store"] - at_10["recompute"] >= 8 * 8 * state_bytes, at_10


def test_phantom_argument_errors(xp, to_xp):
    z = (to_xp(np.zeros((1, 2))),)
    with pytest.raises(ValueError, match="k >= 1"):
        phantom_grad(lambda z: z, z, k=0)
    with pytest.raises(ValueError, match="tau"):
        phantom_grad(lambda z: z, z, k=1, tau=0.0)
    calls = []
    for bad in ("keep", None, 1):
        with pytest.raises(ValueError, match=r"memory must be one of \('store', 'recompute'\), "
                                             f"got {bad!r}"):
            phantom_grad(lambda z: calls.append(z), z, k=1, memory=bad)
        with pytest.raises(ValueError, match="memory must be one of"):
            backward_factory(2, phantom_memory=bad)
    assert not calls  # raised before any work


@pytest.mark.parametrize("k, tau, sup_gap, sup_loc, two_state", [
    (1, 1.0, -1, None, False), (5, 0.8, -1, None, False), (4, 0.6, 2, None, True),
    (6, 0.9, -1, [1, 3], True), (3, 0.5, 1, [2], False)])
def test_phantom_memory_modes_give_the_same_arrays(xp, to_xp, k, tau, sup_gap, sup_loc,
                                                   two_state):
    prob = TwoStateProblem(to_xp, 5) if two_state else MLPProblem(to_xp, 5)
    rng = np.random.default_rng(6)
    z_star = tuple(to_xp(rng.standard_normal(tuple(z.shape)))
                   for z in (prob.z0 if two_state else (prob.z0,)))
    results = {}
    for memory in ("store", "recompute"):
        p = {n: npdeq.Tensor(prob.params[n], requires_grad=True) for n in prob.names}
        func = prob.func(*[p[n] for n in prob.names])
        calls = [0]

        def counted(*z):
            calls[0] += 1
            return func(*z)

        functor = backward_factory(k, tau=tau, sup_gap=sup_gap, sup_loc=sup_loc,
                                   phantom_memory=memory)
        states = functor(None, counted, z_star if two_state else z_star[0])
        states = [s if two_state else (s,) for s in states]
        after_forward = calls[0]
        _loss(states).backward()
        results[memory] = ([s.numpy() for state in states for s in state],
                           {n: p[n].grad.numpy() for n in prob.names})
        assert (after_forward, calls[0]) == ((k, k) if memory == "store" else (k, 2 * k))
    for a, b in zip(results["store"][0], results["recompute"][0]):
        np.testing.assert_array_equal(a, b)
    for n in prob.names:
        np.testing.assert_array_equal(results["store"][1][n], results["recompute"][1][n],
                                      err_msg=n)


def test_backward_factory_phantom_functor(xp, to_xp, check_array):
    prob = MLPProblem(to_xp)
    p = {n: npdeq.Tensor(prob.params[n], requires_grad=True) for n in prob.names}
    functor = backward_factory(4, tau=0.5, sup_gap=2)
    out = functor(None, prob.func(*[p[n] for n in prob.names]), prob.z0)
    assert len(out) == 2
    for z in out:
        check_array(z, shape=tuple(prob.z0.shape))
    (out[0].sum() + out[1].sum()).backward()
    assert p["W"].grad is not None and p["x"].grad is not None


@pytest.mark.parametrize("memory", ["store", "recompute"])
def test_writing_into_a_returned_state_leaves_the_gradients_alone(memory):
    # Intermediate supervised states are read again by the later steps' backward pass: they
    # are handed out as copies.
    from npdeq.grad.phantom import phantom_grad

    W0 = 0.3 * np.random.default_rng(0).standard_normal((3, 3))

    def gradient(touch):
        W = npdeq.Tensor(W0.copy(), requires_grad=True)
        states = phantom_grad(lambda z: npdeq.tanh(z @ W + 1.0), (np.full((2, 3), 0.1),), k=3,
                              tau=0.8, sup_gap=1, memory=memory)
        loss = (states[-1][0] * states[-1][0]).sum()
        if touch:
            states[0][0].data[...] = 0.0
        loss.backward()
        return W.grad.numpy()

    np.testing.assert_array_equal(gradient(True), gradient(False))
