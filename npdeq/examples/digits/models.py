"""The demo's DEQ classifiers for 8x8 digit images: an MLP-DEQ and a small convolutional DEQ.

Each model is an :class:`npdeq.nn.Module` holding an injection, the DEQ map ``f``, a DEQ
core from :func:`npdeq.get_deq` and a linear head. ``forward(x)`` returns ``(logits, info)``
with the forward solver's statistics in ``info``.
"""

from __future__ import annotations

from typing import Any

from npdeq import nn
from npdeq.autodiff import Tensor, avg_pool2d, flatten, tanh
from npdeq.core import get_deq

__all__ = ["MLPDEQ", "ConvDEQ", "build_model", "MODELS"]


class MLPDEQ(nn.Module):
    """``z* = tanh(W z* + U x + b)`` with a linear head on ``z*``.

    Args:
        deq_config: the DEQ core's settings (:func:`npdeq.get_deq` keywords).
        in_features: inputs per sample (64 for 8x8 images).
        hidden: the state size.
        classes: outputs.
        seed: initialisation seed.

    Shapes: ``(B, 64) -> (B, classes)``.
    """

    def __init__(self, deq_config: dict[str, Any], in_features: int = 64, hidden: int = 256,
                 classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        self.hidden = hidden
        self.injection = nn.Linear(in_features, hidden, seed=seed)
        self.mixing = nn.Linear(hidden, hidden, bias=False, seed=seed + 1)
        self.head = nn.Linear(hidden, classes, seed=seed + 2)
        self.deq = get_deq(**deq_config)

    def forward(self, x: Any) -> tuple[Tensor, dict]:
        x = x if isinstance(x, Tensor) else Tensor(x)
        u = self.injection(flatten(x, 1))
        xp = x.xp
        z0 = xp.zeros((x.shape[0], self.hidden), dtype=x.dtype, device=x.device)
        z_out, info = self.deq(lambda z: tanh(self.mixing(z) + u), z0)
        return self.head(z_out[-1]), info


class ConvDEQ(nn.Module):
    """``z* = tanh(conv(z*) + inject(x))`` on ``(B, C, 8, 8)`` states, then GroupNorm, 2x2
    average pooling and a linear head.

    Args:
        deq_config: the DEQ core's settings.
        channels: state channels C.
        classes: outputs.
        seed: initialisation seed.

    Shapes: ``(B, 64)`` or ``(B, 1, 8, 8)`` -> ``(B, classes)``.
    """

    def __init__(self, deq_config: dict[str, Any], channels: int = 16, classes: int = 10,
                 seed: int = 0, groups: int = 4) -> None:
        super().__init__()
        self.channels, self.groups = channels, groups
        self.injection = nn.Conv2d(1, channels, 3, padding=1, seed=seed)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False, seed=seed + 1)
        self.norm = nn.GroupNorm(groups, channels)
        self.head = nn.Linear(channels * 16, classes, seed=seed + 2)
        self.deq = get_deq(**deq_config)

    def forward(self, x: Any) -> tuple[Tensor, dict]:
        x = x if isinstance(x, Tensor) else Tensor(x)
        x = x.reshape(x.shape[0], 1, 8, 8)
        u = self.injection(x)
        xp = x.xp
        z0 = xp.zeros((x.shape[0], self.channels, 8, 8), dtype=x.dtype, device=x.device)
        # tanh is 1-Lipschitz: with the weight-normed convolution the map stays close to a
        # contraction (GroupNorm inside f would fix the state's scale and keep the residual
        # from shrinking).
        z_out, info = self.deq(lambda z: tanh(self.conv(z) + u), z0)
        pooled = avg_pool2d(self.norm(z_out[-1]), 2)
        return self.head(flatten(pooled, 1)), info


MODELS = {"mlp": MLPDEQ, "conv": ConvDEQ}


def build_model(name: str, deq_config: dict[str, Any], seed: int = 0) -> nn.Module:
    """The demo model ``name`` (``'mlp'``, ``'conv'`` or ``'multiscale'``)."""
    if name == "multiscale":
        from npdeq.models import multiscale_classifier
        return multiscale_classifier(deq_config, seed=seed)
    return MODELS[name](deq_config, seed=seed)
