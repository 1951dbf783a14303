"""DEQ test problems shared by the gradient-rule and core tests (NumPy-built, moved to ``xp``)."""

from __future__ import annotations

import numpy as np

import npdeq


def contractive(rng, rows, cols, norm):
    """A matrix with spectral norm ``norm``."""
    m = rng.standard_normal((rows, cols))
    return m * (norm / np.linalg.norm(m, 2))


class MLPProblem:
    """f(z) = tanh(z @ W.T + x @ U.T + b): parameters W, U, b and the injection x."""

    def __init__(self, to_xp, seed=0, batch=3, dim=5, in_dim=4, norm=0.9):
        rng = np.random.default_rng(seed)
        self.params = {
            "W": contractive(rng, dim, dim, norm),
            "U": rng.standard_normal((dim, in_dim)) / np.sqrt(in_dim),
            "b": 0.1 * rng.standard_normal(dim),
            "x": rng.standard_normal((batch, in_dim)),
        }
        self.params = {k: to_xp(v) for k, v in self.params.items()}
        self.z0 = to_xp(np.zeros((batch, dim)))
        self.names = ("W", "U", "b", "x")

    def func(self, W, U, b, x):
        inj = x @ U.T + b
        return lambda z: npdeq.tanh(z @ W.T + inj)


class TwoStateProblem:
    """A two-tensor state of different shapes, (B, d) and (B, 2, e), coupled both ways."""

    def __init__(self, to_xp, seed=0, batch=2, dim=3, extra=2):
        rng = np.random.default_rng(seed)
        self.params = {
            "W": contractive(rng, dim, dim, 0.5),
            "V": contractive(rng, 2 * extra, dim, 0.3),
            "x": rng.standard_normal((batch, dim)),
        }
        self.params = {k: to_xp(v) for k, v in self.params.items()}
        self.z0 = (to_xp(np.zeros((batch, dim))), to_xp(np.zeros((batch, 2, extra))))
        self.names = ("W", "V", "x")
        self.extra = extra

    def func(self, W, V, x):
        extra = self.extra

        def f(z, y):
            y_flat = npdeq.reshape(y, (y.shape[0], 2 * extra))
            z_new = npdeq.tanh(z @ W.T + 0.3 * (y_flat @ V)[:, :z.shape[1]] + x)
            y_new = npdeq.reshape(0.5 * npdeq.tanh(z @ V.T), (z.shape[0], 2, extra))
            return z_new, y_new
        return f
