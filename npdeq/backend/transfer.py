"""Moving arrays between libraries and devices, and reading/writing ``.npz`` files.

What ``Module.to`` and model saving need: a target named by a namespace, a device or a
string (``'cpu'``, ``'gpu'``/``'cuda'``), resolved once to a ``(namespace, device)`` pair,
and a copy of any array there.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Mapping

import numpy as np

from npdeq.backend.namespace import (Array, array_namespace, default_namespace, device,
                                     is_cupy, is_numpy, namespace_name, to_numpy)

__all__ = ["resolve_target", "move_array", "save_npz", "load_npz"]

_GPU_NAMES = ("gpu", "cuda")


def resolve_target(target: Any) -> tuple[Any, Any]:
    """Turn a ``Module.to`` target into ``(namespace, device)``.

    Args:
        target: a namespace module (``numpy``, ``cupy``, ``array_api_strict``, or their
            ``array_api_compat`` wrappers); ``'cpu'``/``'numpy'``; ``'gpu'``/``'cuda'``
            (CuPy, current device); ``'cuda:N'``; an array whose namespace and device to take;
            or a device object of array_api_strict or CuPy (its namespace is inferred).

    Returns:
        ``(xp, device)``; ``device`` is ``None`` for the namespace's default device.

    Raises:
        RuntimeError: a GPU target when CuPy or a CUDA device is missing.
        TypeError / ValueError: a target of another kind.
    """
    if isinstance(target, str):
        name = target.lower()
        if name in ("cpu", "numpy"):
            return default_namespace(), None
        if name in _GPU_NAMES or name.startswith("cuda:"):
            cp = _require_cupy(target)
            index = int(name.split(":", 1)[1]) if ":" in name else None
            return array_namespace(cp.empty(0)), (cp.cuda.Device(index) if index is not None
                                                  else None)
        raise ValueError(f"unknown device {target!r}; expected 'cpu', 'gpu', 'cuda' or "
                         "'cuda:N', a namespace module, a device or an array")
    module_name = getattr(target, "__name__", None)
    if module_name is not None and hasattr(target, "asarray"):
        base = module_name.replace("array_api_compat.", "")
        if base == "numpy":
            return default_namespace(), None
        if base == "cupy":
            cp = _require_cupy("cupy")
            return array_namespace(cp.empty(0)), None
        return target, None
    try:
        return array_namespace(target), device(target)  # an array
    except TypeError:
        pass
    kind = type(target).__module__.split(".")[0]
    if kind == "array_api_strict":
        return importlib.import_module("array_api_strict"), target
    if kind == "cupy":
        cp = _require_cupy("cupy")
        return array_namespace(cp.empty(0)), target
    raise TypeError(f"cannot move to {target!r} ({type(target).__name__}); expected a "
                    "namespace module, 'cpu'/'gpu', a device or an array")


def _require_cupy(what: str) -> Any:
    if not sys.modules["npdeq.backend"].cupy_available():  # patchable in tests
        raise RuntimeError(f"{what!r} needs CuPy and a CUDA GPU, and none was found "
                           "(install npdeq[cuda12] or npdeq[cuda13] on a machine with a GPU)")
    return importlib.import_module("cupy")


def move_array(a: Array, xp: Any, target_device: Any = None, dtype: Any = None) -> Array:
    """Copy ``a`` into namespace ``xp`` on ``target_device`` (the default one when ``None``).

    An array already there (and of ``dtype``) is returned as it is, not copied.

    Args:
        a: an array of any supported library.
        xp: the target namespace (from :func:`resolve_target`).
        target_device: the target device or ``None``.
        dtype: a dtype of ``xp`` to cast floating-point arrays to, or ``None`` to keep it.

    Returns:
        The array in ``xp`` on the device.
    """
    source = array_namespace(a)
    if source is xp and (target_device is None or device(a) == target_device):
        out = a
    elif is_numpy(xp):
        out = to_numpy(a)
    elif is_cupy(xp):
        cp = importlib.import_module("cupy")
        host = a if is_cupy(source) else to_numpy(a)
        if target_device is None:
            out = cp.asarray(host)
        else:
            with target_device:
                out = cp.asarray(host)
    elif source is xp:
        out = a.to_device(target_device)
    else:
        host = to_numpy(a)
        out = xp.asarray(host, device=target_device) if target_device is not None else \
            xp.asarray(host)
    if dtype is not None and xp.isdtype(out.dtype, "real floating") and out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out


def save_npz(path: str | os.PathLike, arrays: Mapping[str, Array]) -> None:
    """Write named arrays of any library to an uncompressed ``.npz`` file (via the host).

    ``.npz`` is appended to a path without it, as ``numpy.savez`` does.

    Raises:
        TypeError: a key is not a string.
    """
    host = {}
    for key, value in arrays.items():
        if not isinstance(key, str):
            raise TypeError(f"array names must be strings, got {key!r}")
        host[key] = to_numpy(value)
    # numpy.savez takes the names as keyword arguments, so an entry called 'file' or
    # 'allow_pickle' collides with its own parameters; write the same zip of .npy members.
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        if isinstance(path, str) and not path.endswith(".npz"):
            path += ".npz"
    import zipfile  # noqa: PLC0415 - 20 to 70 ms of `import npdeq` for a rare call

    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED,
                         allowZip64=True) as archive:
        for key, value in host.items():
            with archive.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file into a dict of NumPy arrays (no pickles).

    A path without the ``.npz`` suffix that does not exist is read with it, the file
    :func:`save_npz` wrote for the same path.

    Raises:
        FileNotFoundError: neither file exists.
        ValueError: the file is not a readable ``.npz`` archive of arrays: empty, truncated
            or corrupted, not a zip archive at all, a single ``.npy`` array, or holding
            Python objects (pickled data, never loaded) or members that are not arrays;
            the message names the path and what is wrong.
    """
    if isinstance(path, (str, os.PathLike)):
        name = os.fspath(path)
        # save_npz (like numpy.savez) appends '.npz', so save(m, 'ckpt') writes 'ckpt.npz'.
        if (isinstance(name, str) and not name.endswith(".npz") and not os.path.exists(name)
                and os.path.exists(name + ".npz")):
            path = name + ".npz"
    import zipfile  # noqa: PLC0415 - 20 to 70 ms of `import npdeq` for a rare call

    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise ValueError(f"{_label(path)} is not a valid .npz file: {_diagnose(path, err)}") \
            from None
    if not hasattr(data, "files"):
        raise ValueError(f"{_label(path)} is not a valid .npz file: it holds a single .npy "
                         "array, not an archive of named arrays (write it with npdeq.nn.save)")
    arrays = {}
    with data:
        for key in data.files:
            try:
                value = data[key]
            except ValueError as err:
                reason = ("it holds Python objects (pickled data), which are never loaded"
                          if "allow_pickle" in str(err) or "pickled" in str(err) else str(err))
                raise ValueError(f"{_label(path)}: member {key!r} cannot be read: {reason}") \
                    from None
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise ValueError(f"{_label(path)} is corrupted or truncated: member {key!r} "
                                 f"cannot be read ({err})") from None
            if not isinstance(value, np.ndarray):
                raise ValueError(f"{_label(path)} is not a valid .npz file: member {key!r} is "
                                 "not a NumPy array (.npy)")
            arrays[key] = value
    return arrays


def _label(path: Any) -> str:
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else repr(path)


def _diagnose(path: Any, err: BaseException) -> str:
    """What is wrong with a file ``np.load`` could not open, from its first bytes."""
    head = b""
    if isinstance(path, (str, os.PathLike)):
        try:
            with open(path, "rb") as file:
                head = file.read(8)
        except OSError:
            pass
        if not head:
            return "the file is empty (0 bytes)"
    if head.startswith(b"PK"):
        return ("it starts as a zip archive (the .npz format) but is truncated or corrupted "
                f"({err})")
    if head.startswith(b"\x93NUMPY"):
        return f"it starts as a .npy array but is truncated or corrupted ({err})"
    return "it does not start with a zip signature (a .npz file is a zip archive of arrays)"


def describe(xp: Any, target_device: Any) -> str:
    """``'numpy'``, ``'cupy'``, ``'array_api_strict on device1'``: for messages and reprs."""
    name = namespace_name(xp)
    return name if target_device is None else f"{name} on {target_device}"
