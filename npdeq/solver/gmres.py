"""Batched, restarted GMRES: one independent linear system ``A_i x_i = b_i`` per sample.

:func:`gmres` solves linear systems given only as a batched product ``matvec: (B, D) ->
(B, D)``: the IFT adjoint ``(I - J^T) u = g`` and the Newton steps of
:func:`~npdeq.solver.newton_krylov.newton_krylov` are its users. Every sample runs its own
Arnoldi process (classical Gram-Schmidt twice, as batched BLAS products) and its own
Givens-rotated least-squares problem, all samples at once: the basis is ``(B, D)`` slots of
one array, the rotated Hessenberg matrix a list of columns of ``(B,)`` arrays, so nothing
loops over the batch and nothing depends on data for its shape. A sample whose residual
reaches its threshold stops using new basis vectors (its next vectors are zeros) and, after
the cycle, stops moving; the loop ends when no sample is active or the budget of products is
spent (at most one host synchronisation per product, plus one).

:func:`gmres_solver` is the same method behind the fixed-point solver contract, registered
as ``'gmres'``: it solves ``z = func(z)`` for an affine ``func``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.backend import Array
from npdeq.backend.checks import check_int, check_real
from npdeq.solver.entry import check_solver_args, solver_entry
from npdeq.solver.state import check_result
from npdeq.solver.stats import REL_EPS, SolveTracker, SolverStat, start_solve

__all__ = ["gmres", "gmres_solver"]

# The default budget is 10 * D products, but never more than this many.
MAX_ITER_CAP = 1000
# A new column of the rotated Hessenberg matrix below this many epsilons of ||A v_j|| is a
# direction A maps into the span already built (to rounding).
COLLINEAR = 16


def gmres(matvec: Callable[[Array], Array], b: Array, x0: Array = None, tol: float = 1e-6,
          max_iter: int | None = None, restart: int = 20, atol: float | Array = 0.0
          ) -> tuple[Array, dict]:
    """Solve ``A_i x_i = b_i`` for every sample ``i`` by restarted GMRES.

    A sample converges when ``||b_i - A_i x_i|| <= max(tol * ||b_i||, atol)``, checked on the
    true residual (one extra product per restart cycle) and then frozen. A sample with
    ``b_i = 0`` gets ``x_i = 0`` (even from a nonzero ``x0``) without any product. When ``A``
    maps the current Krylov space into itself (a "happy breakdown") the sample's next basis
    vector is zero, never NaN.

    Args:
        matvec: the batched product ``v -> A v``, ``(B, D) -> (B, D)``, row ``i`` depending only
            on row ``i`` of ``v`` and linear in it.
        b: the right-hand sides, ``(B, D)``, real floating point.
        x0: initial guesses, ``(B, D)`` (default zeros, which costs no product).
        tol: tolerance relative to ``||b_i||`` (``>= 0``).
        max_iter: the most products ``A v`` in all (default ``min(10 * D, 1000)``).
        restart: Krylov dimension of a cycle (capped at ``D``).
        atol: absolute tolerance (``>= 0``), one for all samples or a ``(B,)`` array of
            per-sample ones in ``b``'s namespace (with ``tol = atol = 0`` the solve spends its
            whole budget, and only an exact solution counts as converged).

    Returns:
        ``(x, info)``: ``x`` is ``(B, D)`` in ``b``'s namespace and device; ``info`` a dict
        with per-sample ``residual`` ``(B,)`` (``||b_i - A_i x_i||`` of the returned ``x``, as
        last computed; for a sample whose products went non-finite, that of its last finite
        iterate, ``inf`` when there is none), ``converged`` and ``nonfinite`` ``(B,)`` bool
        (``A v`` or ``b`` was NaN/inf for the sample: it keeps its last finite iterate and is
        never converged), ``nstep`` ``(B,)`` (products spent while the sample was active) and
        ``nmatvec`` (an int, products in all).

    Counts and tolerances may be NumPy scalars. NumPy's floating-point warnings are silenced
    during the solve (non-finite products are reported in ``info['nonfinite']``). A float16
    system is solved in float32: ``matvec`` still sees and returns float16, ``x`` comes back
    float16, the residuals are float32.

    Raises:
        TypeError: ``b`` (or ``x0``) is not a real floating-point array; ``matvec`` returns
            something other than an array of ``b``'s namespace and dtype (checked at every
            product).
        ValueError: ``b`` is not 2-D, ``x0`` has another shape, or a bad ``tol``, ``atol``,
            ``max_iter`` or ``restart``; ``matvec`` returns another shape or device.

    Example:
        >>> import numpy as np
        >>> A = np.array([[[2.0, 1.0], [0.0, 3.0]], [[1.0, 0.0], [0.5, 1.0]]])  # (B, D, D)
        >>> b = np.array([[1.0, 1.0], [2.0, 0.0]])                              # (B, D)
        >>> x, info = gmres(lambda v: (A @ v[:, :, None])[:, :, 0], b, tol=1e-12)
        >>> bool(np.allclose(x, np.linalg.solve(A, b[:, :, None])[:, :, 0]))
        True
    """
    _check_operand(b, "b")
    if x0 is not None:
        _check_operand(x0, "x0")
        if tuple(x0.shape) != tuple(b.shape) or x0.dtype != b.dtype:
            raise ValueError(f"x0 must match b: shape {tuple(b.shape)}, dtype {b.dtype}; got "
                             f"shape {tuple(x0.shape)}, dtype {x0.dtype}")
        backend.check_same_namespace([b, x0], "gmres")
    tol = check_real("tol", tol, 0.0)
    atol = _check_atol(atol, b)
    dim = b.shape[1]
    max_iter = check_int("max_iter", max_iter, 0, none_ok=True)
    if max_iter is None:
        max_iter = min(10 * dim, MAX_ITER_CAP)
    restart = check_restart(restart)
    xp = backend.array_namespace(b)
    half = str(b.dtype) == "float16"
    if half:  # float16's range overflows the squared norms; linalg has no float16
        b = xp.astype(b, xp.float32)
        x0 = None if x0 is None else xp.astype(x0, xp.float32)
        product = checked_product(matvec, b, "matvec", xp.float16)
    else:
        product = checked_product(matvec, b, "matvec")
    with backend.ignore_float_errors():
        floor = (xp.full_like(b[:, 0], atol) if isinstance(atol, float)
                 else xp.astype(atol, b.dtype))
        threshold = xp.maximum(tol * _norm(xp, b), floor)
        x, info = solve_batched(product, b, x0, threshold, max_iter, min(restart, max(dim, 1)))
    return (xp.astype(x, xp.float16) if half else x), info


def _check_atol(atol: Any, b: Array) -> Any:
    """``atol`` as a float, or as a checked ``(B,)`` array of per-sample tolerances."""
    if not hasattr(atol, "shape") or tuple(atol.shape) == ():
        return check_real("atol", atol, 0.0)
    backend.check_same_namespace([b, atol], "gmres")
    xp = backend.array_namespace(b)
    if tuple(atol.shape) != tuple(b.shape[:1]):
        raise ValueError(f"atol must be a number or a ({b.shape[0]},) array of per-sample "
                         f"tolerances, got shape {tuple(atol.shape)}")
    if not backend.to_scalar(xp.all(xp.isfinite(atol) & (atol >= 0))):
        raise ValueError("atol must be finite and >= 0 for every sample, got negative, "
                         "infinite or NaN entries")
    return atol


def check_restart(restart: Any) -> int:
    """``restart`` as an int; ValueError unless it is an int >= 1."""
    return check_int("restart (the Krylov dimension of a cycle)", restart, 1)


def checked_product(matvec: Callable[[Array], Array], like: Array, name: str,
                    dtype: Any = None) -> Callable[[Array], Array]:
    """``matvec`` with its every result checked against ``like`` (a ``(B, D)`` array): an
    array of the same namespace, shape, dtype and device, else an error naming ``name``.
    With ``dtype`` (float16), ``matvec`` is called on and must return that dtype, and its
    results are cast back to ``like``'s."""
    xp = backend.array_namespace(like)
    shape, device = tuple(like.shape), backend.device(like)
    expected = like.dtype if dtype is None else dtype
    kind = type(like)

    def product(v: Any) -> Any:
        out = matvec(v if dtype is None else xp.astype(v, dtype))
        if (type(out) is not kind or tuple(out.shape) != shape or out.dtype != expected
                or backend.device(out) != device):
            check_result(out, shape, expected, xp, device, name)
        return out if dtype is None else xp.astype(out, like.dtype)

    return product


def _check_operand(a: Any, name: str) -> None:
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    xp = backend.array_namespace(a)
    if not xp.isdtype(a.dtype, "real floating"):
        raise TypeError(f"{name} has dtype {a.dtype}; gmres needs real floating point")
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (B, D), got {tuple(a.shape)}")


def _norm(xp: Any, a: Any) -> Any:
    return xp.sqrt(xp.vecdot(a, a))


def solve_batched(matvec: Callable[[Array], Array], b: Array, x0: Array, threshold: Array,
                  max_iter: int, m: int, final_residual: bool = True,
                  assume_active: bool = False) -> tuple[Array, dict]:
    """Restarted GMRES with per-sample absolute thresholds ``(B,)``; see :func:`gmres`.

    ``final_residual=False`` (Newton steps) trusts the rotated least-squares estimate when a
    cycle ends with no sample left to iterate, instead of paying one product for the true
    residual; ``assume_active=True`` skips the first host read (the caller knows some sample
    is above its threshold).
    """
    xp = backend.array_namespace(b)
    b_norm = _norm(xp, b)
    zero_b = b_norm == 0.0
    nonfinite = ~xp.isfinite(b_norm)
    nmatvec = 0
    if x0 is None:
        x, r, res = xp.zeros_like(b), b, b_norm
    elif max_iter == 0:
        x = backend.select_rows(~zero_b, x0, 0.0)
        r, res = b, xp.where(zero_b, 0.0, xp.full_like(b_norm, float("inf")))
    else:
        x = backend.select_rows(~zero_b, x0, 0.0)
        r = b - matvec(x)
        nmatvec = 1
        res = _norm(xp, r)
        nonfinite = nonfinite | ~xp.isfinite(res)
        res = xp.where(zero_b, 0.0, xp.where(xp.isfinite(res), res, float("inf")))
    nonfinite = nonfinite & ~zero_b
    converged = ~nonfinite & (zero_b | (res <= threshold))
    active = ~converged & ~nonfinite
    nstep = xp.zeros(b.shape[:1], dtype=xp.int64, device=backend.device(b))
    reserve = 1 if final_residual else 0  # a product kept back for the true residual
    while max_iter - nmatvec - reserve >= 1:
        if not assume_active and not backend.to_scalar(xp.any(active)):
            break
        assume_active = False
        steps = min(m, max_iter - nmatvec - reserve)
        cycle = _cycle(matvec, r, res, threshold, active, steps)
        nmatvec += cycle.products
        nonfinite = nonfinite | cycle.nonfinite
        use = active & ~nonfinite
        nstep = nstep + xp.astype(cycle.columns, xp.int64)
        x_new = backend.select_rows(use, x + cycle.step, x)
        restart = cycle.any_live and max_iter - nmatvec >= 2
        if not (final_residual or restart):
            # The cycle's estimate stands for the true residual (a Newton step needs no more).
            x = x_new
            res = xp.where(use, cycle.estimate, res)
            converged = converged | (use & (cycle.estimate <= threshold))
            break
        r_new = b - matvec(x_new)
        nmatvec += 1
        res_new = _norm(xp, r_new)
        finite = xp.isfinite(res_new)
        nonfinite = nonfinite | (use & ~finite)
        accept = use & finite
        x = backend.select_rows(accept, x_new, x)
        r = backend.select_rows(accept, r_new, r)
        res = xp.where(accept, res_new, res)
        nstep = nstep + xp.astype(accept, xp.int64)
        converged = converged | (accept & (res_new <= threshold))
        active = active & ~converged & ~nonfinite
    info = {"residual": res, "converged": converged & ~nonfinite, "nonfinite": nonfinite,
            "nstep": nstep, "nmatvec": nmatvec}
    return x, info


@dataclass(slots=True)
class _Cycle:
    """What one GMRES cycle returns (see :func:`_cycle`)."""

    step: Array            # (B, D) correction V y
    estimate: Array        # (B,) least-squares residual estimate of x + step
    nonfinite: Array       # (B,) bool: a product went non-finite for the sample
    columns: Array         # (B,) int: basis columns the sample uses (its products)
    products: int          # products computed
    any_live: bool         # some sample was still above its threshold


def _cycle(matvec: Callable[[Any], Any], r: Any, beta: Any, threshold: Any, active: Any,
           steps: int) -> _Cycle:
    """One GMRES(``steps``) cycle from a zero correction, residual ``r`` of norm ``beta``;
    only the ``active`` samples move. One host read per product."""
    xp = backend.array_namespace(r)
    eps = float(xp.finfo(r.dtype).eps)
    # The basis vectors, each a contiguous (B, D) slot; per_sample views them as each
    # sample's (steps + 1, D) matrix, so that the Gram-Schmidt projections and the final
    # combination are batched BLAS products over the whole basis.
    basis = xp.empty((steps + 1,) + tuple(r.shape), dtype=r.dtype, device=backend.device(r))
    per_sample = xp.permute_dims(basis, (1, 0, 2))
    basis[0, ...] = backend.select_rows(active, r / xp.where(beta > 0, beta, 1.0)[:, None], 0.0)
    rhs = [xp.where(active, beta, 0.0)]  # the rotated beta * e_1
    cosines, sines, columns_r = [], [], []
    live = active & (beta > 0)
    columns = xp.zeros(beta.shape, dtype=xp.int64, device=backend.device(r))
    nonfinite = xp.zeros_like(active)
    estimate = beta
    any_live = True
    for j in range(steps):
        w = matvec(basis[j, ...])
        w_norm = _norm(xp, w)
        # Classical Gram-Schmidt twice ("twice is enough": as orthogonal as modified
        # Gram-Schmidt), every sample at once: two products with the basis built so far per
        # pass, where modified Gram-Schmidt makes three passes over the state per vector.
        built = per_sample[:, :j + 1, :]
        h = None
        for _ in range(2):
            coefficients = (built @ w[:, :, None])[..., 0]  # (B, j + 1)
            w = w - (coefficients[:, None, :] @ built)[:, 0, :]
            h = coefficients if h is None else h + coefficients
        h_next = _norm(xp, w)
        # A v_j in the span already built (to rounding): the Krylov space is invariant, the
        # sample's least-squares solution is exact there; its next vector is zero, not w / 0.
        breakdown = ~(h_next > eps * w_norm)
        h_next = xp.where(breakdown, 0.0, h_next)
        basis[j + 1, ...] = backend.select_rows(
            live & ~breakdown, w / xp.where(breakdown, 1.0, h_next)[:, None], 0.0)
        column = [h[:, i] for i in range(j + 1)] + [h_next]
        for i in range(j):  # earlier rotations, then a new one zeroing h_next
            upper, lower = column[i], column[i + 1]
            column[i] = cosines[i] * upper + sines[i] * lower
            column[i + 1] = cosines[i] * lower - sines[i] * upper
        upper, lower = column[j], column[j + 1]
        radius = xp.hypot(upper, lower)
        # A v_j in A K_j to rounding (A singular on the Krylov space): the new direction
        # gains nothing. Rotating the right-hand side's entry down (c = 0, s = 1) keeps the
        # residual estimate, and the zero diagonal gives the direction no weight, where a
        # rounding-sized diagonal would give it a huge one.
        negligible = radius <= COLLINEAR * eps * w_norm  # False for NaN: that propagates
        nonzero = radius > 0
        safe = xp.where(nonzero, radius, 1.0)
        cosines.append(xp.where(negligible, 0.0, xp.where(nonzero, upper / safe, 1.0)))
        sines.append(xp.where(negligible, 1.0, xp.where(nonzero, lower / safe, 0.0)))
        column[j] = xp.where(negligible, 0.0, radius)
        columns_r.append(column[:j + 1])
        rhs.append(-sines[j] * rhs[j])
        rhs[j] = cosines[j] * rhs[j]
        residual = xp.abs(rhs[j + 1])
        bad = live & ~xp.isfinite(residual)
        good = live & ~bad
        nonfinite = nonfinite | bad
        columns = xp.where(good, j + 1, columns)
        estimate = xp.where(good, residual, estimate)
        live = good & (residual > threshold) & ~breakdown
        any_live = backend.to_scalar(xp.any(live))
        if not any_live:
            break
    return _Cycle(_correction(xp, per_sample, columns_r, rhs, columns), estimate, nonfinite,
                  columns, len(columns_r), any_live)


def _correction(xp: Any, per_sample: Any, columns_r: list, rhs: list, columns: Any) -> Any:
    """``V y`` with ``R y = g`` solved by back substitution, per sample over its own first
    ``columns`` columns (the others get ``y = 0``); ``per_sample`` is ``(B, k, D)``, each
    sample's basis vectors as rows."""
    n = len(columns_r)
    y = [None] * n
    for k in reversed(range(n)):
        acc = rhs[k]
        for col in range(k + 1, n):
            acc = acc - columns_r[col][k] * y[col]
        diagonal = columns_r[k][k]
        used = (columns > k) & (diagonal != 0)
        y[k] = xp.where(used, acc / xp.where(used, diagonal, 1.0), 0.0)
    weights = xp.stack(y, axis=1)[:, None, :]  # (B, 1, n)
    return (weights @ per_sample[:, :n, :])[:, 0, :]


@solver_entry
def gmres_solver(func: Callable[..., Any], x0: Any, max_iter: int = 50, tol: float = 1e-3,
                 stop_mode: str = "abs", indexing: Sequence[int] | None = None,
                 restart: int = 20, return_final: bool = False,
                 per_sample: bool = True) -> tuple[Any, list, SolverStat]:
    """Solve ``z = func(z)`` for an **affine** ``func`` (``z -> A z + c``) by restarted GMRES
    on ``(I - A) z = c``, per sample.

    Each cycle starts at the current iterate ``x`` with ``f(x)`` known, takes products
    ``(I - A) v = v - (f(x + s v) - f(x)) / s`` (``s = 1 + ||x||``, exact for affine maps),
    and ends by evaluating ``f`` at the new iterate, which the statistics observe: the
    iterations are ``x0`` and the end of each cycle. On a nonlinear ``func`` a cycle is one
    Newton step with a coarse difference Jacobian; use ``'newton_krylov'`` there.

    Args:
        func: ``func(z) -> z'`` on ``(B, ...)`` arrays, or ``func(*zs) -> tuple`` for a tuple
            state; affine in the state.
        %(x0)s
        max_iter: the most evaluations of ``func`` (products included).
        tol: convergence tolerance on the ``stop_mode`` residual ``||f(z) - z||`` (``0``: no
            early stop).
        %(stop_mode)s
        indexing: iterations (1-based: ``x0``, then each cycle's end) to record.
        restart: Krylov dimension of a cycle.
        %(return_final)s
        %(per_sample)s

    Returns:
        ``(z, trajectory, info)`` as :func:`~npdeq.solver.fixed_point_iter`; ``info['nfe']``
        counts every evaluation.

    Raises:
        ValueError: a bad ``restart`` or shared argument.
        TypeError: ``func`` returns another namespace, dtype or structure.

    Example:
        >>> import numpy as np
        >>> A = np.array([[0.9, 0.05], [0.0, 0.95]])
        >>> z, _, info = gmres_solver(lambda z: z @ A.T + 1.0, np.zeros((1, 2)), tol=1e-10)
        >>> bool(np.allclose(z, np.linalg.solve(np.eye(2) - A, np.ones(2)))), info['nfe']
        (True, 3)
    """
    max_iter, tol, stop_mode, steps, _ = check_solver_args(max_iter, tol, stop_mode, indexing)
    restart = check_restart(restart)
    f, x, restore, tracker = start_solve(func, x0, tol, stop_mode, steps, return_final, per_sample)
    xp = tracker.xp
    m = min(restart, max(x.shape[1], 1))
    if max_iter > 0:
        fx = f(x)
        tracker.nfe = 1
        while tracker.observe(x, fx) and max_iter - tracker.nfe >= 2:
            r = tracker.residual
            threshold = tol * (1.0 if stop_mode == "abs" else _norm(xp, fx) + REL_EPS)
            threshold = threshold * xp.ones_like(r[:, 0])
            base, f_base = x, fx
            scale = (1.0 + _norm(xp, x))[:, None]

            def matvec(v, base=base, f_base=f_base, scale=scale):
                return v - (f(base + scale * v) - f_base) / scale

            cycle = _cycle(matvec, r, _norm(xp, r), threshold, tracker.active,
                           min(m, max_iter - tracker.nfe - 1))
            tracker.nfe += cycle.products
            flag_nonfinite(tracker, cycle.nonfinite)
            x = tracker.next_iterate(x + backend.select_rows(~cycle.nonfinite, cycle.step, 0.0))
            fx = f(x)
            tracker.nfe += 1
    return tracker.finish(restore, "gmres_solver")


def flag_nonfinite(tracker: SolveTracker, flags: Array) -> None:
    """Freeze the samples for which an evaluation inside a step returned NaN/inf (the
    tracker sees only the iterates it observes)."""
    tracker.nonfinite = tracker.nonfinite | (tracker.active & flags)
    tracker.active = tracker.active & ~flags
    tracker.all_active = False
