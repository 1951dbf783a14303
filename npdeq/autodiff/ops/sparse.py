"""Products of a constant sparse matrix with a Tensor, for graph models: ``mm(A, X)`` with
``A`` a SciPy sparse matrix (NumPy inputs) or a ``cupyx.scipy.sparse`` matrix (CuPy), forward
beside its VJP (``A.T @ g``, itself a sparse product, so gradients of any order work). Not
exported at the package top level: :mod:`npdeq.sparse`.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops.util import raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["mm"]

# A travels as a keyword: it is a constant, and not an array of the tape's namespace.
_sparse_mm = primitive(lambda x, A, transpose=False: backend.sparse_matmul(A, x, transpose),
                       name="sparse.mm")
defvjp(_sparse_mm, lambda g, ans, x, A, transpose=False: _sparse_mm(
    g, A=A, transpose=not transpose))


def mm(A: Any, X: Any) -> Tensor:
    """The product ``A @ X`` of a sparse matrix ``A`` (constant: no gradient for its values)
    and a dense Tensor or array ``X`` of shape ``(n,)`` or ``(n, k)``, as ``torch.sparse.mm``
    (PyTorch) or ``A @ X`` (SciPy). ``A`` is a SciPy sparse matrix or array (CSR is the fast
    format) for NumPy ``X``, a ``cupyx.scipy.sparse`` matrix for CuPy ``X``; other namespaces
    gather and add in their own functions. The gradient of ``X`` is ``A.T @ g``.

    Raises:
        TypeError: ``A`` not a sparse matrix, ``X`` not an array, or ``A`` and ``X`` of
            different dtypes.
        ValueError: shapes that do not align.

    Example:
        >>> import numpy as np, scipy.sparse, npdeq, npdeq.sparse
        >>> A = scipy.sparse.csr_matrix(np.array([[0., 2.], [1., 0.]]))
        >>> npdeq.sparse.mm(A, np.array([[1.], [3.]])).numpy()
        array([[6.],
               [1.]])
    """
    if not backend.is_sparse_matrix(A):
        raise TypeError(f"sparse.mm: A must be a SciPy or CuPy sparse matrix (e.g. "
                        f"scipy.sparse.csr_matrix), got {type(A).__name__}; for dense "
                        "arrays use npdeq.matmul")
    x = raw(X)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"sparse.mm: X must be a Tensor or an array, got {type(X).__name__}")
    if len(A.shape) != 2 or x.ndim not in (1, 2) or A.shape[1] != x.shape[0]:
        raise ValueError(f"sparse.mm: shapes {tuple(A.shape)} (A) and {tuple(x.shape)} (X) "
                         f"are not aligned: X must be (n,) or (n, k) with n = A.shape[1]")
    # Dtype names compared across libraries ('float64' and array_api_strict.float64).
    x_dtype = str(x.dtype).rsplit(".", 1)[-1]
    if str(A.dtype) != x_dtype:
        raise TypeError(f"sparse.mm: A has dtype {A.dtype} and X {x_dtype}; convert one "
                        "(e.g. A.astype(X.dtype)) so the result's dtype is the one you chose")
    return _sparse_mm(X, A=A)
