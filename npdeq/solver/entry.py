"""Where every fixed-point solver starts: its shared arguments checked, its entry decorated.

:func:`check_solver_args` validates ``max_iter``, ``tol``, ``stop_mode``, ``indexing`` and
``tau`` once for all solvers; :func:`solver_entry` wraps each solver so that floating-point
warnings are silenced during the solve, a float16 state is solved in float32, and the
docstring's shared argument entries are filled in (:mod:`npdeq.solver.docs`).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

from npdeq import backend
from npdeq.backend.checks import as_count, check_int, check_real
from npdeq.solver.docs import shared_docs

__all__ = ["STOP_MODES", "SolverArgs", "check_solver_args", "check_stop_mode", "solver_entry"]

STOP_MODES = ("abs", "rel")


class SolverArgs(NamedTuple):
    """The shared solver arguments, checked and converted to Python numbers."""

    max_iter: int
    tol: float | None
    stop_mode: str
    indexing: list[int]
    tau: float


def check_solver_args(max_iter: Any, tol: Any = None, stop_mode: Any = "abs",
                      indexing: Any = None, tau: Any = 1.0) -> SolverArgs:
    """Validate the arguments the solvers share and return them as Python numbers
    (``indexing`` as a list, in the requested order, repeats kept).

    Counts accept anything :func:`operator.index` accepts (``int``, NumPy integers) but not
    bools; numbers anything ``float`` accepts (NumPy scalars, 0-d arrays) but not strings,
    bools or complex values. ``tol = 0`` asks for no early stop: only a sample whose residual
    is exactly zero converges, and running out of ``max_iter`` is not warned about.

    Raises:
        ValueError: ``max_iter`` not a non-negative int, ``tol`` negative, NaN or infinite,
            an unknown ``stop_mode``, ``tau`` outside ``(0, 1]``, or ``indexing`` entries
            that are not ints in ``1..max_iter``.

    Example:
        >>> import numpy as np
        >>> check_solver_args(np.int64(5), np.float32(0.5), "rel", [4, 2, 4])
        SolverArgs(max_iter=5, tol=0.5, stop_mode='rel', indexing=[4, 2, 4], tau=1.0)
    """
    # Plain Python numbers in range pass without the general checks (which build their
    # messages up front): this runs at every solve, twice per IFT training step.
    if not (type(max_iter) is int and max_iter >= 0):
        max_iter = check_int("max_iter", max_iter, 0)
    if tol is not None and not (type(tol) is float and 0.0 <= tol < math.inf):
        tol = check_real("tol", tol, 0.0)
    check_stop_mode(stop_mode)
    if not (type(tau) is float and 0.0 < tau <= 1.0):
        tau = check_real("tau", tau, 0.0, 1.0, low_open=True)
    steps = []
    for i in (indexing or ()):
        step = as_count(i)
        if step is None:
            raise ValueError(f"indexing entries must be ints (iterations 1..{max_iter}), "
                             f"got {i!r}")
        if not 1 <= step <= max(max_iter, 1):
            raise ValueError(f"indexing entry {step} is outside the iterations 1..{max_iter}")
        steps.append(step)
    return SolverArgs(max_iter, tol, stop_mode, steps, tau)


def check_stop_mode(stop_mode: Any, *, owner: str | None = None) -> str:
    """``stop_mode`` if it is ``'abs'`` or ``'rel'``.

    Raises:
        ValueError: anything else, named with its value (``owner`` first, when given).

    Example:
        >>> check_stop_mode('relative', owner='solve')
        Traceback (most recent call last):
        ...
        ValueError: solve: stop_mode must be one of ('abs', 'rel'), got 'relative'
    """
    if not isinstance(stop_mode, str) or stop_mode not in STOP_MODES:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}stop_mode must be one of {STOP_MODES}, got {stop_mode!r}")
    return stop_mode


def solver_entry(solver: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a fixed-point solver ``solver(func, x0, ...)``: the solve runs with NumPy's
    floating-point warnings silenced (non-finite values are reported through
    ``info['nonfinite']`` and one ConvergenceWarning instead, and ``func``'s own overflow
    warnings, which that report covers, are silenced too), and a float16 state is solved in
    float32 (float16's range overflows squared norms and ``linalg`` has no float16): ``func``
    still sees and returns float16, ``z`` and the trajectory come back float16, the statistics
    are float32. The docstring's ``%(name)s`` markers are filled in by
    :func:`~npdeq.solver.docs.shared_docs`."""
    solver = shared_docs(solver)

    @functools.wraps(solver)
    def run(func: Callable[..., Any], x0: Any, *args: Any, **kwargs: Any) -> Any:
        with backend.ignore_float_errors():
            half = _half_precision_positions(x0)
            if not half:
                return solver(func, x0, *args, **kwargs)
            return _solve_in_float32(solver, func, x0, half, args, kwargs)

    return run


def _half_precision_positions(x0: Any) -> set[int]:
    arrays = list(x0) if isinstance(x0, (tuple, list)) else [x0]
    half = set()
    for i, a in enumerate(arrays):
        if hasattr(a, "shape") and _is_half(getattr(a, "dtype", None)):
            half.add(i)
    return half


# (dtype type, dtype) -> whether it is float16 (a dtype's str() costs microseconds on every
# solve). The type comes first so that dtypes of different libraries are never compared.
_HALF: dict = {}


def _is_half(dtype: Any) -> bool:
    if dtype is None:
        return False
    key = (type(dtype), dtype)
    try:
        return _HALF[key]
    except KeyError:
        found = _HALF[key] = str(dtype) == "float16"
    except TypeError:  # an unhashable dtype
        found = str(dtype) == "float16"
    return found


def _solve_in_float32(solver, func, x0, half, args, kwargs):
    is_tuple = isinstance(x0, (tuple, list))
    arrays = list(x0) if is_tuple else [x0]
    xp = backend.check_same_namespace(arrays, "x0")

    def convert(state, dtype):
        if not is_tuple:
            return xp.astype(state, dtype)
        return tuple(xp.astype(a, dtype) if i in half else a for i, a in enumerate(state))

    def func32(*zs):
        out = func(*convert(zs, xp.float16)) if is_tuple else func(convert(zs[0], xp.float16))
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if isinstance(out, (tuple, list)) != is_tuple or len(outs) != len(arrays):
            return out  # the solver's own check names the structure
        for i in half:
            if hasattr(outs[i], "dtype") and str(outs[i].dtype) != "float16":
                where = f" for state {i}" if is_tuple else ""
                raise TypeError(f"func returned dtype {outs[i].dtype}{where}; its input has "
                                "dtype float16")
        return convert(out, xp.float32)

    z, trajectory, info = solver(func32, convert(x0, xp.float32), *args, **kwargs)
    return (convert(z, xp.float16), [convert(t, xp.float16) for t in trajectory], info)
