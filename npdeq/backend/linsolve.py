"""Batched solves of linear systems with vector right-hand sides, in any namespace, at a
lower cost per call than ``numpy.linalg.solve`` on NumPy.

The standard's ``linalg.solve`` treats a 2-D ``b`` as a matrix, so vectors go through a
trailing axis.

``numpy.linalg.solve`` spends several microseconds in Python (argument conversion, type
promotion, an error-state context) around one LAPACK call per matrix; for the ``(B, m, m)``
systems of Anderson mixing (``m`` about 6), solved once per iteration, that is more than the
solve of a single small system. On NumPy the same generalized ufunc is called here directly
(the same LAPACK routine in the same precision, so the same results to the last bit), with
only the error state that turns a singular matrix into an exception.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npdeq.backend.namespace import Array, array_namespace

__all__ = ["solve_vectors"]

try:  # NumPy's generalized ufunc behind linalg.solve for vector right-hand sides
    from numpy.linalg import _umath_linalg

    _SOLVE: Any = _umath_linalg.solve
except (ImportError, AttributeError):  # pragma: no cover - a NumPy without it
    _SOLVE = None

_FLOAT_TYPES = (np.float32, np.float64)


def solve_vectors(a: Array, b: Array) -> Array:
    """Solve ``a[i] @ x[i] = b[i]`` for a batch of vectors: ``a`` ``(B, n, n)``, ``b``
    ``(B, n)``.

    On NumPy, for one real floating dtype, the result is ``numpy.linalg.solve``'s bit for bit
    (the same LAPACK call) at a fraction of its fixed cost.

    Raises:
        The library's ``LinAlgError`` (or equivalent) when a matrix is exactly singular.

    Example:
        >>> import numpy as np
        >>> solve_vectors(np.array([[[2.0, 0.0], [0.0, 4.0]]]), np.ones((1, 2))).tolist()
        [[0.5, 0.25]]
    """
    if (_SOLVE is not None and type(a) is np.ndarray and type(b) is np.ndarray
            and a.dtype == b.dtype and a.dtype.type in _FLOAT_TYPES):
        # As numpy.linalg.solve: computed in double precision (float32 too), and LAPACK
        # reports a singular matrix through the invalid-operation flag.
        try:
            with np.errstate(invalid="raise", over="ignore", divide="ignore", under="ignore"):
                x = _SOLVE(a, b[..., None], signature="dd->d")
        except FloatingPointError:
            raise np.linalg.LinAlgError("Singular matrix") from None
        return x[..., 0].astype(a.dtype, copy=False)
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.linalg.solve(a, b[..., None])[..., 0]
    return array_namespace(a, b).linalg.solve(a, b[..., None])[..., 0]
