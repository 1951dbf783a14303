"""Jacobian regularisation on the tape: the Hutchinson estimate of ``||df0/dz0||_F^2``.

Shared by :func:`npdeq.loss.jac_reg` (TorchDEQ's ``jac_reg``) and the DEQ cores' solution
record (``info['solution']``'s Jacobian term): it needs only a recorded call ``f0 = f(z0)``
and the tape's VJPs, so it lives below the cores. With ``create_graph=True`` the VJPs are
themselves recorded (the tape's double backward), so the estimate can be trained on: its
gradient with respect to the parameters of ``f`` is that of the same estimate with the probe
vectors held fixed (TorchDEQ issue #10 was a missing gradient here).
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff import Tensor, grad, set_grad_enabled

__all__ = ["jacobian_frobenius"]


def _as_tensors(x: Any, name: str) -> tuple[Tensor, ...]:
    items = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    if not items:
        raise ValueError(f"{name} is an empty sequence; pass a Tensor or a non-empty sequence")
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}[{i}] is a {type(t).__name__}, not a Tensor")
    return items


def _check_vecs(vecs: Any, probes: Any) -> int:
    if probes is not None:
        if isinstance(probes, (str, bytes)) or not isinstance(probes, Sequence) or not probes:
            raise ValueError(f"probes must be a non-empty sequence of probe vectors, got "
                             f"{type(probes).__name__}")
        if vecs is not None and vecs != len(probes):
            raise ValueError(f"vecs={vecs!r} does not match the {len(probes)} probes given; "
                             "leave vecs at None when passing probes")
        return len(probes)
    if vecs is None:
        return 1
    return backend.check_int("vecs", vecs, 1)


def _probe_arrays(probe: Any, outs: tuple[Tensor, ...], k: int) -> list[Any]:
    """The arrays of one user-given probe, checked against the shapes of ``f0``."""
    parts = tuple(probe) if isinstance(probe, (tuple, list)) else (probe,)
    if len(parts) != len(outs):
        raise ValueError(f"probes[{k}] has {len(parts)} part(s) but f0 has {len(outs)}")
    arrays = [p.data if isinstance(p, Tensor) else p for p in parts]
    for j, (a, o) in enumerate(zip(arrays, outs)):
        if tuple(getattr(a, "shape", ())) != tuple(o.shape):
            raise ValueError(f"probes[{k}] part {j} has shape {tuple(getattr(a, 'shape', ()))}"
                             f", but f0 part {j} has shape {tuple(o.shape)}")
    return arrays


def jacobian_frobenius(f0: Tensor | Sequence[Tensor], z0: Tensor | Sequence[Tensor],
                       vecs: int | None = None, create_graph: bool = True,
                       seed: Any = None, probes: Sequence[Any] | None = None) -> Tensor:
    """Hutchinson estimate of ``||J||_F^2 / numel(z0)`` for ``J = df0/dz0``.

    For each probe ``v`` (standard normal, shaped like ``f0``; ``E[v v^T] = I``) one VJP
    ``v^T J`` is taken and ``||v^T J||^2`` summed; the result is that sum divided by the
    number of probes and by the number of entries of ``z0`` (all states together), as
    TorchDEQ's ``jac_reg``. Over a batch, ``J`` is the Jacobian of the whole batch (block
    diagonal when samples do not interact), so the result is the per-entry mean. The graph
    of ``f0`` is retained (the task loss still needs it).

    Args:
        f0: ``f(z0)``, a ``(B, ...)`` Tensor recorded from ``z0`` (or a sequence of them for
            a tuple state).
        z0: the input(s) ``f0`` was recorded from, Tensor(s) with ``requires_grad=True``.
        vecs: number of random probes (default 1); with ``probes``, ``None`` or their count.
        create_graph: record the VJPs, so the estimate can be differentiated (trained on).
        seed: ``None`` (fresh probes), an int or a ``numpy.random.Generator``: the same int
            draws the same probes, holding them fixed between calls.
        probes: explicit probe vectors instead of random ones: a sequence of arrays or
            Tensors shaped like ``f0`` (tuples of them for a tuple ``f0``).

    Returns:
        A 0-d Tensor (differentiable when ``create_graph`` and ``f0`` depends on parameters).

    Raises:
        TypeError: ``f0`` or ``z0`` holds something other than Tensors.
        ValueError: bad ``vecs``/``probes``, ``f0`` without a graph, ``z0`` not requiring
            grad, or a probe of the wrong shape.

    Example:
        >>> import numpy as np, npdeq
        >>> z = npdeq.tensor(np.zeros((4, 3)), requires_grad=True)
        >>> f0 = z @ npdeq.tensor(2.0 * np.eye(3))         # J = 2 I, ||J||_F^2 / numel = 4
        >>> round(float(jacobian_frobenius(f0, z, vecs=500, seed=0).data), 1)
        4.0
    """
    outs, ins = _as_tensors(f0, "f0"), _as_tensors(z0, "z0")
    n = _check_vecs(vecs, probes)
    for i, t in enumerate(ins):
        if not t.requires_grad:
            raise ValueError(f"z0[{i}] (shape {t.shape}) does not require grad: record f0 "
                             "from a z0 created with requires_grad=True")
    for i, t in enumerate(outs):
        if not t.requires_grad:
            raise ValueError(f"f0[{i}] (shape {t.shape}) has no graph: compute it from z0 "
                             "with grad mode on")
    # One host generator for all probes: an int seed gives a fixed, distinct draw per probe.
    rng = None if seed is None else backend.make_generator(seed)
    numel = sum(t.size for t in ins)
    total = None
    with set_grad_enabled(create_graph):
        for k in range(n):
            if probes is not None:
                arrays = _probe_arrays(probes[k], outs, k)
            else:
                arrays = [backend.random_normal(tuple(o.shape), like=o.data, seed=rng)
                          for o in outs]
            vjps = grad(list(outs), list(ins), grad_outputs=[Tensor(a) for a in arrays],
                        retain_graph=True, create_graph=create_graph, allow_unused=True)
            for g in vjps:
                if g is not None:  # z0 parts f0 does not depend on add nothing
                    term = (g * g).sum()
                    total = term if total is None else total + term
    if total is None:  # f0 does not depend on z0 at all: J = 0
        first = ins[0].data
        xp = backend.array_namespace(first)
        return Tensor(xp.zeros((), dtype=first.dtype, device=backend.device(first)))
    with set_grad_enabled(create_graph):
        return total / float(n * numel)
