"""Weight normalisation for DEQ layers (Salimans & Kingma 2016), with TorchDEQ's options.

``W = v * g / ||v||``, the norm taken over every axis but the output axis, so each output
row (or channel) of ``W`` has norm ``g``. TorchDEQ's variants: without a learned scale
(``learn_scale=False``, config ``norm_no_scale``) ``g`` is the constant ``target_norm``;
with clipping the factor is ``min(clip_value, g / ||v||)``, so rows can shrink but never
grow past ``clip_value`` times ``v``. :func:`weight_normalize` is the formula on the tape;
:class:`WeightNorm` attaches it to a module.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff import Tensor, no_grad, ops
from npdeq.backend import Array
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter
from npdeq.norm.base import as_tensor_operand, norm_except_dim
from npdeq.norm.scale import CONFIG_KEYS, ScaledNorm, check_scale_settings

__all__ = ["WeightNorm", "weight_normalize", "check_scale_settings", "check_norms",
           "CONFIG_KEYS"]

def check_norms(norm: Array, scale: Array | None, what: str) -> None:
    """Raise unless every norm divided by is a finite number > 0 and the scale is finite.

    Checked before dividing, with one host read (``backend.to_scalar``); the error path
    reads more to count the zero norms.

    Args:
        norm: the raw array of the norms divided by.
        scale: the raw array of the scale ``g``, or ``None`` for a constant.
        what: who is normalising what, for the message.

    Raises:
        ValueError: a zero or non-finite norm, or a non-finite scale.

    Example:
        >>> import numpy as np
        >>> check_norms(np.array([0.0, 2.0]), None, 'weight_normalize')
        Traceback (most recent call last):
        ...
        ValueError: weight_normalize: ... 1 of 2 norm(s) divided by are zero ...
    """
    xp = backend.array_namespace(norm)
    good = xp.all(xp.isfinite(norm) & (norm > 0))
    if scale is not None:
        good = good & xp.all(xp.isfinite(scale))
    if backend.to_scalar(good):
        return
    zero = int(backend.to_scalar(xp.sum(xp.astype(norm == 0, xp.int64))))
    if zero:
        reason = (f"{zero} of {int(norm.size)} norm(s) divided by are zero (an all-zero row "
                  "or weight has no direction to normalise)")
    else:
        reason = "the weight, its scale or its norm holds NaN or an infinity"
    raise ValueError(f"{what}: the normalised weight would not be finite: {reason}")


def weight_normalize(v: Any, g: Any = None, *, dim: int | None = 0, target_norm: float = 1.0,
                     clip: bool = False, clip_value: float = 1.0,
                     _what: str = "weight_normalize") -> Tensor:
    """``v * g / ||v||`` (TorchDEQ's weight norm), recorded on the tape.

    Args:
        v: the direction, a weight such as ``(out, in)`` or ``(out, in, kh, kw)`` (Tensor or
            array).
        g: the scale, shaped like :func:`~npdeq.norm.base.norm_except_dim` of ``v``
            (``(out, 1, ...)`` for ``dim=0``), or ``None`` for the constant ``target_norm``.
        dim: the axis with one norm per index (``0``: per output), or ``None`` for the
            norm of the whole array.
        target_norm: the scale when ``g`` is ``None``.
        clip: use ``min(clip_value, g / ||v||)`` as the factor.
        clip_value: the largest factor when clipping.

    Returns:
        The normalised weight, shaped like ``v``.

    Raises:
        ValueError: a bad setting; or a norm ``||v||`` that is zero (a row of zeros: the
            direction of a zero vector is undefined, and ``0 * g / 0`` would be NaN, as it
            silently is in PyTorch), or a factor that is not finite for another reason
            (NaN or infinite entries). Checking costs one host read per call: the weight is
            normalised once per training step, not per solver iteration.

    Example:
        >>> import numpy as np
        >>> weight_normalize(np.array([[3.0, 4.0]]), np.array([[10.0]])).data
        array([[6., 8.]])
        >>> weight_normalize(np.array([[3.0, 4.0]]), np.array([[10.0]]), clip=True).data
        array([[3., 4.]])
    """
    _, target_norm, clip, clip_value = check_scale_settings(True, target_norm, clip,
                                                            clip_value)
    v = as_tensor_operand(v)
    scale = target_norm if g is None else as_tensor_operand(g)
    norm = norm_except_dim(v, dim)
    check_norms(norm.data, None if g is None else scale.data, _what)
    factor = scale / norm
    if clip:
        factor = ops.minimum(factor, clip_value)
    return v * factor


class WeightNorm(ScaledNorm):
    """Weight normalisation of a module's weights, recomputed once per reset.

    Registers the weight's Parameter as ``weight_v`` (the same object) and, with a learned
    scale, ``weight_g`` initialised to ``||v||`` so the weight is unchanged at first;
    ``module.weight`` becomes :func:`weight_normalize` of them, a Tensor on the tape through
    which the loss's gradient reaches ``v`` and ``g``. Without a learned scale no ``g`` is
    registered and each output row gets norm ``target_norm``. Built by
    :func:`~npdeq.norm.apply_norm` or :meth:`apply`.

    Args:
        names: the weights' attribute names.
        dims: their normalisation axes (``0``: one norm per output row/channel).
        learn_scale: learn ``g`` (config ``not norm_no_scale``).
        target_norm: the fixed scale when ``g`` is not learned (``norm_target_norm``).
        clip: clip the factor ``g / ||v||`` at ``clip_value`` (``norm_clip``).
        clip_value: the largest factor (``norm_clip_value``).

    A row (or channel) of ``v`` that is all zero has no direction: its normalised weight
    ``0 * g / 0`` is undefined (PyTorch silently makes it NaN). :meth:`apply` and every
    recomputation raise ``ValueError`` naming the module and weight instead, and
    :meth:`apply` then leaves the module as it was.

    Raises:
        ValueError: a bad setting (named with its value).

    Example:
        >>> import numpy as np
        >>> from npdeq.nn import Linear
        >>> layer = Linear(3, 2, seed=0)
        >>> before = layer.weight.data
        >>> norm = WeightNorm.apply(layer)
        >>> bool(np.allclose(layer.weight.data, before)), layer.weight_g.shape
        (True, (2, 1))
    """

    def _attach(self, module: Module, name: str, dim: Any, weight: Parameter) -> None:
        if self.learn_scale:
            with no_grad():
                g = norm_except_dim(weight, dim).data
            module.register_parameter(name + "_g", Parameter(g, requires_grad=weight.requires_grad))
        module.register_parameter(name + "_v", weight)

    def _detach(self, module: Module, name: str) -> None:
        module._parameters.pop(name + "_g", None)
        module._parameters.pop(name + "_v", None)

    def _source(self, module: Module, name: str) -> Parameter:
        return module._parameters[name + "_v"]

    def compute_weight(self, module: Module, name: str, dim: Any) -> Tensor:
        """``v * min(clip_value, g / ||v||)`` (no ``min`` without clipping; ``g`` is
        ``target_norm`` without a learned scale); arguments as
        :meth:`NormBase.compute_weight <npdeq.norm.base.NormBase.compute_weight>`.

        Raises:
            ValueError: a zero (or non-finite) norm of ``v``, naming the module and weight.
        """
        g = module._parameters[name + "_g"] if self.learn_scale else None
        return weight_normalize(module._parameters[name + "_v"], g, dim=dim,
                                target_norm=self.target_norm, clip=self.clip,
                                clip_value=self.clip_value,
                                _what=f"WeightNorm of {type(module).__name__}.{name}_v")
