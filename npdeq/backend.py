"""Array-namespace selection and the few helpers the array API standard lacks.

This is the only module of npdeq's core that may import NumPy, and nothing imports CuPy at
module level: :func:`cupy_available` looks it up lazily.

The rule for every module above this one: take array functions from the namespace of the
inputs (``xp = array_namespace(x)``), create new arrays on the inputs' device
(``xp.zeros(shape, dtype=x.dtype, device=device(x))``) and never call ``numpy`` directly.
The same code then runs on NumPy (CPU), CuPy (GPU) and ``array_api_strict``. Anything that
needs a library-specific fast path (strided sliding windows, scatter-add, random numbers,
host scalars) lives here, dispatched per namespace, with a portable fallback written in the
standard's functions.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "array_namespace",
    "device",
    "to_numpy",
    "to_scalar",
    "any_true",
    "host_flags",
    "solve_vectors",
    "cupy_available",
    "is_numpy",
    "is_numpy_array",
    "is_cupy",
    "namespace_name",
    "default_asarray",
    "sliding_windows",
    "fold_windows",
    "scatter_add",
    "random_normal",
    "random_uniform",
    "check_same_namespace",
]

# array_api_compat's lookup costs a few microseconds; the namespace depends only on the
# array's type, so it is cached per type (the tape calls this once per recorded op).
_NAMESPACE_BY_TYPE: dict[type, Any] = {}
# array_api_compat.numpy is loaded on first use, not at import: building it touches every
# NumPy submodule (numpy.testing, numpy.f2py, ...), about 0.1 s that ``import npdeq`` need
# not pay.
_NUMPY_NS: Any = None
_PY_SCALARS = (bool, int, float, complex)


def _numpy_namespace() -> Any:
    global _NUMPY_NS
    if _NUMPY_NS is None:
        _NUMPY_NS = importlib.import_module("array_api_compat.numpy")
        _NAMESPACE_BY_TYPE[np.ndarray] = _NUMPY_NS
    return _NUMPY_NS


def array_namespace(*arrays: Any) -> Any:
    """Return the array-API namespace shared by ``arrays``.

    ``None`` and Python scalars are ignored. NumPy arrays map to ``array_api_compat.numpy``,
    CuPy arrays to ``array_api_compat.cupy``; other libraries to their own namespace.

    Args:
        *arrays: arrays (any supported library), Python scalars or ``None``.

    Returns:
        The namespace module, e.g. ``array_api_compat.numpy``.

    Raises:
        TypeError: if the arrays come from different libraries, or none is an array.

    Example:
        >>> import numpy as np
        >>> xp = array_namespace(np.ones(3))
        >>> xp.sum(xp.ones(3)).shape
        ()
    """
    found = None
    for a in arrays:
        if a is None or type(a) in _PY_SCALARS:
            continue
        ns = _NAMESPACE_BY_TYPE.get(type(a))
        if ns is None:
            ns = _lookup_namespace(a)
        if found is None:
            found = ns
        elif ns is not found:
            raise TypeError(
                f"cannot mix arrays of different namespaces: {namespace_name(found)} and "
                f"{namespace_name(ns)}; move them to one library first (npdeq.backend.to_numpy "
                "or Module.to)"
            )
    if found is None:
        raise TypeError("array_namespace() needs at least one array argument")
    return found


def _lookup_namespace(a: Any) -> Any:
    if isinstance(a, np.generic) or type(a) is np.ndarray:
        ns = _numpy_namespace()
    else:
        try:
            ns = array_api_compat.array_namespace(a)
        except TypeError as exc:
            raise TypeError(
                f"expected an array of a supported library (numpy, cupy, array_api_strict, ...), "
                f"got {type(a).__name__}"
            ) from exc
    _NAMESPACE_BY_TYPE[type(a)] = ns
    return ns


def default_asarray(obj: Any, dtype: Any = None, copy: bool | None = None) -> Any:
    """Convert a Python scalar or nested list to an array of the default namespace (NumPy)."""
    return _numpy_namespace().asarray(obj, dtype=dtype, copy=copy)


def namespace_name(xp: Any) -> str:
    """Short name of a namespace: ``'numpy'``, ``'cupy'``, ``'array_api_strict'``, ..."""
    name = getattr(xp, "__name__", str(xp))
    return name.replace("array_api_compat.", "")


def is_numpy_array(x: Any) -> bool:
    """Whether ``x`` is a NumPy array or NumPy scalar (cheap: no namespace lookup)."""
    return isinstance(x, (np.ndarray, np.generic))


def is_numpy(xp: Any) -> bool:
    """Whether ``xp`` is the NumPy namespace."""
    return (xp is _NUMPY_NS and xp is not None) or getattr(xp, "__name__", "") in (
        "numpy", "array_api_compat.numpy")


def is_cupy(xp: Any) -> bool:
    """Whether ``xp`` is the CuPy namespace."""
    return getattr(xp, "__name__", "") in ("cupy", "array_api_compat.cupy")


def device(x: Any) -> Any:
    """The device of array ``x`` (``'cpu'`` for NumPy), as the array API standard defines it."""
    if isinstance(x, (np.ndarray, np.generic)):
        return "cpu"
    return array_api_compat.device(x)


def check_same_namespace(arrays: Any, what: str = "this operation") -> Any:
    """Return the common namespace of ``arrays`` after checking that devices match too.

    Args:
        arrays: a sequence of arrays (``None`` and Python scalars are skipped).
        what: the operation's name, used in error messages.

    Returns:
        The shared namespace.

    Raises:
        TypeError: arrays from different libraries.
        ValueError: arrays on different devices.
    """
    arrays = [a for a in arrays if a is not None and type(a) not in _PY_SCALARS]
    try:
        xp = array_namespace(*arrays)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None
    if len(arrays) > 1 and xp is not _NUMPY_NS:
        first = device(arrays[0])
        for a in arrays[1:]:
            if device(a) != first:
                raise ValueError(
                    f"{what}: arrays are on different devices ({first} and {device(a)}); "
                    "move them to one device first"
                )
    return xp


def cupy_available() -> bool:
    """Whether CuPy is importable and sees at least one CUDA device. Never imports at startup."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        cp = importlib.import_module("cupy")
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device, broken install: all mean "not available"
        return False


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any supported library to a NumPy array on the host.

    Tensors are unwrapped through their ``data`` attribute.
    """
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    if hasattr(x, "_node"):  # an npdeq Tensor (this layer cannot import the class)
        return to_numpy(x.data)
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    xp = array_namespace(x)
    if namespace_name(xp) == "array_api_strict":
        # strict refuses __array__ off its default device; its buffer is a NumPy array.
        return np.array(x._array, copy=True)
    return np.asarray(x)


def to_scalar(x: Any) -> float | bool | int:
    """Convert a 0-d array to a Python scalar: the one place npdeq synchronises with the host.

    Solvers route every host read (their one convergence check per iteration) through here, so
    tests can count synchronisations by patching this function.
    """
    if type(x) is np.ndarray or isinstance(x, np.generic):
        return x.item()  # the hot path of every solver iteration on NumPy
    xp = array_namespace(x)
    if x.dtype == xp.bool:
        return bool(x)
    if xp.isdtype(x.dtype, "integral"):
        return int(x)
    return float(x)


def host_flags(*flags: Any) -> tuple[bool, ...]:
    """Read several 0-d boolean arrays to the host in one :func:`to_scalar` call.

    Args:
        *flags: 0-d boolean arrays of one namespace (at most 31).

    Returns:
        The flags as Python bools, in order.
    """
    xp = array_namespace(*flags)
    code = xp.astype(flags[0], xp.int32)
    for i, flag in enumerate(flags[1:], start=1):
        code = code + xp.astype(flag, xp.int32) * (1 << i)
    value = int(to_scalar(code))
    return tuple(bool(value >> i & 1) for i in range(len(flags)))


def any_true(mask: Any) -> Any:
    """``xp.any(mask)`` as a 0-d array (no host synchronisation: pass it to :func:`to_scalar`).

    NumPy's method is several times cheaper than the namespace's wrapper on the tiny masks a
    solver checks every iteration.
    """
    if type(mask) is np.ndarray:
        return mask.any()
    return array_namespace(mask).any(mask)


def solve_vectors(a: Any, b: Any) -> Any:
    """Solve ``a[i] @ x[i] = b[i]`` for a batch of vectors: ``a`` ``(B, n, n)``, ``b`` ``(B, n)``.

    The standard's ``linalg.solve`` treats a 2-D ``b`` as a matrix, so vectors go through a
    trailing axis; NumPy is called directly because the namespace wrapper costs more than the
    solve itself for the small systems of Anderson mixing.

    Raises:
        The library's ``LinAlgError`` (or equivalent) for a singular matrix.
    """
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.linalg.solve(a, b[..., None])[..., 0]
    return array_namespace(a, b).linalg.solve(a, b[..., None])[..., 0]


# --- sliding windows (im2col) ------------------------------------------------------------


def sliding_windows(x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                    dilation: tuple[int, int]) -> Any:
    """Gather the sliding windows of a padded image batch (im2col).

    Args:
        x: ``(B, C, H, W)`` array, already padded.
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        dilation: ``(dh, dw)``.

    Returns:
        ``(B, C, kh, kw, Ho, Wo)`` array (a copy) in ``x``'s namespace and on its device, with
        ``Ho = (H - dh*(kh-1) - 1) // sh + 1`` and likewise ``Wo``.
    """
    xp = array_namespace(x)
    b, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"kernel {kernel} with dilation {dilation} does not fit the padded input of spatial "
            f"size {(h, w)}"
        )
    if is_numpy(xp) or is_cupy(xp):
        lib = np if is_numpy(xp) else importlib.import_module("cupy")
        s = x.strides
        view = lib.lib.stride_tricks.as_strided(
            x,
            shape=(b, c, kh, kw, ho, wo),
            strides=(s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw),
        )
        return lib.ascontiguousarray(view)
    # Portable fallback: one strided slice per kernel offset.
    rows = []
    for i in range(kh):
        cols = []
        for j in range(kw):
            cols.append(x[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh,
                          j * dw: j * dw + sw * (wo - 1) + 1: sw])
        rows.append(xp.stack(cols, axis=2))
    return xp.stack(rows, axis=2)


def fold_windows(cols: Any, image_shape: tuple[int, int, int, int], stride: tuple[int, int],
                 dilation: tuple[int, int]) -> Any:
    """Sum sliding windows back into an image (col2im): the adjoint of :func:`sliding_windows`.

    Args:
        cols: ``(B, C, kh, kw, Ho, Wo)`` array.
        image_shape: ``(B, C, H, W)`` of the padded image.
        stride: ``(sh, sw)``.
        dilation: ``(dh, dw)``.

    Returns:
        ``(B, C, H, W)`` array where overlapping windows are added.
    """
    xp = array_namespace(cols)
    _, _, kh, kw, ho, wo = cols.shape
    sh, sw = stride
    dh, dw = dilation
    out = xp.zeros(image_shape, dtype=cols.dtype, device=device(cols))
    # kh*kw strided slice-adds: works in every namespace and is what NumPy does fastest too.
    for i in range(kh):
        for j in range(kw):
            key = (slice(None), slice(None),
                   slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
                   slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))
            out[key] = out[key] + cols[:, :, i, j, :, :]
    return out


# --- scatter-add ---------------------------------------------------------------------------


def scatter_add(shape: tuple[int, ...], key: Any, values: Any) -> Any:
    """``zeros(shape)`` with ``values`` added at index ``key``; repeated indices add up.

    Args:
        shape: shape of the result.
        key: an index tuple (slices, ints, integer arrays) valid for an array of ``shape``.
        values: array shaped like ``zeros(shape)[key]``.

    Returns:
        Array of ``shape`` with ``values``' dtype, namespace and device.
    """
    xp = array_namespace(values)
    out = xp.zeros(shape, dtype=values.dtype, device=device(values))
    if is_numpy(xp) or is_cupy(xp):
        # ufunc.at is unbuffered: repeated indices add up (cupyx.scatter_add, its older
        # spelling on CuPy, is deprecated since CuPy 14).
        lib = np if is_numpy(xp) else importlib.import_module("cupy")
        lib.add.at(out, key, values)
        return out
    # Portable fallback: find the flat position of every selected element, then add them in
    # with a one-hot matrix product (O(selected * size) memory: fine for tests, slow at scale).
    size = 1
    for s in shape:
        size *= s
    positions = xp.reshape(xp.reshape(xp.arange(size, device=device(values)), shape)[key], (-1,))
    grid = xp.arange(size, device=device(values))
    onehot = xp.astype(positions[:, None] == grid[None, :], values.dtype)
    return xp.reshape(xp.reshape(values, (-1,)) @ onehot, shape)


# --- random numbers ------------------------------------------------------------------------


def _host_generator(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def random_normal(shape: tuple[int, ...], *, like: Any, seed: Any = None) -> Any:
    """Standard normal samples with ``like``'s dtype, namespace and device.

    Args:
        shape: the result's shape.
        like: an array whose dtype, namespace and device the result takes.
        seed: ``None``, an int or a ``numpy.random.Generator`` (CPU); on CuPy an int seeds
            ``cupy.random``.

    Returns:
        Array of shape ``shape``.
    """
    return _random(shape, like, seed, "normal")


def random_uniform(shape: tuple[int, ...], *, like: Any, seed: Any = None,
                   low: float = 0.0, high: float = 1.0) -> Any:
    """Uniform samples in ``[low, high)`` with ``like``'s dtype, namespace and device."""
    return low + (high - low) * _random(shape, like, seed, "uniform")


def _random(shape, like, seed, kind):
    xp = array_namespace(like)
    if is_cupy(xp):
        cp = importlib.import_module("cupy")
        rs = cp.random.default_rng(seed if not isinstance(seed, np.random.Generator)
                                   else int(seed.integers(2**31)))
        with cp.cuda.Device(like.device):
            sample = rs.standard_normal(shape) if kind == "normal" else rs.random(shape)
        return sample.astype(like.dtype, copy=False)
    rng = _host_generator(seed)
    sample = rng.standard_normal(shape) if kind == "normal" else rng.random(shape)
    if is_numpy(xp):
        return sample.astype(like.dtype, copy=False)
    return xp.asarray(sample, dtype=like.dtype, device=device(like))
