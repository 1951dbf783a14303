"""npdeq.sparse.mm: a constant SciPy (cupyx on CuPy) sparse matrix times a Tensor, against
the dense product, its VJP against A.T @ g and finite differences (second order through a
nonlinearity), in every namespace; argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings, strategies as st

import npdeq
import npdeq.sparse
from npdeq import backend
from npdeq.testing.gradcheck import check_grads


def _sparse_for(xp, a):
    """A SciPy CSR matrix, or cupyx's for CuPy."""
    a = scipy.sparse.csr_matrix(a)
    if backend.is_cupy(xp):
        import cupyx.scipy.sparse

        return cupyx.scipy.sparse.csr_matrix(a)
    return a


@settings(max_examples=8)
@given(m=st.integers(1, 5), n=st.integers(1, 5), k=st.sampled_from([None, 1, 3]),
       density=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2 ** 16))
def test_mm_matches_the_dense_product(xp, to_xp, check_array, m, n, k, density, seed):
    rng = np.random.default_rng(seed)
    a0 = scipy.sparse.random(m, n, density=density, random_state=rng).toarray()
    x0 = rng.standard_normal((n,) if k is None else (n, k))
    u = rng.standard_normal((m,) if k is None else (m, k))
    a = _sparse_for(xp, a0)
    x = npdeq.Tensor(to_xp(x0), requires_grad=True)
    out = npdeq.sparse.mm(a, x)
    check_array(out, shape=(a0 @ x0).shape, dtype=xp.float64)
    np.testing.assert_allclose(out.numpy(), a0 @ x0, rtol=1e-12, atol=1e-12)
    (g,) = npdeq.grad(out, [x], grad_outputs=to_xp(u))
    check_array(g, shape=x0.shape, dtype=xp.float64)
    np.testing.assert_allclose(g.numpy(), a0.T @ u, rtol=1e-12, atol=1e-12)
    # A nonlinearity after the product: the second order runs through the rule's own rule.
    check_grads(lambda t: npdeq.tanh(npdeq.sparse.mm(a, t)) ** 2, to_xp(x0), order=2,
                seed=seed)


def test_mm_accepts_raw_arrays_and_leaves_a_alone(xp, to_xp, check_array):
    a = _sparse_for(xp, np.array([[0.0, 2.0], [1.0, 0.0]]))
    out = npdeq.sparse.mm(a, to_xp(np.array([1.0, 3.0])))
    assert isinstance(out, npdeq.Tensor) and not out.requires_grad
    check_array(out, shape=(2,), dtype=xp.float64)
    np.testing.assert_array_equal(out.numpy(), [6.0, 1.0])
    assert a.format == "csr" and a.nnz == 2


@pytest.mark.parametrize("a, x, error, message", [
    (np.eye(2), np.ones(2), TypeError, "A must be a SciPy or CuPy sparse matrix .* got ndarray"),
    (scipy.sparse.eye(2, format="csr"), [1.0, 2.0], TypeError, "X must be a Tensor or an array"),
    (scipy.sparse.eye(2, 3, format="csr"), np.ones(2), ValueError,
     r"shapes \(2, 3\) \(A\) and \(2,\) \(X\) are not aligned"),
    (scipy.sparse.eye(2, format="csr"), np.ones((2, 2, 2)), ValueError, "are not aligned"),
    (scipy.sparse.eye(2, format="csr", dtype=np.float32), np.ones(2), TypeError,
     "A has dtype float32 and X float64"),
])
def test_mm_errors(a, x, error, message):
    with pytest.raises(error, match=message):
        npdeq.sparse.mm(a, x)


def test_mm_dtype_mismatch_in_every_namespace(xp, to_xp):
    a = _sparse_for(xp, np.eye(2, dtype=np.float32))
    with pytest.raises(TypeError, match="A has dtype float32 and X float64"):
        npdeq.sparse.mm(a, to_xp(np.ones(2)))
