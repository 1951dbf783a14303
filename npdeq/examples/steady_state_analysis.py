"""Second-order tools on the steady-state example: forward sensitivities and a Newton-CG fit.

- :func:`sensitivities`: ``dz*/dp`` for each physical parameter (D, k, a) as whole fields,
  by forward mode through the fixed point (:func:`npdeq.jacobian` with ``mode='forward'``:
  one JVP per parameter, each a linear solve with the transposed adjoint operator), checked
  against central finite differences of re-solved steady states.
- :func:`newton_cg_vs_gradient_descent`: the example's fit done twice from the same guess,
  by gradient descent and by Newton-CG whose Hessian-vector products (:func:`npdeq.hvp`)
  differentiate the IFT gradient itself; both stop at the same gradient tolerance and
  report their outer iterations.

Used by ``python -m npdeq.examples.steady_state --sensitivities --newton-cg``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import numpy as np

from npdeq import backend
from npdeq.autodiff import Tensor, hvp, jacobian, log, no_grad
from npdeq.backend import Array
from npdeq.examples.steady_state import NAMES, FitResult, Objective, solve

__all__ = ["sensitivities", "print_sensitivities", "newton_cg_vs_gradient_descent",
           "print_fit_counts", "FitCount", "report", "GTOL"]

GTOL = 1e-5  # relative gradient tolerance of both fits
MAX_STEP = 1.0  # longest step in log-parameter space (a factor e on a parameter)
# The loss's cotangents are small (a mean over the field): adjoint solves stopped on an
# absolute residual would leave the gradient accurate to ~1e-4 only, above GTOL. Relative.
BACKWARD_REL = {"tol": 1e-11, "max_iter": 400, "m": 6, "stop_mode": "rel"}


def _scalars(values: dict, like: Array) -> tuple:
    xp = backend.array_namespace(like)
    return tuple(xp.asarray(float(values[n]), dtype=xp.float64, device=backend.device(like))
                 for n in NAMES)


def sensitivities(values: dict, source: Array, z0: Array, fd_step: float = 1e-4) -> dict:
    """Forward sensitivities of the steady state to D, k and a, and their check.

    Args:
        values: the physical parameters ``{'D': .., 'k': .., 'a': ..}`` (positive).
        source: ``(B, N, N)`` source array.
        z0: a starting field for the solves (the steady state at ``values`` is best).
        fd_step: relative step of the finite-difference check.

    Returns:
        ``{name: (field, fd_rel_error)}``: ``dz*/dp`` as a NumPy ``(B, N, N)`` array and the
        relative L2 difference from central finite differences.
    """
    def field(D: Tensor, k: Tensor, a: Tensor) -> Tensor:
        u, _ = solve({"log_D": log(D), "log_k": log(k), "log_a": log(a)}, source, z0)
        return u

    columns = jacobian(field, _scalars(values, source), mode="forward")
    out = {}
    for name, column in zip(NAMES, columns):
        h = fd_step * values[name]
        fields = []
        for sign in (1.0, -1.0):
            shifted = dict(values, **{name: values[name] + sign * h})
            with no_grad():
                fields.append(backend.to_numpy(field(*(Tensor(v) for v in
                                                        _scalars(shifted, source))).data))
        fd = (fields[0] - fields[1]) / (2 * h)
        exact = backend.to_numpy(column.data)
        out[name] = (exact, float(np.linalg.norm(exact - fd) / max(np.linalg.norm(fd), 1e-300)))
    return out


def print_sensitivities(values: dict, result: dict, log_line: Any = print) -> None:
    """One line per parameter: ``dz*/dp``'s RMS and largest entry (and where), the
    elasticity ``p / max z* * max |dz*/dp|`` and the finite-difference check."""
    log_line("Forward sensitivities of the steady state (JVPs through the fixed point):")
    log_line(f"{'parameter':<10}{'value':>9}{'rms dz*/dp':>13}{'max |dz*/dp|':>14}"
             f"{'at (e, i, j)':>15}{'vs FD':>10}")
    for name in NAMES:
        field, err = result[name]
        where = np.unravel_index(int(np.argmax(np.abs(field))), field.shape)
        log_line(f"{name:<10}{values[name]:>9.4f}{float(np.sqrt(np.mean(field ** 2))):>13.4e}"
                 f"{float(field[where]):>14.4e}{str(tuple(int(i) for i in where)):>15}"
                 f"{err:>10.1e}")


@dataclasses.dataclass(slots=True)
class FitCount:
    """One method's fit: outer iterations, loss and gradient evaluations, Hessian-vector
    products, whether it reached the tolerance, the final loss, the fitted parameters and
    the wall time in seconds."""

    method: str
    iterations: int
    gradients: int
    hvps: int
    converged: bool
    loss: float
    fitted: dict
    seconds: float = 0.0


def _line_search(objective: Objective, theta, loss, g, direction, t=1.0):
    """Backtracking (Armijo) along ``direction``, at most ``MAX_STEP`` long. A trial
    point may leave the region where the map contracts (k < 0.65 a): its solve warns and
    fails, and the step is halved, so those warnings are expected and silenced here."""
    t = min(t, MAX_STEP / max(float(np.linalg.norm(direction)), 1e-300))
    slope = float(g @ direction)
    for _ in range(40):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            new_loss, new_g, info, u = objective(theta + t * direction)
        if np.isfinite(new_loss) and np.all(np.isfinite(new_g)) \
                and new_loss <= loss + 1e-4 * t * slope:
            return theta + t * direction, new_loss, new_g, u, t
        t *= 0.5
    return theta, loss, g, objective.warm, 0.0


def _gradient_descent(objective, theta, gtol, max_iter):
    loss, g, _, objective.warm = objective(theta)
    target, t, it = gtol * float(np.linalg.norm(g)), 1.0, 0
    while it < max_iter and float(np.linalg.norm(g)) > target:
        theta, loss, g, objective.warm, t = _line_search(objective, theta, loss, g, -g,
                                                         min(2.0 * t, 1e6) if t else 1.0)
        it += 1
        if t == 0.0:
            break
    return theta, loss, it, float(np.linalg.norm(g)) <= target


def _newton_cg(objective, theta, gtol, max_iter, hessian_vector):
    loss, g, _, objective.warm = objective(theta)
    target, it, products = gtol * float(np.linalg.norm(g)), 0, 0
    while it < max_iter and float(np.linalg.norm(g)) > target:
        # Conjugate gradients on H d = -g (exact in 3 steps for 3 parameters), stopped at
        # negative curvature: far from the fit the Hessian need not be positive.
        d, r = np.zeros_like(g), -g.copy()
        p = r.copy()
        for _ in range(len(g)):
            hp = hessian_vector(theta, p)
            products += 1
            curvature = float(p @ hp)
            if curvature <= 0:
                if not d.any():
                    d = -g
                break
            alpha = float(r @ r) / curvature
            d, r_new = d + alpha * p, r - alpha * hp
            if float(np.linalg.norm(r_new)) <= 1e-10 * float(np.linalg.norm(g)):
                break
            p, r = r_new + float(r_new @ r_new) / float(r @ r) * p, r_new
        theta, loss, g, objective.warm, t = _line_search(objective, theta, loss, g, d)
        it += 1
        if t == 0.0:
            break
    return theta, loss, it, products, float(np.linalg.norm(g)) <= target


def newton_cg_vs_gradient_descent(source: Array, observed: Array, z0: Array, initial: dict,
                                  gtol: float = GTOL, max_newton: int = 50,
                                  max_gd: int = 500) -> list:
    """Fit log D, log k, log a from ``initial`` by gradient descent and by Newton-CG.

    Both use IFT gradients and the same Armijo line search, and stop when the gradient's
    norm has dropped by ``gtol``. Newton-CG's Hessian-vector products are
    :func:`npdeq.hvp` of the loss through the fixed point (reverse over reverse: the IFT
    gradient recorded, its adjoint solve included, then differentiated).

    Args:
        source: ``(B, N, N)`` source array; observed: the observed fields, same shape.
        z0: starting field; initial: the starting physical parameters.
        gtol: relative gradient tolerance.
        max_newton: Newton-CG's outer iteration limit; max_gd: gradient descent's.

    Returns:
        ``[FitCount('gradient descent', ...), FitCount('Newton-CG', ...)]``.
    """
    xp = backend.array_namespace(source)
    dev = backend.device(source)
    theta0 = np.array([math.log(initial[n]) for n in NAMES])
    results = []

    tic = time.perf_counter()
    gd = Objective(source, observed, z0, BACKWARD_REL)
    theta, loss, iters, ok = _gradient_descent(gd, theta0.copy(), gtol, max_gd)
    results.append(FitCount("gradient descent", iters, gd.solves, 0, ok, loss,
                            dict(zip(NAMES, np.exp(theta).tolist())),
                            time.perf_counter() - tic))

    newton = Objective(source, observed, z0, BACKWARD_REL)

    def loss_of(theta_t: Tensor) -> Tensor:
        params = {f"log_{n}": theta_t[i] for i, n in enumerate(NAMES)}
        u, _ = solve(params, source, newton.warm, backward=BACKWARD_REL)
        return ((u - observed) ** 2).mean()

    def hessian_vector(theta, v):
        _, hv = hvp(loss_of, xp.asarray(theta, device=dev), xp.asarray(v, device=dev))
        return backend.to_numpy(hv.data)

    tic = time.perf_counter()
    theta, loss, iters, products, ok = _newton_cg(newton, theta0.copy(), gtol, max_newton,
                                                  hessian_vector)
    results.append(FitCount("Newton-CG", iters, newton.solves, products, ok, loss,
                            dict(zip(NAMES, np.exp(theta).tolist())),
                            time.perf_counter() - tic))
    return results


def print_fit_counts(counts: list, gtol: float, log_line: Any = print) -> None:
    """A table of :func:`newton_cg_vs_gradient_descent`'s results."""
    log_line(f"Fit to a {gtol:g} relative gradient tolerance, from the same initial guess:")
    log_line(f"{'method':<18}{'outer it':>9}{'gradients':>10}{'HVPs':>6}{'seconds':>9}"
             f"{'loss':>13}{'D':>8}{'k':>8}{'a':>8}  converged")
    for c in counts:
        log_line(f"{c.method:<18}{c.iterations:>9}{c.gradients:>10}{c.hvps:>6}"
                 f"{c.seconds:>9.1f}{c.loss:>13.6e}"
                 + "".join(f"{c.fitted[n]:>8.4f}" for n in NAMES)
                 + ("  yes" if c.converged else "  NO (iteration limit)"))


def report(result: FitResult, show_sensitivities: bool, newton: bool, gd_steps: int,
           log_line: Any = print) -> None:
    """What ``--sensitivities`` and ``--newton-cg`` print after the example's fit.

    Args:
        result: the example's fit.
        show_sensitivities: print ``dz*/dp`` at the fitted parameters.
        newton: compare Newton-CG with gradient descent from the initial guess.
        gd_steps: gradient descent's iteration limit.
        log_line: where lines go.
    """
    xp = backend.array_namespace(result.source)
    dev = backend.device(result.source)
    if show_sensitivities:
        log_line("")
        warm = xp.asarray(result.fitted_field, device=dev)
        print_sensitivities(result.fitted, sensitivities(result.fitted, result.source, warm),
                            log_line)
    if newton:
        log_line("")
        zeros = xp.zeros(result.source.shape, dtype=result.source.dtype, device=dev)
        counts = newton_cg_vs_gradient_descent(
            result.source, xp.asarray(result.observed, device=dev), zeros, result.initial,
            max_gd=gd_steps)
        print_fit_counts(counts, GTOL, log_line)
