"""Adam and AdamW, PyTorch's ``torch.optim.Adam`` and ``torch.optim.AdamW``. The moments are
kept, and updates computed, in each parameter's dtype (see :mod:`npdeq.optim.optimizer`)."""

from __future__ import annotations

import math
from typing import Any, Iterable

from npdeq import backend
from npdeq.backend.checks import check_real
from npdeq.optim.optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's rule; ``weight_decay`` adds an L2 term to the gradient.

    Args:
        params: Parameters or parameter groups.
        lr: learning rate (finite, >= 0).
        betas: decay rates of the first and second moment estimates, two numbers in [0, 1).
        eps: added to the denominator (finite, > 0: PyTorch allows 0, which turns a
            parameter whose gradient is exactly zero into ``0 / 0 = NaN``).
        weight_decay: L2 penalty added to the gradient (finite, >= 0; see :class:`AdamW` for
            decoupled).

    Raises:
        ValueError: a setting out of its range, not finite or not a number (named with its
            value).

    Example:
        >>> import numpy as np, npdeq
        >>> w = npdeq.nn.Parameter(np.array([1.0, -1.0]))
        >>> opt = npdeq.optim.Adam([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step(); w.data.round(6)
        array([ 0.9, -0.9])
    """

    _decoupled = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check(self, settings: dict[str, Any]) -> dict[str, Any]:
        settings = super()._check(settings)
        owner = type(self).__name__
        betas = settings["betas"]
        try:
            pair = tuple(betas)
        except TypeError:
            pair = ()
        if len(pair) != 2:
            raise ValueError(f"{owner}: betas must be two numbers in [0, 1), got {betas!r}")
        settings["betas"] = tuple(check_real(f"betas[{i}]", b, 0.0, 1.0, high_open=True,
                                             owner=owner) for i, b in enumerate(pair))
        settings["eps"] = check_real("eps", settings["eps"], 0.0, low_open=True, owner=owner)
        return settings

    def _update(self, p, g, state, group):
        lr, (beta1, beta2), decay = group["lr"], group["betas"], group["weight_decay"]
        if decay and self._decoupled:
            p = p * (1 - lr * decay)
        elif decay:
            g = g + decay * p
        step = state.get("step", 0) + 1
        m = state.get("exp_avg")
        v = state.get("exp_avg_sq")
        m = (1 - beta1) * g if m is None else beta1 * m + (1 - beta1) * g
        v = (1 - beta2) * (g * g) if v is None else beta2 * v + (1 - beta2) * (g * g)
        state.update(step=step, exp_avg=m, exp_avg_sq=v)
        xp = backend.array_namespace(g)
        bias1 = 1 - beta1 ** step
        bias2 = 1 - beta2 ** step
        denom = xp.sqrt(v) / math.sqrt(bias2) + group["eps"]
        return p - (lr / bias1) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p <- p (1 - lr wd)`` before
    the Adam step. Default ``weight_decay=1e-2``, as PyTorch.

    Example:
        >>> import numpy as np, npdeq
        >>> w = npdeq.nn.Parameter(np.array([1.0]))
        >>> opt = npdeq.optim.AdamW([w], lr=0.1, weight_decay=0.5)
        >>> (w * 0.0).sum().backward(); opt.step(); w.data
        array([0.95])
    """

    _decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
