"""npdeq.dask.value_and_grad: per-chunk IFT / PhantomGrad gradients, tree-summed, equal the
single-process gradient on the concatenated batch and finite differences (float64)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import npdeq

da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
import dask  # noqa: E402

import npdeq.dask  # noqa: E402

SOLVE = {"tol": 1e-12, "max_iter": 200}


def make_loss(grad="ift"):
    """A model fitted to many systems: z_i = tanh(W z_i + U x_i + b), loss sum |z_i - y_i|^2."""
    def loss_fn(params, x, y):
        W, U, b = (params[k] for k in ("W", "U", "b")) if isinstance(params, dict) else params
        inj = x @ U.T + b
        z, _ = npdeq.fixed_point(lambda z: npdeq.tanh(z @ W.T + inj),
                                 npdeq.zeros(y.shape, xp=npdeq.backend.array_namespace(y),
                                             dtype=y.dtype),
                                 grad=grad, solver_kwargs=SOLVE,
                                 b_solver_kwargs={"tol": 1e-12, "max_iter": 200})
        return ((z - y) ** 2).sum()
    return loss_fn


def data(chunk_lib, B=29, D=4, E=3, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((D, D))
    W *= 0.8 / np.linalg.norm(W, 2)
    params = [W, rng.standard_normal((D, E)) / 2, 0.1 * rng.standard_normal(D)]
    x, y = rng.standard_normal((B, E)), 0.5 * rng.standard_normal((B, D))
    return [chunk_lib.asarray(p) for p in params], x, y


def single_process(loss_fn, params, x, y):
    leaves = [npdeq.tensor(p, requires_grad=True) for p in params]
    loss = loss_fn(leaves, x, y)
    return loss.data, [g.data for g in npdeq.grad(loss, leaves)]


@pytest.mark.parametrize("grad", ["ift", 3], ids=["ift", "phantom"])
def test_equals_the_single_process_gradient(to_dask, chunk_lib, host, grad):
    params, x, y = data(chunk_lib)
    loss_fn = make_loss(grad)
    ref_value, ref_grads = single_process(loss_fn, params, chunk_lib.asarray(x),
                                          chunk_lib.asarray(y))
    value, grads = npdeq.dask.value_and_grad(loss_fn, params, to_dask(x, (8, 3)),
                                             to_dask(y, ((10, 10, 9), (4,))), split_every=2)
    assert isinstance(value, da.Array) and value.shape == () and isinstance(grads, list)
    assert [(g.shape, g.dtype) for g in grads] == [(p.shape, p.dtype) for p in params]
    value, grads = dask.compute(value, grads)
    np.testing.assert_allclose(host(value), host(ref_value), rtol=1e-13)
    for g, r in zip(grads, ref_grads):
        assert type(g) is type(r)
        np.testing.assert_allclose(host(g), host(r), rtol=1e-11, atol=1e-14)


def test_matches_finite_differences_with_dict_params_and_mean():
    params, x, y = data(np)
    params = dict(zip("WUb", params))
    loss_fn = make_loss()
    xd, yd = da.from_array(x, chunks=7), da.from_array(y, chunks=7)

    def value(p):
        return float(npdeq.dask.value_and_grad(loss_fn, p, xd, yd, reduction="mean")[0]
                     .compute())

    v, grads = dask.compute(*npdeq.dask.value_and_grad(loss_fn, params, xd, yd,
                                                       reduction="mean"))
    assert set(grads) == {"W", "U", "b"}
    assert v == pytest.approx(single_process(loss_fn, list(params.values()), x, y)[0] / 29,
                              rel=1e-13)
    eps = 1e-6
    for name, index in [("W", (0, 1)), ("U", (2, 0)), ("b", (3,))]:
        plus = {k: a.copy() for k, a in params.items()}
        minus = {k: a.copy() for k, a in params.items()}
        plus[name][index] += eps
        minus[name][index] -= eps
        fd = (value(plus) - value(minus)) / (2 * eps)
        assert grads[name][index] == pytest.approx(fd, rel=1e-6, abs=1e-9), name


def test_unused_and_float32_parameters_and_a_caller_under_no_grad():
    def loss_fn(params, x):
        a, unused = params
        z, _ = npdeq.fixed_point(lambda z: a * npdeq.tanh(z) + x, np.zeros_like(x),
                                 solver_kwargs={"tol": 1e-6})
        return z.sum()

    x = da.from_array(np.linspace(0.1, 1, 10, dtype="float32").reshape(10, 1), chunks=3)
    params = (np.array(0.5, dtype="float32"), np.ones(2, dtype="float32"))
    value, grads = npdeq.dask.value_and_grad(loss_fn, params, x)
    assert isinstance(grads, tuple) and value.dtype == np.float32
    with npdeq.no_grad():  # the synchronous scheduler runs the tasks in this thread
        value, (ga, gu) = dask.compute(value, grads, scheduler="sync")
    assert ga.dtype == np.float32 and ga.shape == () and ga > 0
    np.testing.assert_array_equal(gu, np.zeros(2, dtype="float32"))


def test_a_raising_loss_reports_its_chunk_and_bad_arguments_are_refused():
    def loss_fn(params, x):
        if float(x.max()) > 5:
            raise FloatingPointError("diverged")
        return (params[0] * npdeq.tensor(x)).sum()

    x = np.zeros((9, 1))
    x[4] = 9.0
    xd = da.from_array(x, chunks=4)
    value, grads = npdeq.dask.value_and_grad(loss_fn, [np.ones(1)], xd)
    with pytest.raises(FloatingPointError, match="diverged") as err:
        dask.compute(value, grads, scheduler="sync")
    assert "batch chunk 1 (samples 4 to 7)" in "".join(err.value.__notes__)
    with pytest.raises(TypeError, match="one-element Tensor"):
        npdeq.dask.value_and_grad(lambda p, x: npdeq.tensor(x), [np.ones(1)], xd)[0].compute()
    with pytest.raises(TypeError, match="params must be a list, tuple or dict"):
        npdeq.dask.value_and_grad(loss_fn, np.ones(1), xd)
    with pytest.raises(TypeError, match=r"params\[0\] must have a real floating dtype"):
        npdeq.dask.value_and_grad(loss_fn, [np.ones(1, dtype=int)], xd)
    with pytest.raises(ValueError, match="reduction must be one of"):
        npdeq.dask.value_and_grad(loss_fn, [np.ones(1)], xd, reduction="avg")
    with pytest.raises(ValueError, match="at least one batched"):
        npdeq.dask.value_and_grad(loss_fn, [np.ones(1)])
    for bad in (1, 2.5, "4", True):
        with pytest.raises(ValueError, match=f"split_every must be an int >= 2 or None, got "
                                             f"{re.escape(repr(bad))}"):
            npdeq.dask.value_and_grad(loss_fn, [np.ones(1)], xd, split_every=bad)
    with pytest.raises(ValueError, match=r"rechunk\(\{1: -1\}\)"):
        npdeq.dask.value_and_grad(loss_fn, [np.ones(1)], da.zeros((4, 4), chunks=2))
