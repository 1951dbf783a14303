"""npdeq.utils: mixed_init (namespace, device, seed) and mem_gc (gradient checkpointing:
the plain call's gradients, higher orders, O(1) kept graph)."""

from __future__ import annotations

import gc
import weakref
from collections import namedtuple

import numpy as np
import pytest

import npdeq
from npdeq import backend
from npdeq.nn import Linear, init
from npdeq.testing import check_grads
from npdeq.utils import mem_gc, mixed_init

# -- mixed_init -----------------------------------------------------------------------------


def test_mixed_init_namespace_device_and_dtype(xp, xp_device, to_xp, check_array):
    like = to_xp(np.zeros(1, dtype=np.float32))
    z = mixed_init((2, 3, 4), like=like, seed=0)
    check_array(z, shape=(2, 3, 4), dtype=like.dtype)
    z = mixed_init((5,), xp=xp, device=xp_device, seed=0)
    check_array(z, shape=(5,), dtype=xp.float64)
    z = mixed_init((2, 2), like=npdeq.Tensor(like), dtype=xp.float64, seed=0)  # overrides
    check_array(z, shape=(2, 2), dtype=xp.float64)
    np.testing.assert_array_equal(backend.to_numpy(mixed_init((3, 4), like=like, seed=1)),
                                  mixed_init((3, 4), seed=1, dtype="float32"))


def test_mixed_init_is_half_gaussian_half_zeros():
    z = mixed_init((200, 100), seed=3)
    zero = z == 0
    assert 0.48 < zero.mean() < 0.52
    kept = z[~zero]
    assert abs(kept.mean()) < 0.03 and abs(kept.std() - 1.0) < 0.03


def test_mixed_init_seeds():
    a, b, c = mixed_init((4, 5), seed=7), mixed_init((4, 5), seed=7), mixed_init((4, 5), seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    init.manual_seed(11)
    d = mixed_init((4, 5))
    init.manual_seed(11)
    np.testing.assert_array_equal(d, mixed_init((4, 5)))
    assert mixed_init(6, device="cpu", seed=0).shape == (6,)  # TorchDEQ's device argument


def test_mixed_init_errors():
    with pytest.raises(ValueError, match=r"non-negative ints, got \(2, -1\)"):
        mixed_init((2, -1))
    with pytest.raises(TypeError, match="z_shape must be a tuple of ints, got 2.5"):
        mixed_init(2.5)
    with pytest.raises(ValueError, match="non-negative ints"):
        mixed_init("ab")
    with pytest.raises(TypeError, match="real floating dtype"):
        mixed_init((2,), dtype="int64")


# -- mem_gc ---------------------------------------------------------------------------------


def _problem(to_xp, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"W": 0.5 * rng.standard_normal((4, 4)), "U": rng.standard_normal((3, 4)),
              "x": rng.standard_normal((2, 3)), "z": rng.standard_normal((2, 4)),
              "s": np.array(1.5)}
    return {k: to_xp(v) for k, v in arrays.items()}, to_xp(rng.standard_normal((2, 4)))


def _leaves(arrays):
    return {k: npdeq.Tensor(v, requires_grad=True) for k, v in arrays.items()}


def _block(W, inj):
    """A few ops closing over a leaf W and an injection computed upstream."""
    def block(z, s, shift, mask):
        h = npdeq.tanh(z @ W.T + inj)
        return npdeq.tanh(h @ W * s + shift) * mask
    return block


def _grads_of(call, arrays, G):
    p = _leaves(arrays)
    # A non-leaf from outside the block (a DEQ's injection), itself depending on W.
    inj = p["x"] @ p["U"] @ p["W"]
    mask = G * 0.0 + 1.0
    out = call(_block(p["W"], inj), (p["z"], p["s"], 0.25, mask))
    (out * npdeq.Tensor(G)).sum().backward()
    return out, {k: t.grad for k, t in p.items()}


def test_mem_gc_gradients_equal_the_plain_call(xp, to_xp, check_array):
    arrays, G = _problem(to_xp)
    plain_out, plain = _grads_of(lambda f, args: f(*args), arrays, G)
    out, checked = _grads_of(mem_gc, arrays, G)
    check_array(out, shape=(2, 4))
    np.testing.assert_allclose(out.numpy(), plain_out.numpy(), rtol=1e-15)
    for k in arrays:
        check_array(checked[k], shape=tuple(arrays[k].shape))
        np.testing.assert_allclose(checked[k].numpy(), plain[k].numpy(), rtol=1e-13,
                                   atol=1e-15, err_msg=k)


def test_mem_gc_matches_finite_differences_to_second_order(xp, to_xp):
    arrays, G = _problem(to_xp, seed=1)

    def checkpointed(W, U, x, z, s):
        return mem_gc(_block(W, x @ U @ W), (z, s, 0.25, G * 0.0 + 1.0))

    # order=2 differentiates the backward (create_graph through the recomputation).
    check_grads(checkpointed, *arrays.values(), order=2, rtol=1e-6, atol=1e-8)


def test_mem_gc_with_params_runs_the_forward_unrecorded(xp, to_xp, xp_device):
    layer = Linear(4, 4, seed=0, xp=xp, device=xp_device)
    z_arr = to_xp(np.linspace(-1, 1, 8).reshape(2, 4))
    grads = []
    for call in (lambda f, a: f(*a), lambda f, a: mem_gc(f, a, params=layer),
                 lambda f, a: mem_gc(f, a, params=[layer.weight, layer.bias])):
        z = npdeq.Tensor(z_arr, requires_grad=True)
        out = call(lambda z: npdeq.tanh(layer(z)), (z,))
        out.sum().backward()
        grads.append([backend.to_numpy(t.grad.data) for t in (z, layer.weight, layer.bias)])
        layer.weight.grad = layer.bias.grad = None
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_allclose(b, a, rtol=1e-14)


def test_mem_gc_keeps_one_node_and_no_intermediates(xp, to_xp):
    """Twenty chained blocks keep twenty nodes; the plain chain keeps every inner op."""
    arrays, _ = _problem(to_xp)
    inner = []

    def make_block(W):
        def block(z):
            h = npdeq.tanh(z @ W.T)
            inner.append(weakref.ref(h))
            return npdeq.tanh(h @ W) + 0.1 * z
        return block

    def graph_size(out):
        nodes, stack, seen = 0, [out], set()
        while stack:
            t = stack.pop()
            if t._node is None or id(t) in seen:
                continue
            seen.add(id(t))
            nodes += 1
            stack.extend(p for _, p in t._node.parents)
        return nodes

    sizes = {}
    for name, call in (("plain", lambda f, a: f(*a)), ("mem_gc", mem_gc)):
        W = npdeq.Tensor(arrays["W"], requires_grad=True)
        z = npdeq.Tensor(arrays["z"], requires_grad=True)
        inner.clear()
        out = z
        for _ in range(20):
            out = call(make_block(W), (out,))
        gc.collect()
        sizes[name] = graph_size(out)
        alive = sum(r() is not None for r in inner)
        if name == "mem_gc":
            assert alive == 0, f"{alive} intermediate tensors kept between forward and backward"
        else:
            assert alive == 20
        out.sum().backward()
        sizes[name + " grad"] = backend.to_numpy(W.grad.data)
    assert sizes["mem_gc"] == 20 and sizes["plain"] >= 20 * 5
    np.testing.assert_allclose(sizes["mem_gc grad"], sizes["plain grad"], rtol=1e-12)


Pair = namedtuple("Pair", "a b")


@pytest.mark.parametrize("kind", [tuple, list, Pair])
def test_mem_gc_several_outputs_keep_their_structure(xp, to_xp, check_array, kind):
    arrays, G = _problem(to_xp)

    def func(z, W):
        a = npdeq.tanh(z @ W)
        if kind is Pair:
            return Pair(a, (a * a).sum())
        return kind([a, "stats", (a * a).sum()])

    results = []
    for call in (lambda f, a: f(*a), mem_gc):
        p = _leaves(arrays)
        out = call(func, (p["z"], p["W"]))
        assert type(out) is kind
        first, last = out[0], out[-1]
        check_array(first, shape=(2, 4))
        check_array(last, shape=())
        if kind is not Pair:
            assert out[1] == "stats"
        ((first * npdeq.Tensor(G)).sum() + 3.0 * last).backward()
        results.append([p["z"].grad.numpy(), p["W"].grad.numpy()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-13)


def test_mem_gc_second_backward_and_no_grad(xp, to_xp):
    arrays, _ = _problem(to_xp)
    W = npdeq.Tensor(arrays["W"], requires_grad=True)
    block = lambda z: npdeq.tanh(npdeq.matmul(z, W))  # noqa: E731  (z may be raw)
    out = mem_gc(block, npdeq.Tensor(arrays["z"]))  # a lone Tensor is one argument
    first = npdeq.grad(out.sum(), W, retain_graph=True)
    np.testing.assert_allclose(npdeq.grad(out.sum(), W).numpy(), first.numpy(), rtol=1e-15)
    with npdeq.no_grad():
        assert not mem_gc(block, (arrays["z"],)).requires_grad
    out = mem_gc(lambda z: npdeq.tanh(z), (arrays["z"],))  # nothing requires grad
    assert not out.requires_grad and out._node is None


def test_mem_gc_errors():
    z = npdeq.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(TypeError, match="in_args must be a tuple or list"):
        mem_gc(lambda z: z, np.ones(2))
    with pytest.raises(TypeError, match="func returned a ndarray"):
        mem_gc(lambda z: z.data, (z,))
    with pytest.raises(ValueError, match="different dtypes"):
        mem_gc(lambda z: (z, npdeq.Tensor(np.ones(2, dtype=np.float32))), (z,))
    with pytest.raises(TypeError, match=r"params\[0\] is a ndarray"):
        mem_gc(lambda z: z, (z,), params=[np.ones(2)])
    with pytest.raises(TypeError, match="params must be a Module"):
        mem_gc(lambda z: z, (z,), params=z)


def test_mixed_init_accepts_numpy_integers_in_the_shape():
    a = mixed_init((np.int64(2), np.int32(3)), seed=0)
    b = mixed_init((2, 3), seed=0)
    np.testing.assert_array_equal(a, b)
    assert mixed_init(np.int64(4), seed=0).shape == (4,)
    for bad in (-1, (2, np.int64(-1)), (2, float("nan")), (True, 2)):
        with pytest.raises(ValueError, match="non-negative ints"):
            mixed_init(bad)
