"""Shared DEQ problems for the core tests (NumPy-built, moved to the ``xp`` namespace)."""

from __future__ import annotations


import numpy as np

import npdeq
from npdeq import backend
from npdeq.testing.strategies import ContractiveMap

from deq_problems import TwoStateProblem as TwoState  # noqa: F401  (re-exported)


def mlp_map(to_xp, seed=0, batch=3, dim=5, in_dim=4, norm=0.8):
    """A tanh MLP DEQ ``tanh(z W^T + x U^T + b)`` with ``||W||_2 = norm``."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((dim, dim))
    params = {"W": W * (norm / np.linalg.norm(W, 2)),
              "U": rng.standard_normal((dim, in_dim)) / np.sqrt(in_dim),
              "b": 0.1 * rng.standard_normal(dim),
              "x": rng.standard_normal((batch, in_dim))}
    params = {k: to_xp(v) for k, v in params.items()}
    return ContractiveMap("tanh_mlp", norm, "dense", params, to_xp(np.zeros((batch, dim))))


def halving(z):
    """``z -> z / 2 + 1`` from 0: iterate n is ``2 (1 - 2^-n)``, so values tell step counts."""
    return 0.5 * z + 1.0


def iterate_index(value):
    """The n with ``2 (1 - 2^-n) == value`` (per entry of a Tensor or array, as floats)."""
    a = backend.to_numpy(_raw(value))
    return np.rint(-np.log2(1.0 - a / 2.0)).astype(int)


def expected_indexing_iterates(steps, grads):
    """Iterate index of each DEQIndexing output on :func:`halving`: the state at step p is
    the best iterate so far, x_(p-1) (x_0 at p = 0), then k gradient steps follow."""
    return [max(p - 1, 0) + k for p, k in zip(steps, grads)]


def expected_sliced_iterates(segments, grads):
    """Iterate index of each DEQSliced output on :func:`halving`: a segment of s >= 1
    iterations from x_n ends at x_(n+s-1); then k gradient steps; the next segment resumes."""
    n, out = 0, []
    for s, k in zip(segments, grads):
        n += max(s - 1, 0) + k
        out.append(n)
    return out


def loss_of(states, weights):
    """sum_i <w_i, z_i> over a list of states (Tensors or tuples of Tensors)."""
    total = 0.0
    for z, w in zip(states, weights):
        for zi, wi in zip(z if isinstance(z, tuple) else (z,), w if isinstance(w, tuple) else (w,)):
            total = total + (zi * wi).sum()
    return total


def assert_close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(backend.to_numpy(_raw(a)), backend.to_numpy(_raw(b)), rtol=rtol,
                               atol=atol)


def _raw(x):
    return x.data if isinstance(x, npdeq.Tensor) else x


__all__ = ["mlp_map", "TwoState", "halving", "iterate_index", "expected_indexing_iterates",
           "expected_sliced_iterates", "loss_of", "assert_close"]
