"""Matrix decompositions of :mod:`npdeq.linalg`: ``cholesky``, ``eigh`` and ``eigvalsh``,
each forward beside its VJP rules, written with npdeq's ops so gradients of any order work.

Like NumPy, they read the lower triangle of each matrix; their gradients are those of a
symmetric input (PyTorch's and HIPS autograd's convention), so check them through a
symmetric function of the input (``(a + a.mT) / 2``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from npdeq import backend
from npdeq.autodiff.ops.elementwise import mul
from npdeq.autodiff.ops.linalg import matmul
from npdeq.autodiff.ops.linalg_functions import matrix_transpose, solve
from npdeq.autodiff.ops.shape import expand_dims, tril
from npdeq.autodiff.ops.util import check_square, ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["cholesky", "eigh", "eigvalsh", "EighResult"]


def _eye_like(a: Any) -> Any:
    a = raw(a)
    xp = ns(a)
    return xp.eye(a.shape[-1], dtype=a.dtype, device=backend.device(a))


@primitive
def cholesky(a):
    """The lower Cholesky factor ``L`` of each symmetric positive-definite matrix (``a = L Lᵀ``),
    as ``numpy.linalg.cholesky``; the library's ``LinAlgError`` if one is not positive definite."""
    check_square(a, "cholesky")
    return ns(a).linalg.cholesky(a)


def _cholesky_vjp(g, ans, a):
    # Murray (2016): Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), Φ the lower triangle with half its diagonal.
    lt = matrix_transpose(ans)
    phi = tril(matmul(lt, g))
    phi = phi - 0.5 * mul(phi, _eye_like(ans))
    left = solve(lt, phi)                                      # L⁻ᵀ Φ
    s = matrix_transpose(solve(lt, matrix_transpose(left)))   # L⁻ᵀ Φ L⁻¹
    return 0.5 * (s + matrix_transpose(s))


defvjp(cholesky, _cholesky_vjp)


def _eigh_part(a, part):
    check_square(a, "eigh")
    return ns(a).linalg.eigh(a)[part]


_eigvalsh = primitive(lambda a: _eigh_part(a, 0), name="eigvalsh")
_eigvecs = primitive(lambda a: _eigh_part(a, 1), name="eigh")


def _eigvalsh_vjp(g, ans, a):
    # Ā = V diag(w̄) Vᵀ
    v = _eigvecs(a)
    return matmul(v * expand_dims(g, -2), matrix_transpose(v))


def _eigvecs_vjp(g, ans, a):
    # Ā = V (F ∘ Vᵀ V̄) Vᵀ with F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it.
    w = _eigvalsh(a)
    eye = _eye_like(a)
    gaps = expand_dims(w, -2) - expand_dims(w, -1) + eye
    f = (1.0 / gaps) * (1.0 - eye)  # the Tensor first: strict arrays do not take Tensors
    inner = f * matmul(matrix_transpose(ans), g)
    return matmul(matmul(ans, inner), matrix_transpose(ans))


defvjp(_eigvalsh, _eigvalsh_vjp)
defvjp(_eigvecs, _eigvecs_vjp)


class EighResult(NamedTuple):
    """``eigh``'s result: eigenvalues in ascending order and the eigenvectors as columns."""

    eigenvalues: Tensor
    eigenvectors: Tensor


def eigvalsh(a: Any) -> Tensor:
    """The eigenvalues of each symmetric matrix, ascending, as ``numpy.linalg.eigvalsh``.

    Example:
        >>> import numpy as np, npdeq.linalg
        >>> npdeq.linalg.eigvalsh(np.array([[2., 1.], [1., 2.]])).numpy()
        array([1., 3.])
    """
    return _eigvalsh(a)


def eigh(a: Any) -> EighResult:
    """Eigenvalues (ascending) and eigenvectors (columns) of each symmetric matrix, as
    ``numpy.linalg.eigh``. The eigenvectors' gradient divides by eigenvalue gaps: it is
    undefined for repeated eigenvalues (as in every framework)."""
    return EighResult(_eigvalsh(a), _eigvecs(a))
