"""``check_fixed_point_grads``: the one-call check of a DEQ layer's gradients.

It solves the fixed point tightly, takes the chosen rule's gradient of a random projection of
the solution, and compares it, parameter by parameter, with central finite differences of
the (re-solved) solution along random directions (:func:`~npdeq.testing.numerical_vjp`).
For IFT a mismatch is an error; for PhantomGrad, which is biased by design, the report gives
the bias against the IFT gradient instead. ``order=2`` also checks the rule's second
derivatives: its Hessian-vector product (:func:`npdeq.autodiff.hvp`, which needs the rule to
record its own backward pass) against finite differences of its gradient. Imports the tape, the gradient rules (lazily: they
sit above this package's other modules) and numpy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from npdeq import backend
from npdeq.autodiff import Tensor, concat, hvp, reshape
from npdeq.autodiff import grad as tape_grad
from npdeq.testing.gradcheck import _inner, _random_like, default_eps, numerical_vjp

__all__ = ["check_fixed_point_grads", "FixedPointGradReport", "ParamCheck"]

# Tight solves: the finite differences divide solver error by the step (~1e-5 in float64).
_TIGHT = {"float64": {"tol": 1e-12, "max_iter": 500, "stop_mode": "abs"},
          "float32": {"tol": 1e-6, "max_iter": 500, "stop_mode": "abs"}}
_DEFAULT_TOLS = {"float64": (1e-5, 1e-8), "float32": (5e-2, 1e-4)}
# Second order divides the (tightly solved) gradient's error by the step: looser.
_DEFAULT_TOLS_2 = {"float64": (1e-4, 1e-6), "float32": (1e-1, 1e-3)}


@dataclasses.dataclass
class ParamCheck:
    """The check of one parameter.

    Attributes:
        name: the parameter's name (its dict key, or ``params[i]``).
        shape: its shape.
        observed: the rule's directional derivative ``<dL/dp, v>`` (L a random projection of
            the solution, v a random direction).
        expected: the same by central finite differences of re-solved fixed points.
        rel_error: ``|observed - expected| / max(|expected|, atol)``.
        passed: whether ``|observed - expected| <= atol + rtol * |expected|``.
        bias_vs_ift: PhantomGrad only: ``||g - g_ift|| / ||g_ift||`` over the whole gradient.
        cosine_vs_ift: PhantomGrad only: cosine similarity of ``g`` and ``g_ift``.
    """

    name: str
    shape: tuple
    observed: float
    expected: float
    rel_error: float
    passed: bool
    bias_vs_ift: float | None = None
    cosine_vs_ift: float | None = None


@dataclasses.dataclass
class FixedPointGradReport:
    """What :func:`check_fixed_point_grads` found; ``str(report)`` is a readable table.

    Attributes:
        grad: the rule checked (``'ift'`` or ``'phantom(k=.., tau=..)'``).
        params: one :class:`ParamCheck` per parameter.
        forward_iters: most forward solver steps over the batch.
        forward_residual: largest final forward residual (absolute) over the batch.
        forward_converged: whether every sample reached the forward tolerance.
        backward_iters: most backward (adjoint) solver steps (PhantomGrad: its k steps).
        backward_residual: largest final adjoint residual (``None`` for PhantomGrad).
        seed: the seed of the random projection and directions (to replay a case).
        rtol: relative tolerance used.
        atol: absolute tolerance used.
        second_order: with ``order=2``, one :class:`ParamCheck` per parameter: the rule's
            Hessian-vector product ``H v`` projected on a random w (``observed``) against
            the finite difference of the rule's gradient along v, projected on w
            (``expected``); empty at order 1.
    """

    grad: str
    params: list
    forward_iters: int
    forward_residual: float
    forward_converged: bool
    backward_iters: int | None
    backward_residual: float | None
    seed: int
    rtol: float
    atol: float
    second_order: list = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the forward solve converged and every parameter matched (at both orders
        with ``order=2``)."""
        return self.forward_converged and all(p.passed for p in self.params + self.second_order)

    def __str__(self) -> str:
        phantom = any(p.bias_vs_ift is not None for p in self.params)
        head = f"{'parameter':<14}{'shape':<14}{'rule':>14}{'finite diff':>14}{'rel err':>10}"
        head += f"{'bias vs IFT':>13}{'cos':>8}" if phantom else "  ok"
        lines = [f"gradient check of a fixed point: grad={self.grad}, seed={self.seed}, "
                 f"rtol={self.rtol:g}, atol={self.atol:g}",
                 f"  forward: {self.forward_iters} iterations, residual "
                 f"{self.forward_residual:.2e}"
                 + ("" if self.forward_converged else "  (NOT CONVERGED: the check is void)"),
                 "  backward: " + self._backward_line(), head]
        for p in self.params:
            row = (f"{p.name:<14}{str(p.shape):<14}{p.observed:>14.6e}{p.expected:>14.6e}"
                   f"{p.rel_error:>10.2e}")
            if phantom:
                row += f"{p.bias_vs_ift:>13.3e}{p.cosine_vs_ift:>8.4f}"
            else:
                row += "  " + ("yes" if p.passed else "NO")
            lines.append(row)
        if self.second_order:
            lines.append("  second order: the rule's Hessian-vector product vs finite "
                         "differences of its gradient")
            for p in self.second_order:
                lines.append(f"{p.name:<14}{str(p.shape):<14}{p.observed:>14.6e}"
                             f"{p.expected:>14.6e}{p.rel_error:>10.2e}  "
                             + ("yes" if p.passed else "NO"))
        return "\n".join(lines)

    def _backward_line(self) -> str:
        if self.backward_residual is None:
            return f"{self.backward_iters} unrolled PhantomGrad steps"
        return (f"{self.backward_iters} adjoint iterations, residual "
                f"{self.backward_residual:.2e}")


def _named(params: Any) -> tuple[list[str], list[Any], bool]:
    """Names and raw arrays of ``params``, and whether they are passed as keywords."""
    if isinstance(params, Mapping):
        names = [str(k) for k in params]
        values = list(params.values())
        keywords = True
    elif isinstance(params, (list, tuple)):
        names = [f"params[{i}]" for i in range(len(params))]
        values = list(params)
        keywords = False
    else:
        raise TypeError(f"params must be a dict of name -> array or a sequence of arrays, "
                        f"got {type(params).__name__}")
    if not values:
        raise ValueError("params is empty: nothing to check")
    arrays = [v.data if isinstance(v, Tensor) else v for v in values]
    for name, a in zip(names, arrays):
        if not hasattr(a, "dtype") or not backend.array_namespace(a).isdtype(a.dtype, "real floating"):
            raise TypeError(f"parameter {name} must be a floating-point array, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
    return names, arrays, keywords


def _parse_rule(grad: Any, phantom_steps: int, tau: float) -> tuple[Any, str]:
    """The ``npdeq.fixed_point`` grad argument and a display name."""
    if grad == "ift":
        return "ift", "ift"
    if grad == "phantom":
        return phantom_steps, f"phantom(k={phantom_steps}, tau={tau:g})"
    if isinstance(grad, int) and not isinstance(grad, bool) and grad >= 1:
        return grad, f"phantom(k={grad}, tau={tau:g})"
    raise ValueError(f"grad must be 'ift', 'phantom' or a positive int (PhantomGrad steps), "
                     f"got {grad!r}")


def _pack(z: Any) -> Tensor:
    """The solution as one ``(B, D)`` Tensor (tuple states concatenated per sample)."""
    parts = z if isinstance(z, (tuple, list)) else (z,)
    flat = [reshape(p, (p.shape[0], -1)) for p in parts]
    return flat[0] if len(flat) == 1 else concat(flat, axis=1)


def _host_max(x: Any) -> float:
    return float(np.max(backend.to_numpy(x)))


def check_fixed_point_grads(func: Callable[..., Any], z0: Any, params: Any,
                            grad: str | int = "ift", *, solver: str = "anderson",
                            solver_kwargs: dict | None = None,
                            b_solver: str = "fixed_point_iter",
                            b_solver_kwargs: dict | None = None, phantom_steps: int = 5,
                            tau: float = 1.0, rtol: float | None = None,
                            atol: float | None = None, eps: float | None = None,
                            seed: int = 0, order: int = 1) -> FixedPointGradReport:
    """Check the gradient of a fixed point ``z* = func(z*, params)`` against finite
    differences, parameter by parameter.

    With a random cotangent G and the loss ``L = <G, z*>``, the rule's gradient ``dL/dp`` is
    projected on a random direction v per parameter and compared with the central finite
    difference of L along v, each side re-solved tightly from z*. Use float64.

    Args:
        func: the DEQ map on npdeq Tensors: ``func(z, *params)`` when ``params`` is a
            sequence, ``func(z, **params)`` when it is a dict; ``z`` is a Tensor, or a tuple
            of Tensors for a tuple state (and ``func`` then returns a tuple).
        z0: initial state, a ``(B, ...)`` array or a tuple of them sharing B.
        params: the parameters to check: a dict ``name -> array`` or a sequence of arrays
            (Tensors are taken detached).
        grad: ``'ift'`` (asserts), ``'phantom'`` (``phantom_steps`` damped steps) or an int
            k (PhantomGrad with k steps): reported against IFT, not asserted.
        solver: forward solver name.
        solver_kwargs: forward solver arguments; default a tight solve (``tol=1e-12``,
            ``max_iter=500``, ``stop_mode='abs'`` in float64).
        b_solver: IFT backward solver name (or ``'direct'``).
        b_solver_kwargs: its arguments; default as tight as the forward.
        phantom_steps: k for ``grad='phantom'``.
        tau: PhantomGrad damping.
        rtol: relative tolerance (default 1e-5 in float64, 5e-2 in float32).
        atol: absolute tolerance (default 1e-8 in float64, 1e-4 in float32).
        eps: finite-difference step (default scaled to each parameter).
        seed: seed of the cotangent and the directions (reported, for replay).
        order: ``2`` also checks second derivatives through the rule (the report's
            ``second_order``, with tolerances ten times looser by default): ``H v`` by
            :func:`npdeq.autodiff.hvp` (reverse over reverse: the rule's backward pass
            recorded and differentiated) against central differences of the rule's
            gradient along v, both sides re-solved. Costs one more backward pass through
            the rule's own backward pass and two more gradients.

    Returns:
        A :class:`FixedPointGradReport` (print it for a table).

    Raises:
        AssertionError: IFT only: the forward solve did not converge or a parameter's
            gradient does not match finite differences; the message is the report.
        ValueError: an unknown ``grad``, empty ``params`` or an ``order`` other than 1 or 2.
        TypeError: ``params`` of the wrong kind or a non-floating parameter.
        NotImplementedError: ``order=2`` with a rule that cannot record its own backward
            pass (``create_graph``).

    Example:
        >>> import numpy as np, npdeq
        >>> W = 0.5 * np.eye(3)
        >>> b = np.ones(3)
        >>> report = check_fixed_point_grads(lambda z, W, b: npdeq.tanh(z @ W + b),
        ...                                  np.zeros((2, 3)), {"W": W, "b": b})
        >>> report.passed
        True
    """
    from npdeq.grad import fixed_point  # the gradient rules sit above the tape

    if isinstance(order, bool) or not isinstance(order, int) or order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    rule, rule_name = _parse_rule(grad, phantom_steps, tau)
    names, arrays, keywords = _named(params)
    dtype_name = "float32" if arrays[0].dtype == backend.array_namespace(arrays[0]).float32 \
        else "float64"
    f_kwargs = {**_TIGHT[dtype_name], **(solver_kwargs or {})}
    b_kwargs = {**_TIGHT[dtype_name], **(b_solver_kwargs or {})}
    rtol2 = _DEFAULT_TOLS_2[dtype_name][0] if rtol is None else rtol
    atol2 = _DEFAULT_TOLS_2[dtype_name][1] if atol is None else atol
    rtol = _DEFAULT_TOLS[dtype_name][0] if rtol is None else rtol
    atol = _DEFAULT_TOLS[dtype_name][1] if atol is None else atol
    single = not isinstance(z0, (tuple, list))

    def solve(values, how, z_init):
        def deq(*zs):
            z = zs[0] if single else tuple(zs)
            return func(z, **dict(zip(names, values))) if keywords else func(z, *values)
        return fixed_point(deq, z_init, solver=solver, grad=how, tau=tau,
                           solver_kwargs=f_kwargs, b_solver=b_solver, b_solver_kwargs=b_kwargs)

    def rule_gradient(how, values=None, z_init=z0):
        values = arrays if values is None else values
        leaves = [Tensor(a, requires_grad=True) for a in values]
        z, info = solve(leaves, how, z_init)
        packed = _pack(z)
        loss = (packed * Tensor(cotangent)).sum()
        grads = tape_grad(loss, leaves, allow_unused=True) if loss.requires_grad \
            else [None] * len(leaves)
        return [a * 0 if g is None else g.data for g, a in zip(grads, values)], z, info

    rng = np.random.default_rng(seed)
    starts = [z.data if isinstance(z, Tensor) else z for z in ((z0,) if single else z0)]
    cotangent = _random_like(_pack([Tensor(z) for z in starts]).data, rng)
    directions = [_random_like(a, rng) for a in arrays]
    gradients, z_star, info = rule_gradient(rule)
    warm = tuple(t.data for t in z_star) if not single else z_star.data
    ift_gradients = rule_gradient("ift")[0] if rule != "ift" else None

    def solved(*values):
        z, _ = solve(values, None, warm)
        return _pack(z)

    checks = []
    for i, (name, a) in enumerate(zip(names, arrays)):
        only = [d if j == i else None for j, d in enumerate(directions)]
        step = eps if eps is not None else default_eps(a)
        expected = numerical_vjp(solved, arrays, cotangent, only, eps=step)
        observed = _inner(gradients[i], directions[i])
        diff = abs(observed - expected)
        check = ParamCheck(name, tuple(a.shape), observed, expected,
                           diff / max(abs(expected), atol), diff <= atol + rtol * abs(expected))
        if ift_gradients is not None:
            check.bias_vs_ift, check.cosine_vs_ift = _bias(gradients[i], ift_gradients[i])
        checks.append(check)
    report = _report(rule_name, checks, info, rule, seed, rtol, atol)
    if order == 2:
        def loss(*values):
            z, _ = solve(values, rule, warm)
            return (_pack(z) * Tensor(cotangent)).sum()

        def gradient_at(values):
            return rule_gradient(rule, values, warm)[0]

        report.second_order = _second_order(loss, gradient_at, names, arrays, rng, eps,
                                            rule_name, rtol2, atol2)
    if rule == "ift" and not report.passed:
        raise AssertionError("IFT gradient check failed (replay with seed="
                             f"{seed}):\n{report}")
    return report


def _second_order(loss, gradient_at, names, arrays, rng, eps, rule_name, rtol, atol):
    """One :class:`ParamCheck` per parameter: ``<(H v)_i, w_i>`` from the rule against the
    central difference of its gradient along v (all parameters moved together)."""
    vs = [_random_like(a, rng) for a in arrays]
    ws = [_random_like(a, rng) for a in arrays]
    try:
        _, products = hvp(loss, tuple(arrays), tuple(vs), create_graph=False)
    except NotImplementedError as exc:
        raise NotImplementedError(
            f"check_fixed_point_grads(order=2) needs second derivatives through the "
            f"{rule_name} rule, which cannot record its own backward pass yet: {exc}") from exc
    h = eps if eps is not None else min(default_eps(a) for a in arrays)
    plus = gradient_at([a + h * v for a, v in zip(arrays, vs)])
    minus = gradient_at([a - h * v for a, v in zip(arrays, vs)])
    checks = []
    for name, a, hv, gp, gm, w in zip(names, arrays, products, plus, minus, ws):
        observed = _inner(hv.data, w)
        expected = (_inner(gp, w) - _inner(gm, w)) / (2 * h)
        diff = abs(observed - expected)
        checks.append(ParamCheck(name, tuple(a.shape), observed, expected,
                                 diff / max(abs(expected), atol),
                                 diff <= atol + rtol * abs(expected)))
    return checks


def _bias(g: Any, g_ift: Any) -> tuple[float, float]:
    a, b = backend.to_numpy(g).ravel(), backend.to_numpy(g_ift).ravel()
    nb = float(np.linalg.norm(b))
    na = float(np.linalg.norm(a))
    bias = float(np.linalg.norm(a - b)) / nb if nb > 0 else float(np.linalg.norm(a))
    cosine = float(a @ b) / (na * nb) if na > 0 and nb > 0 else float(na == nb)
    return bias, cosine


def _report(rule_name, checks, info, rule, seed, rtol, atol):
    back = info.get("backward")
    if rule == "ift" and back is not None:
        b_iters, b_res = int(_host_max(back["nstep"])), _host_max(back["abs_lowest"])
    elif rule == "ift":  # nothing required a gradient: no backward pass ran
        b_iters, b_res = 0, 0.0
    else:
        b_iters, b_res = int(rule), None
    converged = bool(np.all(backend.to_numpy(info["converged"])))
    return FixedPointGradReport(rule_name, checks, int(_host_max(info["nstep"])),
                                _host_max(info["abs_lowest"]), converged, b_iters, b_res,
                                seed, rtol, atol)
