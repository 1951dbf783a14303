"""Weight normalisation for DEQ layers, TorchDEQ's ``torchdeq.norm``.

A DEQ map is called at every solver iteration; its normalised weights are computed once per
training step instead (``reset_norm``, or ``reset_deq`` which calls it) and reused by every
call, with gradients reaching the norm's parameters through the tape:

- :func:`apply_norm` normalises every ``Linear``/``Conv2d`` (or registered) module of a
  model with ``'weight_norm'`` (:class:`WeightNorm`) or ``'spectral_norm'``
  (:class:`SpectralNorm`), filtered by name and configured by the ``norm_*`` config keys;
- :func:`reset_norm` recomputes the weights, :func:`remove_norm` bakes them into plain
  Parameters;
- :func:`register_norm` and :func:`register_norm_module` add norms and module types.

Importing this package registers the ``reset_deq`` hook.

Example:
    >>> import npdeq
    >>> from npdeq.nn import Linear
    >>> layer = Linear(4, 4, seed=0)
    >>> npdeq.norm.apply_norm(layer, 'weight_norm', norm_no_scale=True)
    ['']
    >>> npdeq.reset_deq(layer)  # once per training step
"""

from npdeq.norm.apply import (apply_norm, register_norm, register_norm_module,
                              registered_norms, remove_norm, reset_norm)
from npdeq.norm.base import NormBase
from npdeq.norm.spectral_norm import SpectralNorm, spectral_normalize
from npdeq.norm.weight_norm import WeightNorm, weight_normalize

__all__ = ["apply_norm", "reset_norm", "remove_norm", "register_norm", "register_norm_module",
           "registered_norms", "NormBase", "WeightNorm", "SpectralNorm", "weight_normalize",
           "spectral_normalize"]
