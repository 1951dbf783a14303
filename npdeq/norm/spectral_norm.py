"""Spectral normalisation for DEQ layers (Miyato et al. 2018), with TorchDEQ's options.

``W = W_orig * g / sigma`` with ``sigma = u^T M v`` the largest singular value of
``M = W_orig`` reshaped to ``(out, -1)``, estimated by power iteration on the unit vectors
``u`` (``(out,)``) and ``v`` (``(in * ...,)``) kept as buffers. The power iteration runs
under ``no_grad`` once per reset and only in training mode; ``sigma`` itself is recorded
on the tape (``u`` and ``v`` held constant), as in PyTorch. ``g`` is learned per output,
initialised to ``target_norm`` (TorchDEQ), or the constant ``target_norm`` without a learned
scale; with clipping the factor is ``min(clip_value, g / sigma)``. The random start vectors
are drawn on the weight's namespace and device.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff import Tensor, ops
from npdeq.backend import Array
from npdeq.backend.checks import check_int, check_real
from npdeq.core.config import DEQConfig
from npdeq.nn import init
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter
from npdeq.norm.base import as_tensor_operand, reduce_axes
from npdeq.norm.scale import CONFIG_KEYS, ScaledNorm, check_scale_settings

__all__ = ["SpectralNorm", "spectral_normalize", "power_iteration", "weight_matrix"]


def _front(ndim: int, dim: int) -> tuple[int, ...]:
    dim %= ndim
    return (dim, *[a for a in range(ndim) if a != dim])


def weight_matrix(weight: Any, dim: int = 0) -> Any:
    """``weight`` with axis ``dim`` moved to the front and the rest flattened: ``(h, -1)``.

    Args:
        weight: a Tensor (the result is recorded) or a raw array (the result is raw).
        dim: the output axis.

    Returns:
        The matrix, e.g. ``(out, in * kh * kw)`` for a conv weight.

    Example:
        >>> import numpy as np
        >>> weight_matrix(np.zeros((4, 3, 2, 2))).shape
        (4, 12)
    """
    reduce_axes(weight.ndim, dim)  # checks dim
    perm = _front(weight.ndim, dim)
    h = weight.shape[perm[0]]
    if isinstance(weight, Tensor):
        moved = weight if perm == tuple(range(weight.ndim)) else ops.permute(weight, perm)
        return ops.reshape(moved, (h, -1))
    xp = backend.array_namespace(weight)
    return xp.reshape(xp.permute_dims(weight, perm), (h, -1))


def _unit(xp: Any, x: Any, eps: float) -> Any:
    return x / xp.maximum(xp.sqrt(xp.sum(x * x)), eps)


def power_iteration(matrix: Array, u: Array, v: Array, n_iterations: int = 1,
                    eps: float = 1e-12) -> tuple[Array, Array]:
    """``n_iterations`` steps of ``v <- M^T u / |.|``, ``u <- M v / |.|`` on raw arrays.

    Args:
        matrix: ``M``, a raw ``(h, w)`` array.
        u: unit vector ``(h,)``.
        v: unit vector ``(w,)``.
        n_iterations: number of steps (an int >= 0).
        eps: floor of the norms divided by (a finite number > 0).

    Raises:
        ValueError: a bad ``n_iterations`` or ``eps``.

    Returns:
        New ``(u, v)`` (the inputs are not modified); ``u @ M @ v`` then approximates
        ``M``'s largest singular value.

    Example:
        >>> import numpy as np
        >>> u, v = power_iteration(np.diag([3.0, 1.0]), np.ones(2) / 2**0.5, np.ones(2), 30)
        >>> round(float(u @ np.diag([3.0, 1.0]) @ v), 6)
        3.0
    """
    n_iterations = check_int("n_iterations", n_iterations, 0, owner="power_iteration")
    eps = check_real("eps", eps, 0.0, low_open=True, owner="power_iteration")
    xp = backend.array_namespace(matrix, u, v)
    for _ in range(n_iterations):
        v = _unit(xp, xp.matmul(u, matrix), eps)
        u = _unit(xp, xp.matmul(matrix, v), eps)
    return u, v


def spectral_normalize(weight: Any, u: Any, v: Any, g: Any = None, *, dim: int = 0,
                       target_norm: float = 1.0, clip: bool = False,
                       clip_value: float = 1.0, _what: str = "spectral_normalize") -> Tensor:
    """``weight * g / sigma`` with ``sigma = u^T M v`` (``M``: :func:`weight_matrix`).

    ``u`` and ``v`` are constants (raw arrays) for the tape: the gradient is the one of
    PyTorch's spectral norm.

    Args:
        weight: ``W_orig``, e.g. ``(out, in)`` or ``(out, in, kh, kw)`` (Tensor or array).
        u: ``(h,)`` left singular vector estimate (raw array).
        v: ``(w,)`` right singular vector estimate (raw array).
        g: the scale, shaped ``(out, 1, ...)`` for ``dim=0``, or ``None`` for the constant
            ``target_norm``.
        dim: the output axis.
        target_norm: the scale when ``g`` is ``None``.
        clip: use ``min(clip_value, g / sigma)`` as the factor.
        clip_value: the largest factor when clipping.

    Returns:
        The normalised weight, shaped like ``weight``.

    Raises:
        ValueError: a bad setting, or a ``sigma`` that is not a finite number > 0: an
            all-zero weight (spectral norm 0, so ``W / sigma`` is undefined; PyTorch silently
            returns NaN), non-finite entries, or ``u``, ``v`` orthogonal to the weight. One
            host read per call (once per training step in :class:`SpectralNorm`).

    Example:
        >>> import numpy as np
        >>> w = np.diag([4.0, 2.0])
        >>> spectral_normalize(w, np.array([1.0, 0.0]), np.array([1.0, 0.0])).data
        array([[1. , 0. ],
               [0. , 0.5]])
    """
    _, target_norm, clip, clip_value = check_scale_settings(True, target_norm, clip,
                                                            clip_value)
    weight = as_tensor_operand(weight)
    u = u.data if isinstance(u, Tensor) else u
    v = v.data if isinstance(v, Tensor) else v
    sigma = ops.sum(ops.matmul(weight_matrix(weight, dim), v) * u)
    xp = backend.array_namespace(sigma.data)
    if not backend.to_scalar(xp.all(xp.isfinite(sigma.data) & (sigma.data > 0))):
        value = backend.to_scalar(sigma.data)
        reason = ("an all-zero weight has spectral norm 0, so W / sigma is undefined"
                  if value == 0 else "the estimate must be a finite number > 0")
        raise ValueError(f"{_what}: sigma = u^T W v is {value!r}: {reason} (a stale u, v "
                         "after the weight changed are refreshed by a training-mode "
                         "reset_norm)")
    scale = target_norm if g is None else as_tensor_operand(g)
    factor = scale / sigma
    if clip:
        factor = ops.minimum(factor, clip_value)
    return weight * factor


def _positive_int(key: str, value: Any) -> int:
    return check_int(f"{key} ({CONFIG_KEYS[key]})", value, 1)


class SpectralNorm(ScaledNorm):
    """Spectral normalisation of a module's weights, recomputed once per reset.

    Registers the weight's Parameter as ``weight_orig`` (the same object), the buffers
    ``weight_u`` ``(out,)`` and ``weight_v`` ``(in * ...,)`` (random unit vectors drawn on
    the weight's namespace and device) and, with a learned scale, ``weight_g`` shaped
    ``(out, 1, ...)`` and initialised to ``target_norm``. Each reset runs
    ``n_power_iterations`` power-iteration steps (training mode only, outside the tape) and
    sets ``module.weight`` to :func:`spectral_normalize` of them. Built by
    :func:`~npdeq.norm.apply_norm` or :meth:`apply`.

    Args:
        names: the weights' attribute names.
        dims: their output axes.
        learn_scale: learn ``g`` (config ``not norm_no_scale``).
        target_norm: initial ``g``, or the fixed scale when not learned
            (``norm_target_norm``).
        clip: clip the factor ``g / sigma`` at ``clip_value`` (``norm_clip``).
        clip_value: the largest factor (``norm_clip_value``).
        n_power_iterations: power-iteration steps per reset (``sn_n_power_iters``).
        eps: floor of the norms in the power iteration.
        seed: an int or ``numpy.random.Generator`` for the start vectors (default: npdeq's
            default generator, :func:`npdeq.nn.init.manual_seed`).

    An all-zero weight has spectral norm 0 and ``W / 0`` is undefined (PyTorch silently
    makes it NaN): :meth:`apply` and every recomputation raise ``ValueError`` naming the
    module and weight instead, before the power-iteration vectors change, and :meth:`apply`
    then leaves the module as it was.

    Raises:
        ValueError: a bad setting (named with its value; NumPy scalars accepted, NaN and
            infinities refused), or ``dims`` with ``None``.

    Example:
        >>> import numpy as np
        >>> from npdeq.nn import Linear
        >>> layer = Linear(6, 4, seed=0)
        >>> norm = SpectralNorm.apply(layer, learn_scale=False, n_power_iterations=50, seed=0)
        >>> round(float(np.linalg.norm(layer.weight.data, 2)), 6)
        1.0
    """

    takes_seed = True

    def __init__(self, names: Sequence[str], dims: Sequence[Any], learn_scale: bool = True,
                 target_norm: float = 1.0, clip: bool = False, clip_value: float = 1.0,
                 n_power_iterations: int = 1, eps: float = 1e-12, seed: Any = None) -> None:
        if isinstance(dims, (tuple, list)) and any(d is None for d in dims):
            # before the shared settings' checks, so this error wins as it always has
            raise ValueError(f"SpectralNorm needs an output axis per weight, got dims="
                             f"{tuple(dims)!r}")
        super().__init__(names, dims, learn_scale, target_norm, clip, clip_value)
        self.n_power_iterations = _positive_int("n_power_iterations", n_power_iterations)
        self.eps = check_real("eps", eps, 0.0, low_open=True, owner="SpectralNorm")
        self.generator = init.generator(seed)

    @classmethod
    def settings_from_config(cls, config: DEQConfig) -> dict[str, Any]:
        """The weight norm's settings plus ``n_power_iterations`` from ``sn_n_power_iters``.

        Args:
            config: a DEQ configuration.

        Returns:
            Keyword arguments for :meth:`apply`.

        Example:
            >>> SpectralNorm.settings_from_config(DEQConfig())['n_power_iterations']
            1
        """
        return {**super().settings_from_config(config),
                "n_power_iterations": config.get("sn_n_power_iters")}

    def _attach(self, module: Module, name: str, dim: Any, weight: Parameter) -> None:
        h, w = weight_matrix(weight.data, dim).shape
        xp = backend.array_namespace(weight.data)
        u = _unit(xp, backend.random_normal((h,), like=weight.data, seed=self.generator),
                  self.eps)
        v = _unit(xp, backend.random_normal((w,), like=weight.data, seed=self.generator),
                  self.eps)
        module.register_parameter(name + "_orig", weight)
        if self.learn_scale:
            shape = tuple(s if a == dim % weight.ndim else 1 for a, s in enumerate(weight.shape))
            g = xp.full(shape, self.target_norm, dtype=weight.dtype,
                        device=backend.device(weight.data))
            module.register_parameter(name + "_g", Parameter(g, requires_grad=weight.requires_grad))
        module.register_buffer(name + "_u", u)
        module.register_buffer(name + "_v", v)

    def _detach(self, module: Module, name: str) -> None:
        for suffix in ("_orig", "_g"):
            module._parameters.pop(name + suffix, None)
        for suffix in ("_u", "_v"):
            module._buffers.pop(name + suffix, None)

    def _source(self, module: Module, name: str) -> Parameter:
        return module._parameters[name + "_orig"]

    def _step(self, module: Module, name: str, dim: Any) -> None:
        # Only training moves the estimate, so evaluation is deterministic (PyTorch's rule).
        if not module.training:
            return
        matrix = weight_matrix(module._parameters[name + "_orig"].data, dim)
        xp = backend.array_namespace(matrix)
        # Checked before the vectors change: power iteration on a zero (or NaN) weight would
        # leave u and v zero (or NaN) for good, even once the weight is fixed.
        if not backend.to_scalar(xp.any(matrix != 0) & xp.all(xp.isfinite(matrix))):
            raise ValueError(f"SpectralNorm of {type(module).__name__}.{name}_orig: the weight "
                             "is all zero or holds NaN or an infinity; its spectral norm "
                             "cannot normalise it")
        u, v = power_iteration(matrix, module._buffers[name + "_u"],
                               module._buffers[name + "_v"], self.n_power_iterations, self.eps)
        module.register_buffer(name + "_u", u)
        module.register_buffer(name + "_v", v)

    def compute_weight(self, module: Module, name: str, dim: Any) -> Tensor:
        """``W_orig * min(clip_value, g / sigma)`` at the current ``u``, ``v`` (no ``min``
        without clipping; ``g`` is ``target_norm`` without a learned scale); arguments as
        :meth:`NormBase.compute_weight <npdeq.norm.base.NormBase.compute_weight>`.

        Raises:
            ValueError: ``sigma`` is not a finite number > 0 (an all-zero weight), naming
                the module and weight.
        """
        g = module._parameters[name + "_g"] if self.learn_scale else None
        return spectral_normalize(module._parameters[name + "_orig"],
                                  module._buffers[name + "_u"], module._buffers[name + "_v"],
                                  g, dim=dim, target_norm=self.target_norm, clip=self.clip,
                                  clip_value=self.clip_value,
                                  _what=f"SpectralNorm of {type(module).__name__}.{name}_orig")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_power_iterations={self.n_power_iterations}"
