"""Linear algebra on the tape, as ``numpy.linalg``: ``import npdeq.linalg`` or use
``npdeq.linalg.X``.

Norms (``norm``, ``vector_norm``, ``matrix_norm``, with gradient 0 at the zero vector),
``solve`` (batched, vectors or matrices on the right), ``inv``, ``det``, ``slogdet``, the
decompositions ``cholesky``, ``eigh`` and ``eigvalsh``, and the
products and views NumPy also lists here (``matmul``, ``outer``, ``matrix_transpose``,
``diagonal`` and ``trace`` of the last two axes). Every function accepts Tensors or raw
arrays of any supported namespace and returns Tensors; gradients of any order work. As in
NumPy, only ``matmul``, ``einsum``, ``outer`` and ``trace`` are also at the package top
level.

Example:
    >>> import numpy as np, npdeq
    >>> x = npdeq.Tensor(np.zeros(3), requires_grad=True)
    >>> npdeq.linalg.norm(x).backward()
    >>> x.grad.numpy()
    array([0., 0., 0.])
"""

from npdeq.autodiff.ops.decompositions import EighResult, cholesky, eigh, eigvalsh
from npdeq.autodiff.ops.linalg import matmul, outer
from npdeq.autodiff.ops.linalg_functions import (SlogdetResult, det, diagonal, inv,
                                                 matrix_norm, matrix_transpose, norm, slogdet,
                                                 solve, trace, vector_norm)

__all__ = ["norm", "vector_norm", "matrix_norm", "solve", "inv", "det", "slogdet",
           "SlogdetResult", "cholesky", "eigh", "eigvalsh", "EighResult", "matmul", "outer",
           "matrix_transpose", "diagonal", "trace"]
