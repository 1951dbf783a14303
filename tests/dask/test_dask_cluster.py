"""npdeq.dask on a distributed.LocalCluster (two worker processes), started and closed here."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import npdeq

da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
import dask  # noqa: E402

import npdeq.dask  # noqa: E402

KW = {"tol": 1e-10, "max_iter": 100}


def func(z, x, W=None):
    return npdeq.tanh(z @ W.T + x)


def loss_fn(params, x):
    (W,) = params
    z, _ = npdeq.fixed_point(lambda z: func(z, x, W=W), np.zeros_like(x), solver_kwargs=KW,
                             b_solver_kwargs=KW)
    return (z * z).sum()


def failing(z, x, W=None):
    if float(x[:, 0].max()) > 100:
        raise KeyError("bad site")
    return func(z, x, W=W)


class Weights:
    """Shared weights that count how often this process pickles them."""

    pickles = 0

    def __init__(self, W):
        self.W = W

    def __reduce_ex__(self, protocol):
        type(self).pickles += 1
        return (Weights, (self.W,))


def weighted(z, x, weights=None):
    return func(z, x, W=npdeq.tensor(weights.W))


def run(client, *collections):
    """Compute on the cluster, giving up after a minute rather than hanging."""
    return [f.result(timeout=60) for f in client.compute(list(collections))]


@pytest.fixture(scope="module")
def client():
    # Worker processes are spawned: everything they run is importable (module level here).
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the failing chunk below would log its traceback
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", timeout=60)
    client = distributed.Client(cluster, timeout=60)
    try:
        yield client
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)
        quiet.setLevel(level)


def test_solve_gradient_and_errors_on_a_local_cluster(client):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 4))
    W *= 0.8 / np.linalg.norm(W, 2)
    x = rng.standard_normal((50, 4))
    xd = da.from_array(x, chunks=9)
    z, info = npdeq.dask.fixed_point(func, da.zeros((50, 4), chunks=9), xd, W=npdeq.tensor(W),
                                     solver_kwargs=KW)
    with distributed.get_task_stream(client) as stream:
        zc, conv = run(client, z, info["converged"])
    ref, _ = npdeq.fixed_point(lambda z: func(z, x, W=npdeq.tensor(W)), np.zeros((50, 4)),
                               grad=None, solver_kwargs=KW)
    np.testing.assert_allclose(zc, ref.data, rtol=1e-13, atol=1e-15)  # BLAS kernels by size
    assert conv.all()
    assert len({task["worker"] for task in stream.data}) == 2  # both workers solved chunks

    value, grads = run(client, *npdeq.dask.value_and_grad(loss_fn, [W], xd))
    leaf = npdeq.tensor(W, requires_grad=True)
    loss = loss_fn([leaf], x)
    np.testing.assert_allclose(value, loss.data, rtol=1e-13)
    np.testing.assert_allclose(grads[0], npdeq.grad(loss, [leaf])[0].data, rtol=1e-11)

    bad = x.copy()
    bad[30, 0] = 1e3  # chunk 3 of 9-sample chunks
    z, _ = npdeq.dask.fixed_point(failing, da.zeros((50, 4), chunks=9),
                                  da.from_array(bad, chunks=9), W=npdeq.tensor(W))
    with pytest.raises(KeyError, match="bad site") as err:
        run(client, z)
    assert "batch chunk 3 (samples 27 to 35)" in "".join(err.value.__notes__)


def test_shared_arguments_leave_the_client_as_often_for_2_chunks_as_for_10(client):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((4, 4))
    W *= 0.8 / np.linalg.norm(W, 2)
    x = rng.standard_normal((50, 4))
    counts = []
    for chunk in (25, 5):
        Weights.pickles = 0
        z, _ = npdeq.dask.fixed_point(weighted, da.zeros((50, 4), chunks=chunk),
                                      da.from_array(x, chunks=chunk), weights=Weights(W),
                                      solver_kwargs=KW)
        run(client, z)
        counts.append(Weights.pickles)
    # Hashing the graph key and submitting the graph pickle it a fixed number of times; a
    # copy inside each chunk's task would add one per chunk.
    assert counts[0] == counts[1] <= 4
