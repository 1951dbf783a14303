"""Fixtures of the Dask tests: the chunk backend (NumPy, and CuPy on a GPU).

Dask needs chunks that implement NumPy's protocols, so these tests run on NumPy chunks and,
where a GPU is present, on CuPy chunks (``array_api_strict`` arrays cannot be Dask chunks).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="the dask extra is not installed")

from npdeq import backend  # noqa: E402


@pytest.fixture(params=[pytest.param("numpy", id="numpy"),
                        pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)])
def chunk_lib(request):
    """The module of the chunks: ``numpy`` or ``cupy``."""
    if request.param == "numpy":
        return np
    if not backend.cupy_available():
        pytest.skip("CuPy with a CUDA GPU is not available")
    import cupy

    return cupy


@pytest.fixture
def to_dask(chunk_lib):
    """``to_dask(a, chunks)``: a NumPy array as a Dask array of ``chunk_lib`` chunks."""
    import dask.array as da

    def convert(a, chunks):
        return da.from_array(chunk_lib.asarray(a), chunks=chunks, asarray=False)
    return convert


@pytest.fixture
def host():
    """``host(a)``: a computed array back on the host, as NumPy."""
    return lambda a: a.get() if hasattr(a, "get") else np.asarray(a)
