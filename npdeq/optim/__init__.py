"""Optimizers (``SGD``, ``Adam``, ``AdamW``) and learning-rate schedules, PyTorch's
``torch.optim`` names, defaults and update rules.

An optimizer holds parameter groups (lists of :class:`~npdeq.nn.Parameter` with their own
settings) and updates each parameter's ``.data`` from its ``.grad`` in the parameter's own
namespace, on its device and in its dtype (a gradient of another dtype is cast; a step never
changes a parameter's dtype); parameters without a gradient are skipped. The schedules are
in :mod:`npdeq.optim.lr_scheduler` (``from npdeq.optim.lr_scheduler import StepLR``, as
PyTorch); ``CosineAnnealingLR`` is also here. Imports :mod:`npdeq.nn`, the tape and the
backend.
"""

from npdeq.optim import lr_scheduler
from npdeq.optim.adam import Adam, AdamW
from npdeq.optim.lr_scheduler import CosineAnnealingLR
from npdeq.optim.optimizer import Optimizer
from npdeq.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "CosineAnnealingLR", "lr_scheduler"]
