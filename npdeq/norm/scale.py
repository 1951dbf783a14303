"""TorchDEQ's scale settings, shared by the weight and spectral norms.

Both norms rescale a weight by a factor ``g / n`` (``n`` the norm divided by): ``g`` learned
per output (``learn_scale``) or the constant ``target_norm``, and with ``clip`` the factor is
``min(clip_value, g / n)``. :class:`ScaledNorm` holds these settings, reads them from the
``norm_*`` config keys and checks them; :func:`check_scale_settings` is the check.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq.backend.checks import check_bool, check_real
from npdeq.core.config import DEQConfig
from npdeq.nn.layers import Conv2d, Linear
from npdeq.norm.base import NormBase

__all__ = ["ScaledNorm", "check_scale_settings", "CONFIG_KEYS"]

# The DEQ config key behind each constructor setting, named in errors (apply_norm's users
# pass the config keys).
CONFIG_KEYS = {"learn_scale": "config key norm_no_scale, negated",
               "target_norm": "config key norm_target_norm", "clip": "config key norm_clip",
               "clip_value": "config key norm_clip_value",
               "n_power_iterations": "config key sn_n_power_iters"}


def check_scale_settings(learn_scale: Any, target_norm: Any, clip: Any,
                         clip_value: Any) -> tuple[bool, float, bool, float]:
    """Check the scale settings shared by the weight and spectral norms.

    Args:
        learn_scale: learn ``g`` (bool).
        target_norm: the fixed scale when ``g`` is not learned (a finite number > 0).
        clip: clip the rescaling factor (bool).
        clip_value: the largest factor when clipping (a finite number > 0).

    Returns:
        The settings as ``(bool, float, bool, float)``.

    NumPy scalars are accepted; NaN and infinities are not.

    Raises:
        ValueError: a setting of the wrong type or range, named with its value.

    Example:
        >>> check_scale_settings(True, 1, False, 2)
        (True, 1.0, False, 2.0)
    """
    flags = []
    for key, value in (("learn_scale", learn_scale), ("clip", clip)):
        try:
            flags.append(check_bool(key, value))
        except TypeError:
            raise ValueError(f"{key} ({CONFIG_KEYS[key]}) must be True or False, got "
                             f"{value!r}") from None
    checked = [check_real(f"{key} ({CONFIG_KEYS[key]})", value, 0.0, low_open=True)
               for key, value in (("target_norm", target_norm), ("clip_value", clip_value))]
    return flags[0], checked[0], flags[1], checked[1]


class ScaledNorm(NormBase):
    """A norm with TorchDEQ's scale settings, for ``Linear`` and ``Conv2d`` weights by default.

    Args:
        names: the weights' attribute names.
        dims: their output axes (``0``: one norm per output row/channel).
        learn_scale: learn ``g`` (config ``not norm_no_scale``).
        target_norm: the fixed scale when ``g`` is not learned, or the initial ``g``
            (``norm_target_norm``).
        clip: clip the factor ``g / n`` at ``clip_value`` (``norm_clip``).
        clip_value: the largest factor (``norm_clip_value``).

    Raises:
        ValueError: a bad setting (named with its value).
    """

    _target_modules = {Linear: (("weight",), (0,)), Conv2d: (("weight",), (0,))}

    def __init__(self, names: Sequence[str], dims: Sequence[Any], learn_scale: bool = True,
                 target_norm: float = 1.0, clip: bool = False, clip_value: float = 1.0) -> None:
        super().__init__(names, dims)
        (self.learn_scale, self.target_norm, self.clip,
         self.clip_value) = check_scale_settings(learn_scale, target_norm, clip, clip_value)

    @classmethod
    def settings_from_config(cls, config: DEQConfig) -> dict[str, Any]:
        """``learn_scale``, ``target_norm``, ``clip``, ``clip_value`` from the config keys
        ``norm_no_scale``, ``norm_target_norm``, ``norm_clip``, ``norm_clip_value``.

        Args:
            config: a DEQ configuration.

        Returns:
            Keyword arguments for :meth:`apply`.

        Example:
            >>> ScaledNorm.settings_from_config(DEQConfig({'norm_no_scale': True}))['learn_scale']
            False
        """
        return {"learn_scale": not config.get("norm_no_scale"),
                "target_norm": config.get("norm_target_norm"),
                "clip": config.get("norm_clip"), "clip_value": config.get("norm_clip_value")}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, learn_scale={self.learn_scale}, "
                f"target_norm={self.target_norm}, clip={self.clip}, "
                f"clip_value={self.clip_value}")
