"""Optimizers (``SGD``, ``Adam``, ``AdamW``) and a cosine learning-rate schedule.

PyTorch's names, defaults and update rules. An optimizer holds parameter groups (lists of
:class:`~npdeq.nn.Parameter` with their own settings) and updates each parameter's ``.data``
from its ``.grad`` in the parameter's own namespace and on its device; parameters without a
gradient are skipped. ``.data`` is replaced, never written in place, so arrays a recorded
graph still holds are not changed under it. Imports the backend, the tape's ``Tensor`` and
:mod:`npdeq.nn`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from npdeq import backend
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_int, check_real
from npdeq.nn.parameter import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "CosineAnnealingLR"]


def _is_array(obj: Any) -> bool:
    try:
        backend.array_namespace(obj)
    except TypeError:
        return False
    return True


def _checked_grad(param: Parameter, group: int, position: int) -> Any:
    """``param.grad``'s array, checked against the parameter it updates."""
    grad = param.grad
    g = grad.data if isinstance(grad, Tensor) else grad
    where = f"parameter {position} of group {group} (shape {tuple(param.shape)})"
    if not _is_array(g):
        raise TypeError(f"the gradient of {where} must be an array or Tensor, got "
                        f"{type(grad).__name__}")
    if tuple(g.shape) != tuple(param.shape):
        raise ValueError(f"the gradient of {where} has shape {tuple(g.shape)}; it must have "
                         "the parameter's shape")
    p = param.data
    xp = backend.array_namespace(p)
    if backend.array_namespace(g) is not xp or backend.device(g) != backend.device(p):
        given = backend.namespace_name(backend.array_namespace(g))
        raise TypeError(f"the gradient of {where} is a {given} array on {backend.device(g)}, "
                        f"the parameter a "
                        f"{backend.namespace_name(xp)} array on {backend.device(p)}")
    if g.dtype != p.dtype:
        raise TypeError(f"the gradient of {where} has dtype {g.dtype}, the parameter "
                        f"{p.dtype}; a step would change the parameter's dtype")
    return g


def _follow(state: dict[str, Any], p: Any) -> None:
    """Move the state's arrays (momentum, moments) to ``p``'s namespace, device and dtype.

    ``Module.to`` moves parameters but cannot reach the optimizer: without this, a step after
    a move mixes devices (an error) or, after ``to(dtype='float32')``, float64 moments turn
    the parameters back into float64.
    """
    xp, where, dtype = backend.array_namespace(p), backend.device(p), p.dtype
    for key, value in state.items():
        if isinstance(value, (int, float)):
            continue
        if (backend.array_namespace(value) is not xp or value.dtype != dtype
                or backend.device(value) != where):
            state[key] = backend.move_array(value, xp, where, dtype)


class Optimizer:
    """Base class: parameter groups, ``zero_grad`` and the per-parameter ``state``.

    Args:
        params: an iterable of Parameters, or of dicts ``{'params': [...], **settings}``
            (parameter groups; missing settings take ``defaults``).
        defaults: the optimizer's settings.

    Every numeric setting is checked when a group is added and again at each
    :meth:`step` (a rate set to NaN by hand is refused then): a real number (NumPy scalars
    accepted), finite and in its range, else ``ValueError`` naming it. NaN fails every
    check, so no setting can silently turn the parameters into NaN.

    Raises:
        TypeError: an entry that is not a Parameter (a plain Tensor or array included).
        ValueError: no parameters, a parameter given twice, or a bad setting.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        if not isinstance(params, (Tensor, dict)) and _is_array(params):
            # Iterating an array would report the type of its first element instead.
            raise TypeError(f"optimizer parameters must be npdeq.nn.Parameter, got an array "
                            f"({type(params).__name__}); wrap trainable arrays in Parameter")
        entries = list(params) if not isinstance(params, (Tensor, dict)) else [params]
        if not entries:
            raise ValueError("the optimizer got an empty parameter list")
        if all(isinstance(entry, dict) for entry in entries):
            groups = entries
        else:
            groups = [{"params": entries}]
        seen: set[int] = set()
        for group in groups:
            self.add_param_group(group, seen)

    def add_param_group(self, group: dict[str, Any], seen: set[int] | None = None) -> None:
        """Add a group ``{'params': [...], **settings}``.

        Raises:
            TypeError, ValueError: as the constructor.
        """
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"unknown optimizer settings {sorted(unknown)}; valid: "
                             f"{sorted(self.defaults)}")
        if seen is None:
            seen = {id(p) for g in self.param_groups for p in g["params"]}
        # A position alone is ambiguous once there are several groups.
        where = f" of parameter group {len(self.param_groups)}"
        for index, param in enumerate(params):
            if not isinstance(param, Parameter):
                raise TypeError(f"optimizer parameters must be npdeq.nn.Parameter, got "
                                f"{type(param).__name__} at position {index}{where} (wrap "
                                "trainable arrays in Parameter)")
            if id(param) in seen:
                raise ValueError(f"parameter at position {index}{where} (shape {param.shape}) "
                                 "is given to the optimizer twice")
            seen.add(id(param))
        settings = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        settings = self._check(settings)
        self.param_groups.append({"params": params, **settings})

    def _check(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Check ``settings`` (a group's); return them with numbers as Python floats.

        Subclasses extend it. Raises ValueError naming the setting and its value.
        """
        settings["lr"] = check_real("lr", settings.get("lr"), 0.0, owner=type(self).__name__)
        if "weight_decay" in settings:
            settings["weight_decay"] = check_real("weight_decay", settings["weight_decay"], 0.0,
                                                  owner=type(self).__name__)
        return settings

    def zero_grad(self) -> None:
        """Clear ``.grad`` of every parameter."""
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient.

        Everything is checked before any parameter changes, so a step never half-applies:
        each group's settings (a learning rate a schedule or the user set to NaN is
        refused), and each gradient, which must be an array or Tensor of its parameter's
        shape, dtype, namespace and device.

        Raises:
            ValueError: a bad setting, or a gradient of another shape (the parameter is
                named by its group and position, with both shapes).
            TypeError: a gradient that is not an array, or of another dtype, namespace or
                device.
        """
        work = []
        for index, group in enumerate(self.param_groups):
            settings = self._check({k: v for k, v in group.items() if k != "params"})
            for position, param in enumerate(group["params"]):
                if param.grad is not None:
                    work.append((param, _checked_grad(param, index, position), settings))
        for param, grad, settings in work:
            state = self.state.setdefault(id(param), {})
            if state:
                _follow(state, param.data)
            param.data = self._update(param.data, grad, state, settings)

    def _update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        groups = ", ".join(f"group {i}: {len(g['params'])} params, "
                           + ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
                           for i, g in enumerate(self.param_groups))
        return f"{type(self).__name__}({groups})"


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
        >>> opt = SGD([w], lr=0.1)
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
        >>> opt = Adam([w], lr=0.1)
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
        >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
        >>> (w * 0.0).sum().backward(); opt.step(); w.data
        array([0.95])
    """

    _decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class CosineAnnealingLR:
    """Cosine learning-rate schedule: ``lr_t = eta_min + (lr_0 - eta_min)(1 + cos(pi t/T))/2``.

    Call :meth:`step` once per epoch (or per batch, with ``T_max`` counted in batches); after
    ``T_max`` steps the rate stays at ``eta_min``. Optional linear warm-up over the first
    ``warmup`` steps.

    Args:
        optimizer: the optimizer whose groups' ``lr`` to set.
        T_max: steps in one half cosine period (>= 1).
        eta_min: the final learning rate.
        warmup: steps of linear warm-up from ``lr_0 / warmup`` (0: none).

    ``T_max`` and ``warmup`` are ints (NumPy integers accepted), ``eta_min`` a finite
    number >= 0.

    Raises:
        ValueError: ``T_max < 1``, a negative ``warmup``, an ``eta_min`` that is negative or
            not finite, or any of them of the wrong type (named with its value).
        TypeError: ``optimizer`` is not an :class:`Optimizer`.

    Example:
        >>> import numpy as np, npdeq
        >>> opt = SGD([npdeq.nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = CosineAnnealingLR(opt, T_max=2)
        >>> [round(sched.step(), 3) for _ in range(3)]
        [0.5, 0.0, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 warmup: int = 0) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"CosineAnnealingLR: optimizer must be an npdeq.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        owner = "CosineAnnealingLR"
        T_max = check_int("T_max", T_max, 1, owner=owner)
        warmup = check_int("warmup", warmup, 0, owner=owner)
        eta_min = check_real("eta_min", eta_min, 0.0, owner=owner)
        self.optimizer, self.T_max, self.eta_min, self.warmup = optimizer, T_max, eta_min, warmup
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def get_lr(self) -> list[float]:
        """The learning rate of each group at the current step."""
        t = self.last_step
        if t < self.warmup:
            return [base * (t + 1) / self.warmup for base in self.base_lrs]
        t = min(t - self.warmup, self.T_max)
        scale = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * scale for base in self.base_lrs]

    def _apply(self) -> float:
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        return lrs[0]

    def step(self) -> float:
        """Advance one step; set and return the (first group's) learning rate."""
        self.last_step += 1
        return self._apply()
