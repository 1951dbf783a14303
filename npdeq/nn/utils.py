"""Gradient clipping, PyTorch's ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``.

Both replace each parameter's ``.grad`` by a clipped copy (the old gradient array is not
written: a graph or a user may still hold it), in the gradient's own namespace, device and
dtype.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from npdeq import backend
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_real

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _with_grads(parameters: Any, what: str) -> list[Any]:
    """The parameters that hold a gradient (a single Tensor is accepted, as PyTorch)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for index, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{what}: parameters must be Tensors (e.g. model.parameters()), "
                            f"got {type(p).__name__} at position {index}")
    return [p for p in params if p.grad is not None]


def _grad_array(p: Any) -> Any:
    return p.grad.data if isinstance(p.grad, Tensor) else p.grad


def clip_grad_norm_(parameters: Iterable[Any] | Tensor, max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so that their joint norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of the concatenation of every gradient
    (``inf``: the largest absolute entry). When it exceeds ``max_norm`` every gradient is
    multiplied by ``max_norm / (total + 1e-6)`` (PyTorch's rule); otherwise the gradients
    are left as they are.

    Args:
        parameters: Parameters (or Tensors), e.g. ``model.parameters()``, or one Tensor;
            those without ``.grad`` are skipped.
        max_norm: the largest norm allowed (finite, >= 0).
        norm_type: the norm's exponent (finite, > 0, or ``inf``).
        error_if_nonfinite: raise if the total norm is NaN or infinite (PyTorch's flag;
            otherwise a non-finite norm scales the gradients into NaN, as PyTorch).

    Returns:
        The total norm before clipping, as a Python float (PyTorch returns a 0-d tensor):
        reading it is one host synchronisation on a GPU. ``0.0`` when no parameter has a
        gradient.

    Raises:
        ValueError: a bad ``max_norm`` or ``norm_type``.
        RuntimeError: ``error_if_nonfinite=True`` and a non-finite total norm (no gradient
            changed).
        TypeError: an entry that is not a Tensor.

    Example:
        >>> import numpy as np, npdeq
        >>> w = npdeq.nn.Parameter(np.zeros(2)); w.grad = npdeq.Tensor(np.array([3.0, 4.0]))
        >>> clip_grad_norm_([w], max_norm=1.0)
        5.0
        >>> w.grad.numpy().round(6)
        array([0.6, 0.8])
    """
    what = "clip_grad_norm_"
    max_norm = check_real("max_norm", max_norm, 0.0, owner=what)
    if norm_type != math.inf:
        norm_type = check_real("norm_type", norm_type, 0.0, low_open=True, owner=what)
    error_if_nonfinite = check_bool("error_if_nonfinite", error_if_nonfinite, owner=what)
    params = _with_grads(parameters, what)
    if not params:
        return 0.0
    norms = []
    for p in params:
        g = _grad_array(p)
        xp = backend.array_namespace(g)
        a = xp.abs(g)
        if norm_type == math.inf:
            norms.append(xp.max(a) if math.prod(a.shape) else None)
        else:
            norms.append(xp.sum(a ** norm_type) ** (1.0 / norm_type))
    # One host read per gradient keeps namespaces and devices apart (parameters may live
    # on several); PyTorch also syncs when the result is read.
    values = [0.0 if n is None else float(backend.to_scalar(n)) for n in norms]
    total = max(values) if norm_type == math.inf else \
        math.fsum(v ** norm_type for v in values) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"{what}: the total {norm_type}-norm of the gradients is {total}; "
                           "pass error_if_nonfinite=False to clip anyway (the gradients "
                           "become NaN)")
    scale = max_norm / (total + 1e-6)
    if scale < 1.0 or math.isnan(scale):
        for p in params:
            g = _grad_array(p)
            p.grad = Tensor(g * scale)
    return total


def clip_grad_value_(parameters: Iterable[Any] | Tensor, clip_value: float) -> None:
    """Clip every gradient entry to ``[-clip_value, clip_value]``.

    Args:
        parameters: Parameters (or Tensors), or one Tensor; those without ``.grad`` are
            skipped.
        clip_value: the bound (finite, >= 0).

    Raises:
        ValueError: a bad ``clip_value``.
        TypeError: an entry that is not a Tensor.

    Example:
        >>> import numpy as np, npdeq
        >>> w = npdeq.nn.Parameter(np.zeros(2)); w.grad = npdeq.Tensor(np.array([3.0, -0.5]))
        >>> clip_grad_value_([w], 1.0); w.grad.numpy()
        array([ 1. , -0.5])
    """
    what = "clip_grad_value_"
    clip_value = check_real("clip_value", clip_value, 0.0, owner=what)
    for p in _with_grads(parameters, what):
        g = _grad_array(p)
        p.grad = Tensor(backend.array_namespace(g).clip(g, -clip_value, clip_value))
