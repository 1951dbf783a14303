"""Shared fixtures: the ``xp`` array-namespace fixture and hypothesis profiles.

``xp`` runs a test on NumPy, on ``array_api_strict`` (default device and the fake
``device1``, which catches arrays created on the wrong device), and on CuPy when a GPU is
present (marker ``gpu``). ``to_xp`` moves a NumPy array to the current namespace and device;
``check_array`` asserts the namespace, device, dtype and shape of a result.
"""

from __future__ import annotations

import os

import array_api_strict
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from npdeq import backend
from npdeq.autodiff import Tensor

array_api_strict.set_array_api_strict_flags(boolean_indexing=False, data_dependent_shapes=False)

settings.register_profile(
    "ci", max_examples=50, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev", max_examples=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_BACKENDS = [
    pytest.param(("numpy", None), id="numpy"),
    pytest.param(("array_api_strict", None), id="strict"),
    pytest.param(("array_api_strict", "device1"), id="strict-device1"),
    pytest.param(("cupy", None), id="cupy", marks=pytest.mark.gpu),
]


@pytest.fixture(params=_BACKENDS)
def _backend(request):
    name, dev = request.param
    if name == "numpy":
        return backend.array_namespace(np.zeros(0)), "cpu"
    if name == "array_api_strict":
        device = array_api_strict.Device(dev) if dev else array_api_strict.Device("CPU_DEVICE")
        return array_api_strict, device
    if not backend.cupy_available():
        pytest.skip("CuPy with a CUDA GPU is not available")
    import cupy

    ns = backend.array_namespace(cupy.zeros(0))
    return ns, cupy.cuda.Device(0)


@pytest.fixture
def xp(_backend):
    """The array namespace under test (``array_api_compat.numpy``, ``array_api_strict``, ...)."""
    return _backend[0]


@pytest.fixture
def xp_device(_backend):
    """The device arrays of the current test are created on."""
    return _backend[1]


@pytest.fixture
def to_xp(_backend):
    """``to_xp(a, dtype=None)``: a NumPy array (or nested list) in the current namespace/device."""
    ns, device = _backend

    def convert(a, dtype=None):
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        return ns.asarray(a, device=device)

    return convert


@pytest.fixture
def check_array(_backend):
    """``check_array(x, shape=None, dtype=None)``: assert ``x`` is in the current namespace and
    on the current device (and has ``shape``/``dtype`` when given)."""
    ns, device = _backend

    def check(x, shape=None, dtype=None):
        # Unwrap Tensors only: NumPy arrays have a ``.data`` attribute too (a memoryview).
        x = x.data if isinstance(x, Tensor) else x
        assert backend.array_namespace(x) is ns, (
            f"result is in {backend.namespace_name(backend.array_namespace(x))}, "
            f"expected {backend.namespace_name(ns)}")
        assert backend.device(x) == device, f"result on {backend.device(x)}, expected {device}"
        if shape is not None:
            assert tuple(x.shape) == tuple(shape), f"shape {tuple(x.shape)} != {tuple(shape)}"
        if dtype is not None:
            assert x.dtype == dtype, f"dtype {x.dtype} != {dtype}"

    return check
