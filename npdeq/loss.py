"""TorchDEQ's ``torchdeq.loss``: Jacobian regularisation, the power method and the
fixed-point correction loss, on npdeq's tape.

- :func:`jac_reg`: the Hutchinson estimate of ``||df0/dz0||_F^2 / numel(z0)``, trainable
  (its gradient reaches the parameters through the tape's double backward);
- :func:`power_method`: the spectral radius of ``df0/dz0`` by power iteration on VJPs (the
  implementation shared with the cores' ``sradius`` statistic);
- :func:`fp_correction` and :func:`register_weight_func`: a loss over the sequence of
  states a DEQ produced on its way to the fixed point, each term weighted.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Sequence

from npdeq.autodiff import Tensor
from npdeq.backend.checks import check_callable, check_int, check_real
from npdeq.core.sradius import power_method
from npdeq.grad.jacobian import jacobian_frobenius

__all__ = ["jac_reg", "power_method", "fp_correction", "register_weight_func",
           "weight_funcs"]


def jac_reg(f0: Tensor | Sequence[Tensor], z0: Tensor | Sequence[Tensor],
            vecs: int | None = None, create_graph: bool = True, *, seed: Any = None,
            probes: Sequence[Any] | None = None) -> Tensor:
    """Jacobian regularisation: the Hutchinson estimate of ``tr(J^T J) / numel(z0)``.

    ``J = df0/dz0``. Each standard normal probe ``v`` shaped like ``f0`` costs one VJP; the
    result is ``sum_v ||v^T J||^2 / vecs / numel(z0)``, as TorchDEQ's ``jac_reg``. With
    ``create_graph=True`` it is differentiable with respect to whatever ``f`` closes over.

    Args:
        f0: ``f(z0)``, a ``(B, ...)`` Tensor (or a sequence of them for a tuple state).
        z0: the input(s) ``f0`` was recorded from, Tensor(s) with ``requires_grad=True``.
        vecs: number of random probes (default 1; an int >= 1, NumPy integers accepted).
        create_graph: record the VJPs, so the loss can be trained on.
        seed: ``None`` (fresh probes), an int or a ``numpy.random.Generator``; an int
            holds the probes fixed between calls.
        probes: explicit probe vectors shaped like ``f0`` instead of random ones.

    Returns:
        A 0-d Tensor, the shape-normalised Jacobian loss.

    Raises:
        TypeError: ``f0``/``z0`` are not Tensors.
        ValueError: bad ``vecs``/``probes``, ``f0`` without a graph or ``z0`` not
            requiring grad.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.5 * np.eye(3), requires_grad=True)
        >>> z = npdeq.tensor(np.zeros((2, 3)), requires_grad=True)   # (B, d)
        >>> loss = jac_reg(z @ W, z, vecs=2, seed=0)
        >>> npdeq.grad(loss, W).shape                                  # reaches W
        (3, 3)
    """
    if vecs is not None:
        vecs = check_int("vecs", vecs, 1, owner="jac_reg")
    return jacobian_frobenius(f0, z0, vecs=vecs, create_graph=create_graph, seed=seed,
                              probes=probes)


# -- fixed-point correction ---------------------------------------------------------------


def _exp_weight(n: int, k: int, gamma: float = 0.8) -> float:
    """``gamma ** (n - k - 1)``: the last state weighs 1, earlier ones decay geometrically."""
    return check_real("gamma", gamma, 0.0, owner="fp_correction('exp')") ** (n - k - 1)


def _linear_weight(n: int, k: int, gamma: float = 0.9, bias: float = 0.0) -> float:
    """``1 - (n - k - 1) / n * gamma + bias``: rises linearly to ``1 + bias`` at the last."""
    gamma = check_real("gamma", gamma, owner="fp_correction('linear')")
    bias = check_real("bias", bias, owner="fp_correction('linear')")
    return 1 - (n - k - 1) / n * gamma + bias


def _const_weight(n: int, k: int, c: float = 1.0) -> float:
    """``c`` for every state (TorchDEQ's version builds a CUDA vector; this is a float)."""
    return check_real("c", c, owner="fp_correction('const')")


_WEIGHT_FUNCS: dict[str, Callable[..., float]] = {
    "exp": _exp_weight, "linear": _linear_weight, "const": _const_weight}


def weight_funcs() -> list[str]:
    """The names of the registered weight functions, sorted.

    Example:
        >>> {"const", "exp", "linear"} <= set(weight_funcs())
        True
    """
    return sorted(_WEIGHT_FUNCS)


def register_weight_func(name: str, func: Callable[..., float]) -> None:
    """Register a weight function for :func:`fp_correction` under ``name``.

    A weight function maps ``(n, k, **kwargs)`` to the float weight of state ``k``
    (0-based) in a sequence of ``n`` states, as in TorchDEQ. Registering an existing name
    replaces it.

    Args:
        name: the name to pass as ``weight_func``.
        func: ``func(n, k, **kwargs) -> float``.

    Raises:
        TypeError: ``name`` is not a string or ``func`` is not callable.

    Example:
        >>> import numpy as np, npdeq
        >>> register_weight_func("last_only", lambda n, k: float(k == n - 1))
        >>> zs = [npdeq.tensor(np.full((1, 2), v)) for v in (3.0, 1.0)]  # (B, d) each
        >>> y = npdeq.tensor(np.zeros((1, 2)))
        >>> fp_correction(npdeq.mse_loss, (zs, y), "last_only").item()    # the last state's
        1.0
        >>> del _WEIGHT_FUNCS["last_only"]
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    _WEIGHT_FUNCS[name] = check_callable("func", func)


def _get_weight_func(weight_func: str | Callable[..., float]) -> Callable[..., float]:
    if callable(weight_func):
        return weight_func
    if isinstance(weight_func, str) and weight_func in _WEIGHT_FUNCS:
        return _WEIGHT_FUNCS[weight_func]
    raise ValueError(f"unknown weight_func {weight_func!r}; registered: {weight_funcs()} "
                     "(add one with register_weight_func)")


def _align(args: Sequence[Any]) -> tuple[list[list[Any] | None], int]:
    """Each argument as a list of per-state values (``None`` for a broadcast value), and
    the number of states."""
    lengths = {}
    aligned: list[list[Any] | None] = []
    for i, a in enumerate(args):
        if isinstance(a, (list, tuple)):
            if not a:
                raise ValueError(f"args[{i}] is an empty {type(a).__name__}; every sequence "
                                 "must hold at least one state")
            aligned.append(list(a))
            if len(a) > 1:
                lengths[i] = len(a)
        else:
            aligned.append(None)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"args hold sequences of different lengths {lengths} (position: "
                         "length); sequences must have the same length, or length 1 to be "
                         "repeated")
    return aligned, max(lengths.values(), default=1)


def _weight(func: Callable[..., float], name: Any, n: int, k: int, kwargs: dict) -> float:
    try:
        weight = float(func(n, k, **kwargs))
    except TypeError as err:
        # Name the bad keyword rather than leave a bare TypeError from a private function.
        try:
            inspect.signature(func).bind(n, k, **kwargs)
        except TypeError:
            raise TypeError(f"weight_func {name!r} does not accept the keyword arguments "
                            f"{sorted(kwargs)}: {err}") from None
        raise
    if not math.isfinite(weight):
        raise ValueError(f"fp_correction: weight_func {name!r} gave the weight {weight!r} to "
                         f"state {k} of {n} (keyword arguments {kwargs}); weights must be "
                         "finite")
    return weight


def fp_correction(crit: Callable[..., Any], args: Sequence[Any],
                  weight_func: str | Callable[..., float] = "exp",
                  return_loss_values: bool = False,
                  **kwargs: Any) -> Tensor | tuple[Tensor, list[float]]:
    """Fixed-point correction: ``sum_k w_k * crit(*args_k)`` over the states of a solve.

    ``args`` lists the arguments of ``crit``; a list or tuple among them holds one value per
    state (e.g. the states a DEQ returns with ``sup_gap``), anything else (a target, a
    mask) is passed unchanged for every state. Sequences must share one length ``n``
    (length 1 repeats). State ``k`` weighs ``weight_func(n, k, **kwargs)``:

    - ``'exp'``: ``gamma ** (n - k - 1)``, ``gamma=0.8``;
    - ``'linear'``: ``1 - (n - k - 1) / n * gamma + bias``, ``gamma=0.9``, ``bias=0``;
    - ``'const'``: ``c``, ``c=1`` (works on every device, unlike TorchDEQ's).

    Args:
        crit: the loss, ``crit(*per_state_args) -> Tensor`` (a scalar, usually).
        args: the arguments of ``crit``, per-state sequences and shared values.
        weight_func: a registered name (see :func:`register_weight_func`) or a callable
            ``(n, k, **kwargs) -> float``.
        return_loss_values: also return each state's unweighted loss as a float (one host
            synchronisation per state).
        **kwargs: keyword arguments of the weight function (``gamma``, ``bias``, ``c``).

    Returns:
        The weighted loss; with ``return_loss_values``, ``(loss, [loss_0, ..., loss_n-1])``.

    Raises:
        ValueError: an unknown ``weight_func`` name (the registered ones are listed), no
            arguments, an empty sequence or sequences of different lengths, a keyword
            argument of a built-in weight function that is not a finite number (``gamma``
            of ``'exp'`` must also be >= 0), or a weight that is not finite (NaN or an
            infinity would silently make the loss and every gradient NaN).
        TypeError: ``args`` is not a list or tuple, or keyword arguments the weight function
            does not take.

    Example:
        >>> import numpy as np, npdeq
        >>> zs = [npdeq.tensor(np.full((2, 3), v)) for v in (3.0, 2.0, 1.0)]  # (B, d) each
        >>> y = npdeq.tensor(np.zeros((2, 3)))
        >>> loss, values = fp_correction(npdeq.mse_loss, (zs, y), return_loss_values=True)
        >>> values, round(loss.item(), 2)        # 0.64 * 9 + 0.8 * 4 + 1 * 1
        ([9.0, 4.0, 1.0], 9.96)
    """
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple of crit's arguments, got "
                        f"{type(args).__name__}")
    if not args:
        raise ValueError("args is empty; pass the arguments of crit, e.g. (z_list, target)")
    func = _get_weight_func(weight_func)
    aligned, n = _align(args)
    loss = None
    values: list[float] = []
    for k in range(n):
        term = crit(*[a if seq is None else seq[k % len(seq)] for a, seq in zip(args, aligned)])
        weighted = _weight(func, weight_func, n, k, kwargs) * term
        loss = weighted if loss is None else loss + weighted
        if return_loss_values:
            values.append(term.item() if isinstance(term, Tensor) else float(term))
    return (loss, values) if return_loss_values else loss
