"""The adjoint solve of implicit differentiation: ``u = J^T u + g``, i.e. ``(I - J^T) u = g``.

``J^T v`` is available only as a VJP of one recorded call of ``f`` (a function on raw
``(B, D)`` arrays here). The backward solver is any registered fixed-point solver, started
from zeros; ``'gmres'``: batched GMRES on ``(I - J^T) u = g`` with one VJP per product (the
equation is linear, so a Krylov method converges where plain iteration is slow); or
``'direct'``: build each sample's dense ``J^T`` from ``D`` VJPs and solve exactly (for small
states). An iterative solver's samples that miss their tolerance (plain iteration diverges where
``f`` is solvable but not contractive at z*, and stalls where it contracts slowly) are
solved again by GMRES on the same linear equation, started from their best iterate
(``fallback='gmres'``, the default; ``fallback=None`` turns it off); the statistics say
which samples fell back. A solve that still misses its tolerance or meets a non-finite
value is flagged in its statistics and raises one
:class:`~npdeq.exceptions.ConvergenceWarning` (:mod:`npdeq.solver.failure`); it never
returns zeros in place of an answer.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

from npdeq import backend
from npdeq.exceptions import ConvergenceWarning
from npdeq.backend import Array
from npdeq.backend.checks import check_real
from npdeq.solver import SolverStat, get_solver, gmres
from npdeq.solver.entry import check_stop_mode
from npdeq.solver.failure import warn_if_failed

__all__ = ["adjoint_solve", "check_adjoint_args", "store_backward_stats", "ADJOINT_DEFAULTS",
           "ADJOINT_OPTIONS", "DIRECT_MAX_DIM", "FALLBACKS", "LINEAR_SOLVERS"]

# DEQBase's defaults for the backward pass (b_tol, b_max_iter, b_stop_mode), as TorchDEQ.
ADJOINT_DEFAULTS = {"tol": 1e-6, "max_iter": 40, "stop_mode": "abs"}
# 'direct' costs D VJPs and a (B, D, D) array: beyond this it is the wrong tool.
DIRECT_MAX_DIM = 4096
# Backward solvers that treat the adjoint equation as the linear system it is, rather than
# as a fixed point; their arguments are checked here, not by a registered solver.
# Each with the arguments it takes.
# The fallback's GMRES aims this far below the first solver's relative tolerance times a
# round's starting ||u||, so that ||u|| changing a little in the round leaves it within.
REL_FALLBACK_MARGIN = 0.9
LINEAR_SOLVERS = {"direct": (), "gmres": ("tol", "max_iter", "stop_mode", "restart")}
# What an iterative backward solver does with the samples it leaves unconverged.
FALLBACKS = ("gmres", None)
# Arguments adjoint_solve takes itself, besides the backward solver's, for any b_solver.
ADJOINT_OPTIONS = ("fallback",)

# (solver, argument names) pairs whose signature check passed.
_CHECKED: set = set()

_NOT_CONVERGED = ("IFT backward solve did not reach its tolerance for some samples; the "
                  "gradient is approximate (see the backward statistics 'converged'/'abs_lowest'"
                  "; raise b_max_iter or use b_solver='gmres' or 'direct')")
_NONFINITE = ("IFT backward solve met non-finite values for some samples (see the backward "
              "statistics 'nonfinite'); is the forward map contractive at the fixed point?")


def check_adjoint_args(b_solver: Any, b_solver_kwargs: dict | None) -> None:
    """Check a backward solver and its arguments before any solve, as :func:`adjoint_solve`
    will use them, so a typo fails at the call that sets up the gradient, not at
    ``backward()``.

    Args:
        b_solver: a registered solver name, ``'gmres'`` or ``'direct'``.
        b_solver_kwargs: its arguments, plus ``fallback`` for a registered solver.

    Raises:
        ValueError: an unknown solver, an argument it does not take (``'direct'`` takes only
            the shared ``tol``/``max_iter``/``stop_mode``, which it does not need), or a bad
            ``fallback``.
        TypeError: ``b_solver_kwargs`` is not a dict.

    Example:
        >>> check_adjoint_args('anderson', {'m': 5, 'tol': 1e-8})
        >>> check_adjoint_args('anderson', {'mm': 5})
        Traceback (most recent call last):
        ...
        ValueError: b_solver_kwargs: b_solver 'anderson' takes no argument 'mm' (it takes ...)
    """
    if b_solver_kwargs is not None and not isinstance(b_solver_kwargs, dict):
        raise TypeError(f"b_solver_kwargs must be a dict or None, got "
                        f"{type(b_solver_kwargs).__name__}")
    kwargs = dict(b_solver_kwargs or {})
    if b_solver in LINEAR_SOLVERS:
        allowed = LINEAR_SOLVERS[b_solver] or tuple(ADJOINT_DEFAULTS)
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            *first, last = allowed
            raise ValueError(f"b_solver={b_solver!r} takes {', '.join(first)} and {last}"
                             f"{' (unused)' if not LINEAR_SOLVERS[b_solver] else ''}; got "
                             f"{', '.join(unknown)}")
        return
    solver = get_solver(b_solver)
    fallback = kwargs.pop("fallback", "gmres")
    if fallback not in FALLBACKS:
        raise ValueError(f"b_solver_kwargs: fallback must be one of {FALLBACKS}, got "
                         f"{fallback!r}")
    key = (solver, frozenset(kwargs))
    if key in _CHECKED:  # inspect.signature costs tens of microseconds per call
        return
    try:
        signature = inspect.signature(solver)
    except (TypeError, ValueError):  # no signature to check against (a builtin, say)
        return
    try:
        signature.bind(None, None, **kwargs)
        if len(_CHECKED) < 256:
            _CHECKED.add(key)
    except TypeError:
        params = [p.name for p in list(signature.parameters.values())[2:]
                  if p.kind is not inspect.Parameter.VAR_KEYWORD]
        unknown = [k for k in kwargs if k not in params]
        what = f"no argument {unknown[0]!r}" if unknown else "these arguments"
        raise ValueError(f"b_solver_kwargs: b_solver {b_solver!r} takes {what} (it takes "
                         f"{', '.join(sorted(params))}; and fallback)") from None


def adjoint_solve(vjp_z: Callable[[Array], Array], g: Array,
                  b_solver: str = "fixed_point_iter", b_solver_kwargs: dict | None = None,
                  writer: Callable[[dict], Any] | None = None) -> tuple[Array, dict]:
    """Solve ``u = vjp_z(u) + g`` per sample.

    Args:
        vjp_z: maps a ``(B, D)`` array ``v`` to ``J^T v`` (``(B, D)``), J = df/dz at z*.
        g: ``(B, D)`` incoming cotangent.
        b_solver: a registered solver name (``'fixed_point_iter'``, ``'anderson'``,
            ``'broyden'``, ...), ``'gmres'`` or ``'direct'``.
        b_solver_kwargs: solver arguments (``tol``, ``max_iter``, ``stop_mode``, ``m``,
            ``lam``, ...); missing ``tol``/``max_iter``/``stop_mode`` default to
            :data:`ADJOINT_DEFAULTS`. For ``'gmres'``: ``max_iter`` bounds the VJPs,
            ``restart`` (default 20) is the Krylov dimension of a cycle, and the tolerance is
            on ``||g - (I - J^T) u||``, absolute (``stop_mode='abs'``) or relative to
            ``||g||`` (``'rel'``). For a registered (iterative) solver, ``fallback``
            (``'gmres'``, the default, or ``None``): what to do with the samples it leaves
            unconverged (GMRES with the same ``tol``, ``stop_mode`` and ``max_iter``, from
            their best iterate; a relative ``tol`` keeps the first solver's measure,
            relative to ``||J^T u + g||``, not ``||g||``).
        writer: called with the statistics of the solve.

    Returns:
        ``(u, info)``: ``u`` is ``(B, D)`` in ``g``'s namespace and device; ``info`` the
        solver's statistics (per-sample ``converged``, ``nonfinite``, ``abs_lowest``, ...).
        ``info['fallback']`` ``(B,)`` bool says which samples were solved again by GMRES
        (never any after ``'direct'`` or ``'gmres'``; their statistics are GMRES's, and
        ``nfe`` counts the VJPs of both solves).

    Raises:
        ValueError: an unknown solver or ``fallback``, ``'direct'`` with
            ``D > DIRECT_MAX_DIM``, or an argument ``'gmres'`` does not take.

    Example:
        >>> import numpy as np
        >>> J = np.array([[0.5, 0.2], [0.0, 0.8]])                      # (D, D)
        >>> g = np.ones((3, 2))                                         # (B, D)
        >>> u, info = adjoint_solve(lambda v: v @ J, g, 'gmres', {'tol': 1e-12})
        >>> bool(np.allclose(u @ (np.eye(2) - J), g)), info['nfe']
        (True, 3)
    """
    check_adjoint_args(b_solver, b_solver_kwargs)
    kwargs = dict(ADJOINT_DEFAULTS)
    kwargs.update(b_solver_kwargs or {})
    fallback = kwargs.pop("fallback", "gmres")
    xp = backend.array_namespace(g)
    # tol = 0 asks for exactly max_iter steps: nothing to fall back from, nothing to warn.
    run_to_max_iter = b_solver != "direct" and kwargs["tol"] == 0
    all_converged = False  # known True only after the host read below (then not read again)
    with backend.ignore_float_errors():  # non-finite values are flagged in the statistics
        if b_solver == "direct":
            u, info = _direct_solve(vjp_z, g, xp)
        elif b_solver == "gmres":
            u, info = _gmres_solve(vjp_z, g, xp, kwargs)
        else:
            solver = get_solver(b_solver)
            with warnings.catch_warnings():
                # The solver's own warning would say "forward"-ish things; one clear
                # warning about the backward solve is raised below instead.
                warnings.simplefilter("ignore", ConvergenceWarning)
                u, _, info = solver(lambda v: vjp_z(v) + g, xp.zeros_like(g), **kwargs)
            if fallback == "gmres" and not run_to_max_iter:
                all_converged = not backend.to_scalar(backend.any_true(~info["converged"]))
                if not all_converged:
                    u, info = _fall_back_to_gmres(vjp_z, g, xp, kwargs, u, info)
    if "fallback" not in info:
        info["fallback"] = xp.zeros_like(info["converged"])
    # A solve run to max_iter on purpose, or one known to have converged everywhere, is
    # checked for non-finite values only.
    warn_if_failed(info, _NONFINITE,
                   None if run_to_max_iter or all_converged else _NOT_CONVERGED)
    if writer is not None:
        writer(info)
    return u, info


def store_backward_stats(info: dict, stats: dict) -> None:
    """Put a backward solve's statistics where the forward statistics ``info`` keep them.

    ``info['backward']`` holds the adjoint solve of the gradient (``stats['order']`` 1 or
    absent); the solves that higher derivatives add go to ``info['backward_higher']``, a
    dict from the order (2, 3, ...) to the latest statistics of that order.

    Example:
        >>> info = {'backward': None}
        >>> store_backward_stats(info, {'nstep': 4, 'order': 1})
        >>> store_backward_stats(info, {'nstep': 6, 'order': 2})
        >>> info['backward']['nstep'], info['backward_higher'][2]['nstep']
        (4, 6)
    """
    order = stats.get("order", 1)
    if order == 1:
        info["backward"] = stats
    else:
        info.setdefault("backward_higher", {})[order] = stats


def _fall_back_to_gmres(vjp_z, g, xp, kwargs, u, info):
    """Solve the unconverged samples again by GMRES from their best (finite) iterate.

    Every VJP is over the whole batch anyway, so GMRES runs on all samples; the converged
    ones start below their tolerance and stop at once, and keep their first answer. The
    tolerance is the first solver's, in its measure (:func:`_gmres_relative` for
    ``stop_mode='rel'``).
    """
    failed = xp.logical_not(info["converged"])
    start = xp.where(xp.isfinite(u), u, xp.zeros_like(u))
    gmres_kwargs = {k: kwargs[k] for k in ("tol", "max_iter", "stop_mode")}
    if check_stop_mode(kwargs["stop_mode"], owner="b_solver_kwargs") == "rel":
        u_gmres, stats = _gmres_relative(vjp_z, g, xp, gmres_kwargs, start)
    else:
        u_gmres, stats = _gmres_solve(vjp_z, g, xp, gmres_kwargs, x0=start)
    merged = SolverStat(info)
    for key in ("abs_lowest", "rel_lowest", "converged", "nonfinite"):
        merged[key] = xp.where(failed, stats[key], info[key])
    merged["nstep"] = xp.where(failed, info["nstep"] + stats["nstep"], info["nstep"])
    merged["nfe"] = info["nfe"] + stats["nfe"]
    merged["fallback"] = failed
    return backend.select_rows(failed, u_gmres, u), merged


def _gmres_relative(vjp_z, g, xp, kwargs, start):
    """GMRES from ``start`` until ``||g - (I - J^T) u|| <= tol * ||u||`` per sample.

    That is the fixed-point solvers' relative measure (``||J^T u + g||`` is ``||u||`` up to
    the residual), often several times looser than ``tol * ||g||``, GMRES's own relative
    tolerance. GMRES takes absolute thresholds, so each round gets ``tol * ||u||`` at its
    start, a little lower; a start far from the solution (a diverged fixed-point iterate,
    ``||u||`` many times ``||u*||``) ends its round above ``tol`` in that measure and starts
    another from where it ended, until every sample meets it or the ``max_iter`` VJPs are
    spent. Samples above ``tol`` at the end are not converged.
    """
    tol = check_real("tol", kwargs["tol"], 0.0)
    g_norm = _safe_norms(xp, g)
    budget, rounds, x = kwargs["max_iter"], [], start
    while True:
        x_norm = _safe_norms(xp, x)
        scale = xp.where(xp.isfinite(x_norm) & (x_norm > 0), x_norm,
                         xp.where(xp.isfinite(g_norm), g_norm, 0.0))
        atol = xp.astype(REL_FALLBACK_MARGIN * tol * scale, _working_dtype(xp, g))
        x, stats = _gmres_solve(vjp_z, g, xp, dict(kwargs, max_iter=budget, atol=atol), x0=x)
        budget -= stats["nfe"]
        rounds.append(stats)
        done = xp.logical_and(stats["converged"], stats["rel_lowest"] <= tol)
        settled = xp.logical_or(done, stats["nonfinite"])
        if budget < 2 or stats["nfe"] == 0 or backend.to_scalar(xp.all(settled)):
            break
    total = SolverStat(stats)
    total["converged"] = done
    total["nstep"] = sum((r["nstep"] for r in rounds[1:]), rounds[0]["nstep"])
    total["nfe"] = sum(r["nfe"] for r in rounds)
    return x, total


def _working_dtype(xp, a):
    """The dtype GMRES computes in for ``a`` (float16 is solved in float32)."""
    return xp.float32 if str(a.dtype) == "float16" else a.dtype


def _safe_norms(xp, a):
    """``(B,)`` Euclidean norms of the rows of ``a`` in GMRES's working dtype, scaled by
    each row's largest entry so that a finite norm does not overflow (float16's squares
    overflow above 256); a row with an infinity or NaN gives inf or NaN."""
    a = xp.astype(a, _working_dtype(xp, a))
    big = xp.max(xp.abs(a), axis=-1)
    usable = xp.logical_and(xp.isfinite(big), big > 0)
    unit = a / xp.where(usable, big, xp.ones_like(big))[:, None]
    return xp.where(usable, big * xp.linalg.vector_norm(unit, axis=-1), big)


def _gmres_solve(vjp_z, g, xp, kwargs, x0=None):
    """GMRES on ``(I - J^T) u = g`` with the adjoint's ``tol``/``stop_mode``; an ``atol``
    in ``kwargs`` (per sample) replaces the relative tolerance."""
    tol = check_real("tol", kwargs["tol"], 0.0)
    stop_mode = check_stop_mode(kwargs["stop_mode"], owner="b_solver='gmres'")
    if "atol" in kwargs:
        tolerances = {"tol": 0.0, "atol": kwargs["atol"]}
    elif stop_mode == "abs":
        tolerances = {"tol": 0.0, "atol": tol}
    else:
        tolerances = {"tol": tol}
    u, stats = gmres(lambda v: v - vjp_z(v), g, x0=x0, max_iter=kwargs["max_iter"],
                     restart=kwargs.get("restart", 20), **tolerances)
    # g - (I - J^T) u = (J^T u + g) - u is the fixed-point residual the other backward
    # solvers report. Their relative one divides by ||J^T u + g||, which is ||u|| up to that
    # residual: ||u|| here, which needs no further VJP.
    residual = stats["residual"]
    rel = residual / (_safe_norms(xp, u) + 1e-8)
    return u, SolverStat(
        abs_lowest=residual, rel_lowest=rel,
        abs_trace=residual[:, None], rel_trace=rel[:, None],
        nstep=stats["nstep"], sradius=xp.zeros_like(residual),
        converged=stats["converged"], nonfinite=stats["nonfinite"], nfe=stats["nmatvec"])


def _direct_solve(vjp_z, g, xp):
    batch, dim = g.shape
    if dim > DIRECT_MAX_DIM:
        raise ValueError(
            f"b_solver='direct' builds a dense (B, D, D) Jacobian from D VJPs; D = {dim} is "
            f"above {DIRECT_MAX_DIM}: use an iterative b_solver such as 'anderson'")
    eye = xp.eye(dim, dtype=g.dtype, device=backend.device(g))
    # Column i of J^T (per sample) is J^T e_i: one VJP with the i-th basis vector everywhere.
    columns = [vjp_z(xp.broadcast_to(eye[i:i + 1, :], (batch, dim))) for i in range(dim)]
    system = eye - xp.stack(columns, axis=-1)
    try:
        u = xp.linalg.solve(system, g[..., None])[..., 0]
    except Exception:  # noqa: BLE001 - each library has its own LinAlgError type
        # A singular I - J^T (f not contractive at z*): the least-norm solution, flagged
        # below by its residual instead of a crash.
        u = (xp.linalg.pinv(system) @ g[..., None])[..., 0]
    finite = xp.all(xp.isfinite(u), axis=-1)
    residual = xp.linalg.vector_norm(vjp_z(u) + g - u, axis=-1)
    return u, _direct_stats(residual, g, finite, xp)


def _direct_stats(residual, g, finite, xp):
    scale = xp.linalg.vector_norm(g, axis=-1)
    rel = residual / (scale + 1e-9)
    ok = xp.logical_and(finite, xp.isfinite(residual))
    # A direct solve is exact up to conditioning; call it converged unless the residual is
    # far from rounding level relative to g.
    tolerance = 1e-4 if g.dtype == xp.float32 else 1e-9
    converged = xp.logical_and(ok, rel <= tolerance)
    nstep = xp.ones(residual.shape, dtype=xp.int64, device=backend.device(g))
    return {
        "abs_lowest": residual, "rel_lowest": rel,
        "abs_trace": residual[:, None], "rel_trace": rel[:, None],
        "nstep": nstep, "sradius": xp.zeros_like(residual),
        "converged": converged, "nonfinite": xp.logical_not(ok),
    }
