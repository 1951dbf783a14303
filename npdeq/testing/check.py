"""``check_fixed_point_grads``: the one-call check of a DEQ layer's gradients.

It solves the fixed point tightly, takes the chosen rule's gradient of a random projection of
the solution, and compares it, parameter by parameter, with central finite differences of
the (re-solved) solution along random directions (:func:`~npdeq.testing.numerical_vjp`).
For IFT a mismatch is an error; for PhantomGrad, which is biased by design, the report gives
the bias against the IFT gradient instead. ``order=2`` also checks the rule's second
derivatives: its Hessian-vector product (:func:`npdeq.autodiff.hvp`, which needs the rule to
record its own backward pass) against finite differences of its gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from npdeq import backend
from npdeq.autodiff import Tensor, hvp
from npdeq.autodiff import grad as tape_grad
from npdeq.testing.gradcheck import default_eps, inner_product, numerical_vjp, random_direction

__all__ = ["check_fixed_point_grads", "FixedPointGradReport", "ParamCheck"]

# Tight solves: the finite differences divide solver error by the step (~1e-5 in float64).
_TIGHT = {"float64": {"tol": 1e-12, "max_iter": 500, "stop_mode": "abs"},
          "float32": {"tol": 1e-6, "max_iter": 500, "stop_mode": "abs"}}
_DEFAULT_TOLS = {"float64": (1e-5, 1e-8), "float32": (5e-2, 1e-4)}
# Second order divides the (tightly solved) gradient's error by the step: looser.
_DEFAULT_TOLS_2 = {"float64": (1e-4, 1e-6), "float32": (1e-1, 1e-3)}


@dataclasses.dataclass(slots=True)
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


@dataclasses.dataclass(slots=True)
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
        if not hasattr(a, "dtype") or \
                not backend.array_namespace(a).isdtype(a.dtype, "real floating"):
            raise TypeError(f"parameter {name} must be a floating-point array, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
    return names, arrays, keywords


def _parse_rule(grad: Any, phantom_steps: int, tau: float) -> tuple[Any, str]:
    """The ``npdeq.fixed_point`` grad argument and a display name."""
    if grad == "ift":
        return "ift", "ift"
    if grad == "phantom":
        steps = backend.as_count(phantom_steps)
        if steps is None or steps < 1:
            raise ValueError(f"phantom_steps must be a positive int, got {phantom_steps!r}")
    else:
        steps = backend.as_count(grad)
    if steps is not None and steps >= 1:
        return steps, f"phantom(k={steps}, tau={tau:g})"
    raise ValueError(f"grad must be 'ift', 'phantom' or a positive int (PhantomGrad steps), "
                     f"got {grad!r}")


def _packed(z: Any) -> Tensor:
    """The solution as one ``(B, D)`` Tensor (tuple states concatenated per sample)."""
    from npdeq.grad.state import as_state_tuple, pack_tensors  # the rules sit above the tape

    return pack_tensors(as_state_tuple(z))


def _host_max(x: Any) -> float:
    return float(np.max(backend.to_numpy(x)))


@dataclasses.dataclass(slots=True)
class _FixedPoint:
    """The checked fixed point ``z* = func(z*, params)``: solved with any rule from any
    start, and the rule's gradient of ``L = <cotangent, z*>``."""

    func: Callable[..., Any]
    names: list[str]
    keywords: bool
    single: bool
    settings: dict
    cotangent: Any = None

    def solve(self, values: Sequence[Any], how: Any, z_init: Any) -> tuple[Any, dict]:
        from npdeq.grad import fixed_point  # the gradient rules sit above the tape

        def deq(*zs):
            z = zs[0] if self.single else tuple(zs)
            if self.keywords:
                return self.func(z, **dict(zip(self.names, values)))
            return self.func(z, *values)
        return fixed_point(deq, z_init, grad=how, **self.settings)

    def loss(self, values: Sequence[Any], how: Any, z_init: Any) -> tuple[Tensor, Any, dict]:
        z, info = self.solve(values, how, z_init)
        return (_packed(z) * Tensor(self.cotangent)).sum(), z, info

    def gradient(self, how: Any, values: Sequence[Any],
                 z_init: Any) -> tuple[list[Any], Any, dict]:
        leaves = [Tensor(a, requires_grad=True) for a in values]
        loss, z, info = self.loss(leaves, how, z_init)
        grads = tape_grad(loss, leaves, allow_unused=True) if loss.requires_grad \
            else [None] * len(leaves)
        return [a * 0 if g is None else g.data for g, a in zip(grads, values)], z, info


def _tolerances(table: dict, dtype_name: str, rtol: float | None,
                atol: float | None) -> tuple[float, float]:
    return (table[dtype_name][0] if rtol is None else rtol,
            table[dtype_name][1] if atol is None else atol)


def _param_check(name: str, shape: tuple, observed: float, expected: float, rtol: float,
                 atol: float) -> ParamCheck:
    diff = abs(observed - expected)
    return ParamCheck(name, shape, observed, expected, diff / max(abs(expected), atol),
                      diff <= atol + rtol * abs(expected))


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
    if backend.as_count(order) not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    rule, rule_name = _parse_rule(grad, phantom_steps, tau)
    names, arrays, keywords = _named(params)
    dtype_name = "float32" if arrays[0].dtype == backend.array_namespace(arrays[0]).float32 \
        else "float64"
    settings = dict(solver=solver, tau=tau, b_solver=b_solver,
                    solver_kwargs={**_TIGHT[dtype_name], **(solver_kwargs or {})},
                    b_solver_kwargs={**_TIGHT[dtype_name], **(b_solver_kwargs or {})})
    problem = _FixedPoint(func, names, keywords, not isinstance(z0, (tuple, list)), settings)
    rng = np.random.default_rng(seed)
    starts = [z.data if isinstance(z, Tensor) else z for z in ((z0,) if problem.single else z0)]
    problem.cotangent = random_direction(_packed([Tensor(z) for z in starts]).data, rng)
    directions = [random_direction(a, rng) for a in arrays]
    gradients, z_star, info = problem.gradient(rule, arrays, z0)
    warm = z_star.data if problem.single else tuple(t.data for t in z_star)
    ift_gradients = problem.gradient("ift", arrays, z0)[0] if rule != "ift" else None
    rtol1, atol1 = _tolerances(_DEFAULT_TOLS, dtype_name, rtol, atol)
    checks = _first_order(problem, warm, names, arrays, gradients, ift_gradients, directions,
                          eps, rtol1, atol1)
    report = _report(rule_name, checks, info, rule, seed, rtol1, atol1)
    if backend.as_count(order) == 2:
        report.second_order = _second_order(problem, rule, warm, names, arrays, rng, eps,
                                            rule_name,
                                            *_tolerances(_DEFAULT_TOLS_2, dtype_name, rtol, atol))
    if rule == "ift" and not report.passed:
        raise AssertionError("IFT gradient check failed (replay with seed="
                             f"{seed}):\n{report}")
    return report


def _first_order(problem, warm, names, arrays, gradients, ift_gradients, directions, eps,
                 rtol, atol):
    """One :class:`ParamCheck` per parameter: ``<dL/dp, v>`` from the rule against the
    central difference of L along v, the solution re-solved from ``warm`` on each side."""
    def solved(*values):
        return _packed(problem.solve(values, None, warm)[0])

    checks = []
    for i, (name, a) in enumerate(zip(names, arrays)):
        only = [d if j == i else None for j, d in enumerate(directions)]
        step = eps if eps is not None else default_eps(a)
        expected = numerical_vjp(solved, arrays, problem.cotangent, only, eps=step)
        check = _param_check(name, tuple(a.shape), inner_product(gradients[i], directions[i]),
                             expected, rtol, atol)
        if ift_gradients is not None:
            check.bias_vs_ift, check.cosine_vs_ift = _bias(gradients[i], ift_gradients[i])
        checks.append(check)
    return checks


def _second_order(problem, rule, warm, names, arrays, rng, eps, rule_name, rtol, atol):
    """One :class:`ParamCheck` per parameter: ``<(H v)_i, w_i>`` from the rule against the
    central difference of its gradient along v (all parameters moved together)."""
    vs = [random_direction(a, rng) for a in arrays]
    ws = [random_direction(a, rng) for a in arrays]
    try:
        _, products = hvp(lambda *values: problem.loss(values, rule, warm)[0], tuple(arrays),
                          tuple(vs), create_graph=False)
    except NotImplementedError as exc:
        raise NotImplementedError(
            f"check_fixed_point_grads(order=2) needs second derivatives through the "
            f"{rule_name} rule, which cannot record its own backward pass: {exc}") from exc
    h = eps if eps is not None else min(default_eps(a) for a in arrays)
    plus = problem.gradient(rule, [a + h * v for a, v in zip(arrays, vs)], warm)[0]
    minus = problem.gradient(rule, [a - h * v for a, v in zip(arrays, vs)], warm)[0]
    return [_param_check(name, tuple(a.shape), inner_product(hv.data, w),
                         (inner_product(gp, w) - inner_product(gm, w)) / (2 * h), rtol, atol)
            for name, a, hv, gp, gm, w in zip(names, arrays, products, plus, minus, ws)]


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
