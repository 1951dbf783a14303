"""npdeq.dask.fixed_point: per-chunk solves equal one solve of the concatenated batch."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import npdeq

da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
import dask  # noqa: E402

import npdeq.dask  # noqa: E402

KW = {"tol": 1e-10, "max_iter": 80}
STATS = ("nstep", "abs_lowest", "rel_lowest", "converged", "nonfinite")


def mlp(z, x, W=None):
    # W z per sample as a product and a sum within the sample: computed the same way for any
    # number of rows (a BLAS matrix product may pick another kernel for another row count).
    return npdeq.tanh(npdeq.sum(npdeq.expand_dims(z, 1) * W, axis=2) + x)


def problem(B=23, D=5, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((D, D))
    W *= 0.9 / np.linalg.norm(W, 2)
    return W, rng.standard_normal((B, D))


def test_equals_one_solve_of_the_concatenated_batch(to_dask, chunk_lib, host):
    W, x = problem()
    Wl = chunk_lib.asarray(W)
    ref, rinfo = npdeq.fixed_point(lambda z: mlp(z, chunk_lib.asarray(x), W=Wl),
                                   chunk_lib.zeros(x.shape), grad=None, solver_kwargs=KW)
    # Uneven chunks, and batched chunks unlike z0's (rechunked to z0's).
    z0 = to_dask(np.zeros(x.shape), ((10, 8, 5), (5,)))
    z, info = npdeq.dask.fixed_point(mlp, z0, to_dask(x, ((7, 16), (5,))), W=Wl,
                                     solver_kwargs=KW)
    assert isinstance(z, da.Array) and z.chunks == z0.chunks and z.dtype == z0.dtype
    assert type(z._meta) is type(z0._meta)
    out = dask.compute(z, *(info[k] for k in STATS), info["nfe"],
                       info["converged_fraction"], info["worst_residual"])
    assert type(out[0]) is type(ref.data)
    # The solvers are per sample, so each sample's iterates are those of the big solve.
    np.testing.assert_array_equal(host(out[0]), host(ref.data))
    for k, got in zip(STATS, out[1:6]):
        assert info[k].chunks == ((10, 8, 5),) and info[k].dtype == rinfo[k].dtype, k
        np.testing.assert_array_equal(host(got), host(rinfo[k]), err_msg=k)
    assert host(out[6]).shape == (3,) and host(out[6]).max() <= rinfo["nfe"]
    assert float(out[7]) == 1.0
    assert float(out[8]) == host(rinfo["abs_lowest"]).max()


def test_tuple_state(to_dask, host):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 3))
    c = rng.standard_normal((9, 2, 2))

    def func(a, b, x, c):
        return (0.5 * npdeq.tanh(a + x), 0.3 * npdeq.sin(b) + 0.2 * c)

    ref, rinfo = npdeq.fixed_point(lambda a, b: func(a, b, x, c),
                                   (np.zeros((9, 3)), np.zeros((9, 2, 2))), grad=None,
                                   solver_kwargs=KW)
    z0 = (to_dask(np.zeros((9, 3)), (4, 3)), to_dask(np.zeros((9, 2, 2)), (4, 2, 2)))
    z, info = npdeq.dask.fixed_point(func, z0, to_dask(x, (4, 3)), to_dask(c, (4, 2, 2)),
                                     solver_kwargs=KW)
    assert isinstance(z, tuple) and [a.chunks for a in z] == [a.chunks for a in z0]
    za, zb, nstep = dask.compute(z[0], z[1], info["nstep"])
    np.testing.assert_array_equal(host(za), ref[0].data)
    np.testing.assert_array_equal(host(zb), ref[1].data)
    np.testing.assert_array_equal(host(nstep), rinfo["nstep"])


def test_unconverged_and_nonfinite_samples_are_flagged_not_dropped(to_dask, host):
    # f(z) = a z + 1 per sample: converges for |a| < 1, goes to inf for a = 3.
    a = np.array([0.5, 0.5, 3.0, 0.5, 0.99, 0.5, 0.5])[:, None]
    z0 = to_dask(np.zeros((7, 1)), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
        z, info = npdeq.dask.fixed_point(lambda z, a: a * z + 1.0, z0, to_dask(a, 3),
                                         solver="fixed_point_iter",
                                         solver_kwargs={"tol": 1e-8, "max_iter": 800})
        zc, conv, nonf, frac, worst = dask.compute(z, info["converged"], info["nonfinite"],
                                                   info["converged_fraction"],
                                                   info["worst_residual"])
    assert zc.shape == (7, 1) and np.isfinite(host(zc)).all()
    assert host(conv).tolist() == [True, True, False, True, False, True, True]
    assert host(nonf).tolist() == [False, False, True, False, False, False, False]
    assert float(frac) == 5 / 7 and not float(worst) < 1e-8
    np.testing.assert_allclose(host(zc)[[0, 1, 3]], 2.0)


class Boom(ArithmeticError):
    pass


def test_a_raising_func_fails_with_its_error_and_the_chunk_index(to_dask):
    x = np.zeros((10, 2))
    x[7, 0] = 1.0  # sample 7 lies in chunk 2 of (3, 3, 3, 1)

    def func(z, x):
        if float(x[:, 0].sum()) > 0:
            raise Boom("bad parameters")
        return 0.5 * z + x

    z, _ = npdeq.dask.fixed_point(func, to_dask(np.zeros((10, 2)), 3), to_dask(x, 3))
    with pytest.raises(Boom, match="bad parameters") as err:
        z.compute(scheduler="sync")
    assert "batch chunk 2 (samples 6 to 8)" in "".join(err.value.__notes__)


@pytest.mark.parametrize("which", ["z0", "batched"])
def test_chunking_along_another_axis_is_refused_with_how_to_rechunk(which):
    good = da.zeros((8, 4), chunks=(4, 4))
    bad = da.zeros((8, 4), chunks=(4, 2))
    z0, x = (bad, good) if which == "z0" else (good, bad)
    with pytest.raises(ValueError, match=r"chunked along axis 1.*rechunk\(\{1: -1\}\)"):
        npdeq.dask.fixed_point(lambda z, x: z, z0, x)


def test_bad_arguments_are_refused_before_any_work():
    z0 = da.zeros((8, 2), chunks=4)
    with pytest.raises(TypeError, match="z0 must be a Dask array"):
        npdeq.dask.fixed_point(lambda z: z, np.zeros((8, 2)))
    with pytest.raises(TypeError, match=r"batched\[1\] must be a Dask array"):
        npdeq.dask.fixed_point(lambda z, x, y: z, z0, z0, np.zeros((8, 2)))
    with pytest.raises(ValueError, match="batch length 6; expected 8"):
        npdeq.dask.fixed_point(lambda z, x: z, z0, da.zeros((6, 2), chunks=3))
    with pytest.raises(ValueError, match="unknown solver 'andersen'"):
        npdeq.dask.fixed_point(lambda z: z, z0, solver="andersen")
    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['tolerance'\]"):
        npdeq.dask.fixed_point(lambda z: z, z0, solver_kwargs={"tolerance": 1e-3})
    with pytest.raises(ValueError, match="0-d"):
        npdeq.dask.fixed_point(lambda z: z, da.zeros(()))


def test_lazy_no_compute_and_no_dummy_calls_of_func():
    calls = []

    def func(z, x):
        calls.append(z.shape)
        return 0.5 * z + x

    def refuse(*args, **kwargs):
        raise AssertionError("fixed_point computed something while building the graph")

    x = da.ones((6, 2), chunks=4, dtype="float32")
    with dask.config.set(scheduler=refuse):
        z, info = npdeq.dask.fixed_point(func, da.zeros((6, 2), chunks=4, dtype="float32"), x)
    assert calls == []  # dtypes and metas are declared, never inferred by calling func
    assert z.dtype == np.float32 and info["abs_lowest"].dtype == np.float32
    assert info["nstep"].dtype == np.int64 and info["converged"].dtype == bool
    np.testing.assert_allclose(z.compute(), 2.0, rtol=1e-3)  # default tol 1e-3
    assert calls and all(s[0] in (4, 2) for s in calls)
    # Outputs computed together share the chunk tasks: each chunk is solved once.
    alone = len(calls)
    dask.compute(z, *info.values())
    assert len(calls) == 2 * alone


class Counted:
    """A shared object (here a callable holding weights) that counts its picklings."""

    pickles = 0

    def __init__(self, W):
        self.W = W

    def __call__(self, z, x, shared=None):
        return mlp(z, x, W=self.W) + 0.0 * shared.W.sum()

    def __reduce_ex__(self, protocol):
        type(self).pickles += 1
        return (Counted, (self.W,))


def test_func_and_shared_arguments_are_held_once_in_the_graph(host):
    W, x = problem(B=40)
    func, weights = Counted(npdeq.tensor(W)), Counted(npdeq.tensor(W))
    z, info = npdeq.dask.fixed_point(func, da.zeros(x.shape, chunks=5),
                                     da.from_array(x, chunks=5), shared=weights,
                                     solver_kwargs=KW)
    graph = dict(z.__dask_graph__())
    assert len([k for k in graph if str(k[0]).startswith("npdeq-fixed-point")]) == 8
    # A distributed scheduler pickles each task on its own: func and the shared weights
    # each travel with one task (their own key), which the 8 chunk tasks refer to.
    Counted.pickles = 0
    holders = []
    for key, task in graph.items():
        before = Counted.pickles
        pickle.dumps(task)
        holders += [key] * (Counted.pickles - before)
    assert Counted.pickles == 2 and len(set(holders)) == 2
    assert not any(str(k[0]).startswith("npdeq-fixed-point") for k in holders)
    ref, _ = npdeq.fixed_point(lambda z: func(z, x, weights), np.zeros(x.shape), grad=None,
                               solver_kwargs=KW)
    np.testing.assert_array_equal(host(z.compute()), host(ref.data))


def test_empty_chunks():
    x = da.concatenate([da.ones((0, 2), chunks=1), da.ones((3, 2), chunks=3)])
    z, info = npdeq.dask.fixed_point(lambda z, x: 0.5 * z + x, da.zeros((3, 2), chunks=3)
                                     .rechunk(((0, 3), (2,))), x, solver_kwargs=KW)
    zc, nstep = dask.compute(z, info["nstep"])
    assert zc.shape == (3, 2) and nstep.shape == (3,)
    np.testing.assert_allclose(zc, 2.0)


def test_a_delayed_shared_argument_is_used_as_it_is():
    W, x = problem(B=12)
    weights = dask.delayed(npdeq.tensor(W))
    z, _ = npdeq.dask.fixed_point(mlp, da.zeros(x.shape, chunks=(4, 5)),
                                  da.from_array(x, chunks=(4, 5)),
                                  W=weights, solver_kwargs=KW)
    assert weights.key in dict(z.__dask_graph__())
    ref, _ = npdeq.fixed_point(lambda z: mlp(z, x, W=npdeq.tensor(W)), np.zeros(x.shape),
                               grad=None, solver_kwargs=KW)
    np.testing.assert_array_equal(z.compute(), ref.data)


def test_importing_npdeq_dask_does_not_import_dask():
    import subprocess
    import sys

    code = ("import sys, npdeq, npdeq.dask; "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
