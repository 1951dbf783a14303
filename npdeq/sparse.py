"""Sparse-dense products on the tape, for graph models (``torch.sparse`` for PyTorch users).

``npdeq.sparse.mm(A, X)`` multiplies a constant SciPy (or ``cupyx``) sparse matrix by a Tensor
and back-propagates ``A.T @ g`` into ``X``. SciPy is imported only when a SciPy matrix is
passed: it is not a dependency of npdeq.
"""

from npdeq.autodiff.ops.sparse import mm

__all__ = ["mm"]
