"""Stochastic gradient descent, PyTorch's ``torch.optim.SGD`` (momentum, Nesterov, weight
decay). Updates are computed in each parameter's dtype (see :mod:`npdeq.optim.optimizer`)."""

from __future__ import annotations

from typing import Any, Iterable

from npdeq import backend
from npdeq.backend.checks import check_bool, check_real
from npdeq.optim.optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

    ``g <- grad + weight_decay * p``; with momentum ``b <- momentum * b + (1 - dampening) * g``
    (``b = g`` at the first step), then ``g <- g + momentum * b`` (Nesterov) or ``g <- b``;
    ``p <- p - lr * g``. PyTorch's rule.

    Args:
        params: Parameters or parameter groups.
        lr: learning rate (finite, >= 0).
        momentum: momentum factor (finite, >= 0; 0: none).
        dampening: dampening of the momentum (in [0, 1]).
        weight_decay: L2 penalty (finite, >= 0).
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).

    Raises:
        ValueError: a setting out of its range, not finite or not a number (named with its
            value).
        TypeError: ``nesterov`` is not a bool.

    Example:
        >>> import numpy as np, npdeq
        >>> w = npdeq.nn.Parameter(np.array([1.0]))
        >>> opt = npdeq.optim.SGD([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step(); w.data
        array([0.8])
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check(self, settings: dict[str, Any]) -> dict[str, Any]:
        settings = super()._check(settings)
        owner = type(self).__name__
        settings["momentum"] = check_real("momentum", settings["momentum"], 0.0, owner=owner)
        settings["dampening"] = check_real("dampening", settings["dampening"], 0.0, 1.0,
                                           owner=owner)
        settings["nesterov"] = check_bool("nesterov", settings["nesterov"], owner=owner)
        if settings["nesterov"] and (settings["momentum"] <= 0 or settings["dampening"] != 0):
            raise ValueError(f"{owner}: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={settings['momentum']!r}, "
                             f"dampening={settings['dampening']!r}")
        return settings

    def _update(self, p, g, state, group):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            # A copy at the first step, as PyTorch: the buffer must not alias ``.grad``.
            buf = (backend.array_namespace(g).asarray(g, copy=True) if buf is None
                   else momentum * buf + (1 - group["dampening"]) * g)
            state["momentum_buffer"] = buf
            g = g + momentum * buf if group["nesterov"] else buf
        return p - group["lr"] * g
