"""Saving and loading model state to ``.npz`` files (plain arrays, no pickles).

Arrays are written from the host, so a file saved from CuPy loads anywhere.
"""

from __future__ import annotations

import os
from typing import Mapping

from npdeq import backend
from npdeq.backend import Array
from npdeq.nn.module import Module

__all__ = ["save", "load"]


def save(obj: Module | Mapping[str, Array], path: str | os.PathLike) -> None:
    """Write a module's ``state_dict()`` (or a state dict) to ``path`` as ``.npz``.

    Arrays are copied to the host first, so a model on CuPy saves the same file.

    Args:
        obj: a :class:`~npdeq.nn.Module` or a name -> array mapping.
        path: the file (NumPy appends ``.npz`` when it is missing).

    Raises:
        TypeError: ``obj`` is neither.

    Example:
        >>> import tempfile, os
        >>> from npdeq.nn import Linear
        >>> path = os.path.join(tempfile.mkdtemp(), 'layer.npz')
        >>> save(Linear(2, 3, seed=0), path); sorted(load(path))
        ['bias', 'weight']
    """
    if isinstance(obj, Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"save() takes a Module or a state dict, got {type(obj).__name__}")
    backend.save_npz(path, obj)


def load(path: str | os.PathLike, into: Module | None = None,
         strict: bool = True) -> dict[str, Array]:
    """Read a state dict written by :func:`save`; with ``into``, load it into that module.

    Args:
        path: the ``.npz`` file.
        into: a module to :meth:`~npdeq.nn.Module.load_state_dict` into (its namespace,
            device and dtypes are kept).
        strict: passed to ``load_state_dict``.

    Returns:
        The state dict (NumPy arrays).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a valid ``.npz`` archive of arrays (empty, truncated,
            corrupted, not a zip archive, a lone ``.npy`` array, pickled objects); the
            message names the path and what is wrong.
        KeyError, ValueError, TypeError: from ``load_state_dict`` (missing/extra/wrongly
            shaped names, dtypes that cannot be cast); the module is then unchanged.
    """
    state = backend.load_npz(path)
    if into is not None:
        into.load_state_dict(state, strict=strict)
    return state
