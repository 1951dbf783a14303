"""Checking the tape's derivatives against central finite differences.

``check_grads`` follows HIPS autograd's idea: project onto random directions, so one check
costs a handful of function calls whatever the input size, and recurse for higher orders
(the derivative of a directional derivative is checked the same way, through the tape's
``create_graph``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from npdeq import backend
from npdeq.backend import Array
from npdeq.autodiff import Tensor, enable_grad, grad, jvp, no_grad

__all__ = ["check_grads", "check_vjp", "numerical_vjp", "numerical_jacobian", "default_eps"]


def default_eps(x: Any) -> float:
    """A finite-difference step for ``x``: scaled to its dtype's precision and magnitude."""
    data = x.data if isinstance(x, Tensor) else x
    xp = backend.array_namespace(data)
    finfo = xp.finfo(data.dtype)
    scale = 1.0 + float(np.max(np.abs(backend.to_numpy(data)))) if data.size else 1.0
    # Central differences: truncation ~eps^2, rounding ~unit/eps; cube root balances them.
    return float(finfo.eps) ** (1.0 / 3.0) * scale


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def _call(fun, arrays):
    with no_grad():
        out = fun(*[Tensor(a) for a in arrays])
    return _raw(out)


def inner_product(a: Array, b: Array) -> float:
    """``<a, b>`` on the host, as a Python float."""
    return float(np.sum(backend.to_numpy(a) * backend.to_numpy(b)))


def random_direction(x: Array, rng: np.random.Generator) -> Array:
    """A random direction shaped like ``x`` (its namespace, device and dtype), of unit L2
    norm, so that ``atol`` means the same whatever the draw (a short Gaussian vector could
    hide an error below it)."""
    d = backend.random_normal(tuple(x.shape), like=x, seed=rng)
    xp = backend.array_namespace(d)
    norm = xp.sqrt(xp.sum(d * d)) if d.ndim else xp.abs(d)
    return d / xp.where(norm > 0, norm, 1.0)


def numerical_vjp(fun: Callable[..., Any], args: Sequence[Any], cotangent: Array,
                  directions: Sequence[Any], eps: float | None = None) -> float:
    """Central finite difference of ``<cotangent, fun(*args)>`` along ``directions``.

    Args:
        fun: function of Tensors returning one Tensor.
        args: the point (arrays or Tensors).
        cotangent: array shaped like ``fun``'s output.
        directions: one array per argument (``None`` holds that argument fixed).
        eps: the step; default the smallest :func:`default_eps` of the arguments.

    Returns:
        ``sum_i <J_i^T cotangent, directions_i>`` to O(eps^2).

    Example:
        >>> import numpy as np, npdeq
        >>> x = np.array([1.0, 2.0])
        >>> round(numerical_vjp(lambda t: t * t, [x], np.ones(2), [np.ones(2)]), 6)
        6.0
    """
    return _fd_projection(lambda arrays: _call(fun, arrays), [_raw(a) for a in args],
                          cotangent, directions, eps)


def _fd_projection(call, arrays, cotangent, directions, eps):
    """``<cotangent, (call(x + h v) - call(x - h v)) / 2h>``; ``call`` maps a list of raw
    arrays to a raw array, so any autodiff system's function can be checked."""
    h = _common_step(arrays, eps)
    plus = [a if d is None else a + h * d for a, d in zip(arrays, directions)]
    minus = [a if d is None else a - h * d for a, d in zip(arrays, directions)]
    return (inner_product(cotangent, call(plus)) - inner_product(cotangent, call(minus))) / (2 * h)


def _common_step(arrays, eps):
    return float(eps) if eps is not None else min(default_eps(a) for a in arrays)


def numerical_jacobian(fun: Callable[..., Any], x: Array,
                       eps: float | None = None) -> np.ndarray:
    """Dense Jacobian of ``fun`` at ``x`` by central differences (for small problems).

    Args:
        fun: function of one Tensor returning one Tensor.
        x: the point, an array of shape ``S_in``.
        eps: step; default :func:`default_eps`.

    Returns:
        NumPy array of shape ``S_out + S_in``.
    """
    x = _raw(x)
    xp = backend.array_namespace(x)
    h = default_eps(x) if eps is None else eps
    flat = backend.to_numpy(x).reshape(-1)
    columns = []
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = h
        step = xp.asarray(e.reshape(x.shape), device=backend.device(x))
        columns.append((backend.to_numpy(_call(fun, [x + step]))
                        - backend.to_numpy(_call(fun, [x - step]))) / (2 * h))
    out_shape = columns[0].shape
    return np.stack(columns, axis=-1).reshape(out_shape + tuple(x.shape))


def _fail(kind, order, observed, expected, seed, rtol, atol):
    raise AssertionError(
        f"{kind}-mode derivative of order {order} does not match finite differences: "
        f"tape gives {observed!r}, finite differences give {expected!r} "
        f"(|diff| = {abs(observed - expected):.3e}, rtol={rtol}, atol={atol}); "
        f"replay with seed={seed}")


def _close(observed, expected, rtol, atol):
    return abs(observed - expected) <= atol + rtol * abs(expected)


def check_grads(fun: Callable[..., Any], *args: Any, modes: Sequence[str] = ("rev",),
                order: int = 1, eps: float | None = None, rtol: float = 1e-6,
                atol: float = 1e-6, seed: int = 0) -> None:
    """Check ``fun``'s tape derivatives against central finite differences.

    For ``'rev'`` the VJP with a random output cotangent u, projected on random input
    directions v, must equal the finite difference of ``<u, fun>`` along v. For ``'fwd'`` the
    JVP (:func:`npdeq.autodiff.jvp`, the double-VJP trick) along v must equal the finite
    difference of ``fun`` along v, projected on u. ``order=2`` then checks the derivative of
    the first-order directional derivative ``<u, J v>`` the same way: its gradient, recorded
    with ``create_graph=True``, against finite differences of first-order values, which
    checks every rule's own derivative (a rule computed on raw arrays, which is right at
    first order but invisible to a second, fails there). ``order=3`` and up recurse. Each
    level costs a few calls of the level below, whatever the input size. Through a fixed
    point, use :func:`~npdeq.testing.check_fixed_point_grads` (``order=2`` there too).

    Args:
        fun: function of Tensors returning one floating-point Tensor.
        *args: the point, arrays (float64 recommended) or Tensors.
        modes: any of ``'rev'`` and ``'fwd'``.
        order: highest derivative order to check.
        eps: finite-difference step; default scaled to each argument.
        rtol: relative tolerance.
        atol: absolute tolerance.
        seed: seed of the random directions (reported on failure for replay).

    Raises:
        AssertionError: a mismatch, with the observed and expected values and the seed.
        ValueError: an unknown mode, or an ``order`` that is not an int >= 1.

    Example:
        >>> import numpy as np, npdeq
        >>> check_grads(lambda x: npdeq.tanh(x) * x, np.linspace(-1, 1, 5), order=2)
    """
    for mode in modes:
        if mode not in ("rev", "fwd"):
            raise ValueError(f"unknown mode {mode!r}; expected 'rev' or 'fwd'")
    levels = backend.as_count(order)
    if levels is None or not levels >= 1:
        raise ValueError(f"order must be >= 1 (an int), got {order!r}")
    _check_order(fun, [_raw(a) for a in args], tuple(modes), levels, eps, rtol, atol, seed, 1)


def _check_order(fun, arrays, modes, order, eps, rtol, atol, seed, level):
    """Check derivative ``level`` of the original function (``fun`` is its derivative of
    order ``level - 1`` along earlier directions), then recurse. Level ``n`` draws its
    directions from ``seed + n - 1``; failures report the user's ``seed``."""
    rng = np.random.default_rng(seed + level - 1)
    out = _call(fun, arrays)
    u = random_direction(out, rng)
    vs = [random_direction(a, rng) for a in arrays]
    expected = numerical_vjp(fun, arrays, u, vs, eps=eps)

    def tape_directional(*xs):
        # Inputs that already carry a graph (the next order's check) are used as they are,
        # so the derivative taken here is recorded for that check.
        with enable_grad():
            leaves = [x if isinstance(x, Tensor) and x.requires_grad
                      else Tensor(_raw(x), requires_grad=True) for x in xs]
            y = fun(*leaves)
            if not y.requires_grad:  # fun is constant in its inputs here (e.g. max's mask)
                return Tensor(backend.array_namespace(y.data).sum(y.data * 0.0))
            # Record the backward pass only when a higher order will differentiate it (some
            # rules, e.g. the IFT's, are first-order only).
            gs = grad(y, leaves, grad_outputs=u, create_graph=order > 1, allow_unused=True)
            total = None
            for g, d in zip(gs, vs):
                if g is not None:
                    term = (g * d).sum()
                    total = term if total is None else total + term
            return total if total is not None else (y * 0.0).sum()

    for mode in modes:
        if mode == "rev":
            observed = backend.to_scalar(_raw(tape_directional(*arrays)))
        else:
            observed = _jvp_projection(fun, arrays, u, vs)
        if not _close(observed, expected, rtol, atol):
            _fail(mode, level, observed, expected, seed, rtol, atol)
    if order > 1:
        _check_order(tape_directional, arrays, modes, order - 1, eps, rtol, atol, seed,
                     level + 1)


def check_vjp(fun: Callable[..., Any], args: Sequence[Any],
              vjp: Callable[[Any], Sequence[Any]], *, eps: float | None = None,
              rtol: float = 1e-6, atol: float = 1e-6, seed: int = 0) -> None:
    """Check a VJP from any autodiff system against central finite differences of ``fun``.

    The tape-agnostic form of :func:`check_grads` (first order, reverse mode): ``fun`` takes
    and returns raw arrays, ``vjp(u)`` returns the cotangents of its arguments, computed by
    whatever is being checked (HIPS autograd, a hand-written adjoint, ...). With a random
    cotangent u and random directions v_i, ``sum_i <vjp(u)_i, v_i>`` must equal the finite
    difference of ``<u, fun>`` along v.

    Args:
        fun: ``fun(*args) -> array`` on raw arrays (any array library).
        args: the point, one array per argument (float64 recommended).
        vjp: ``vjp(u) -> cotangents``, one per argument (``None`` meaning zero).
        eps: finite-difference step; default scaled to the arguments.
        rtol: relative tolerance.
        atol: absolute tolerance.
        seed: seed of the random cotangent and directions (reported on failure).

    Raises:
        AssertionError: a mismatch, with the observed and expected values and the seed.
        ValueError: ``vjp`` returns a different number of cotangents than ``args``.

    Example:
        >>> import numpy as np
        >>> x = np.linspace(-1.0, 1.0, 4)
        >>> check_vjp(np.sin, [x], lambda u: [u * np.cos(x)])
    """
    arrays = list(args)
    rng = np.random.default_rng(seed)
    u = random_direction(fun(*arrays), rng)
    vs = [random_direction(a, rng) for a in arrays]
    expected = _fd_projection(lambda xs: fun(*xs), arrays, u, vs, eps)
    cotangents = list(vjp(u))
    if len(cotangents) != len(arrays):
        raise ValueError(f"vjp returned {len(cotangents)} cotangents for {len(arrays)} "
                         "arguments; expected one per argument")
    observed = sum(inner_product(c, v) for c, v in zip(cotangents, vs) if c is not None)
    if not _close(observed, expected, rtol, atol):
        _fail("rev", 1, observed, expected, seed, rtol, atol)


def _jvp_projection(fun, arrays, u, directions):
    """``<u, J v>`` with ``J v`` from :func:`npdeq.autodiff.jvp` (forward mode on the tape,
    by transposing the VJP twice), recorded only where a higher order needs it."""
    _, jv = jvp(fun, tuple(arrays), tuple(directions), create_graph=False)
    return inner_product(u, jv.data)
