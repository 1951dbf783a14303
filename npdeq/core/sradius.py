"""Spectral radius of a DEQ map's Jacobian at a point, by the power method on VJPs.

:func:`power_method` (TorchDEQ's ``power_method``, which :mod:`npdeq.loss` re-exports)
iterates ``v <- J^T v / ||J^T v||`` per sample, each step one VJP of a recorded call
``f0 = f(z0)``; :func:`spectral_radius` records that call for a DEQ ``func``. Everything stays
in the input's namespace and device, with no host synchronisation in the loop.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend import Array
from npdeq.autodiff import Tensor, enable_grad, grad
from npdeq.grad.state import as_state_tuple, call_state_func, raw_arrays

__all__ = ["power_method", "spectral_radius"]


def _per_sample_sum(xp: Any, a: Any) -> Any:
    return xp.sum(xp.reshape(a, (a.shape[0], -1)), axis=1)


def _batch_view(xp: Any, s: Any, like: Any) -> Any:
    return xp.reshape(s, (s.shape[0],) + (1,) * (like.ndim - 1))


def power_method(f0: Tensor | Sequence[Tensor], z0: Tensor | Sequence[Tensor],
                 n_iters: int = 100, seed: Any = None) -> tuple[Any, Tensor]:
    """Estimate the largest-magnitude eigenvalue of ``J = df0/dz0`` per sample.

    Power iteration on ``J^T`` (same eigenvalues as ``J``) from a random start: each step
    takes one VJP ``J^T v`` of the recorded graph, the Rayleigh quotient
    ``<J^T v, v> / <v, v>`` as the estimate, and ``J^T v`` normalised as the next ``v``. It
    converges when the dominant eigenvalue is real and separated from the others in
    magnitude (as TorchDEQ's). A sample whose ``J^T v`` vanishes keeps its vector and gets 0.

    Args:
        f0: the output of ``f`` at ``z0``, ``(B, ...)`` (or a sequence, for a tuple state).
        z0: the input ``f0`` was recorded from: Tensor(s) with ``requires_grad=True`` and the
            same shapes as ``f0``.
        n_iters: number of power iterations (VJPs).
        seed: seed of the random start (``None``: fresh randomness).

    Returns:
        ``(evector, evalue)``: the last normalised vector (a Tensor, or a tuple of Tensors
        for sequences) and the per-sample ``|eigenvalue|`` estimate, a ``(B,)`` Tensor; both
        detached.

    Raises:
        ValueError: ``n_iters < 1``, or ``f0`` and ``z0`` of different structure or shapes.

    Example:
        >>> import numpy as np, npdeq
        >>> z = npdeq.tensor(np.zeros((2, 3)), requires_grad=True)
        >>> _, rho = power_method(z @ npdeq.tensor(np.diag([0.9, 0.5, -0.2])), z, seed=0)
        >>> np.round(rho.numpy(), 6).tolist()
        [0.9, 0.9]
    """
    n_iters = backend.check_int("n_iters", n_iters, 1)
    outs, ins = as_state_tuple(f0), as_state_tuple(z0)
    if len(outs) != len(ins) or any(tuple(o.shape) != tuple(i.shape) for o, i in zip(outs, ins)):
        raise ValueError("the power method needs a square Jacobian: f0 and z0 must have the "
                         f"same structure and shapes, got {[tuple(o.shape) for o in outs]} and "
                         f"{[tuple(i.shape) for i in ins]}")
    xp = backend.array_namespace(ins[0].data)
    vectors = [backend.random_normal(tuple(i.shape), like=i.data,
                                     seed=None if seed is None else seed + k)
               for k, i in enumerate(ins)]
    evalue = None
    for step in range(n_iters):
        vjps = grad(list(outs), list(ins), grad_outputs=[Tensor(v) for v in vectors],
                    retain_graph=step < n_iters - 1, allow_unused=True)
        vjps = [i.data * 0 if g is None else g.data for g, i in zip(vjps, ins)]
        num = sum(_per_sample_sum(xp, g * v) for g, v in zip(vjps, vectors))
        den = sum(_per_sample_sum(xp, v * v) for v in vectors)
        evalue = num / den
        norm = xp.sqrt(sum(_per_sample_sum(xp, g * g) for g in vjps))
        moving = norm > 0
        safe = xp.where(moving, norm, xp.ones_like(norm))
        vectors = [xp.where(_batch_view(xp, moving, g), g / _batch_view(xp, safe, g), v)
                   for g, v in zip(vjps, vectors)]
    evector = tuple(Tensor(v) for v in vectors)
    single = not isinstance(z0, (tuple, list))
    return (evector[0] if single else evector), Tensor(xp.abs(evalue))


def spectral_radius(func: Callable[..., Any], z: Any, n_iters: int = 100,
                    seed: Any = None) -> Array:
    """Per-sample spectral radius estimate of a DEQ map's Jacobian at ``z``.

    Records ``func`` once at ``z`` (a fresh leaf; nothing outside is touched) and runs
    :func:`power_method` on it. The graph is released when this returns.

    Args:
        func: the DEQ map on Tensors, ``func(z)`` or ``func(*zs)`` for a tuple state.
        z: the point: an array/Tensor or a tuple of them (taken detached).
        n_iters: power iterations.
        seed: seed of the random start.

    Returns:
        A ``(B,)`` array in ``z``'s namespace and device.

    Raises:
        ValueError: ``func`` returns a different structure than ``z``.

    Example:
        >>> import numpy as np, npdeq
        >>> A = npdeq.tensor(np.array([[0.5, 0.2], [0.0, -0.7]]))
        >>> rho = spectral_radius(lambda z: z @ A.T + 1.0, np.zeros((1, 2)), seed=0)
        >>> round(float(rho[0]), 6)
        0.7
    """
    with enable_grad():
        leaves = tuple(Tensor(a, requires_grad=True) for a in raw_arrays(as_state_tuple(z)))
        outs = call_state_func(func, leaves)
    if not any(o.requires_grad for o in outs):  # f does not depend on z: J = 0
        first = leaves[0].data
        return backend.array_namespace(first).zeros(first.shape[:1], dtype=first.dtype,
                                                     device=backend.device(first))
    _, evalue = power_method(outs, leaves, n_iters=n_iters, seed=seed)
    return evalue.data
