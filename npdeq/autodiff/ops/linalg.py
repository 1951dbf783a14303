"""Batched matrix product with NumPy's ``matmul`` semantics, forward beside its VJP rules."""

from __future__ import annotations

from npdeq.autodiff.ops.shape import expand_dims, reshape, swapaxes
from npdeq.autodiff.primitive import defvjp, primitive

__all__ = ["matmul"]


def _matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned: "
            f"{k_a} (last dimension of a) != {k_b} ({'only' if b.ndim == 1 else 'second-to-last'}"
            " dimension of b)")
    # Check the batch axes here too, so every library reports them the same, readable way.
    for n_a, n_b in zip(reversed(a.shape[:-2]), reversed(b.shape[:-2])):
        if n_a != n_b and n_a != 1 and n_b != 1:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned: batch "
                f"dimensions {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])} do not broadcast")
    # The operator is matmul in every namespace; it skips a namespace lookup and the compat
    # wrapper (about 1 microsecond of the tape's per-op overhead on small arrays).
    return a @ b


matmul = primitive(_matmul, name="matmul")


# Vectors are promoted to matrices ((k,) -> (1, k) on the left, (k, 1) on the right) so one
# pair of formulas covers every case; the engine then sums batch dimensions back down.
def _as_matrices(g, a, b):
    # The cotangent gets b's axis back first (the last one), then a's: for vector @ vector
    # g is 0-d and becomes (1,) and then (1, 1); the other order would ask a 0-d array for
    # axis -2.
    if len(b.shape) == 1:
        b = reshape(b, tuple(b.shape) + (1,))
        g = expand_dims(g, axis=-1)
    if len(a.shape) == 1:
        a = reshape(a, (1,) + tuple(a.shape))
        g = expand_dims(g, axis=-2)
    return g, a, b


def _matmul_vjp_a(g, ans, a, b):
    g2, a2, b2 = _as_matrices(g, a, b)
    ga = matmul(g2, swapaxes(b2, -1, -2))
    if len(a.shape) == 1:
        ga = reshape(ga, tuple(ga.shape[:-2]) + (ga.shape[-1],))
    return ga


def _matmul_vjp_b(g, ans, a, b):
    g2, a2, b2 = _as_matrices(g, a, b)
    gb = matmul(swapaxes(a2, -1, -2), g2)
    if len(b.shape) == 1:
        gb = reshape(gb, tuple(gb.shape[:-1]))
    return gb


defvjp(matmul, _matmul_vjp_a, _matmul_vjp_b)
