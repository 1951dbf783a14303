"""Optimizers (``SGD``, ``Adam``, ``AdamW``) and learning-rate schedules, PyTorch's
``torch.optim`` names, defaults and update rules.

An optimizer holds parameter groups (lists of :class:`~npdeq.nn.Parameter` with their own
settings) and updates the parameters that have a gradient, each in its own namespace, device
and dtype (:mod:`npdeq.optim.optimizer`). The schedules are in
:mod:`npdeq.optim.lr_scheduler` (``from npdeq.optim.lr_scheduler import StepLR``, as
PyTorch); ``CosineAnnealingLR`` is also here.
"""

from npdeq.optim import lr_scheduler
from npdeq.optim.adam import Adam, AdamW
from npdeq.optim.lr_scheduler import CosineAnnealingLR
from npdeq.optim.optimizer import Optimizer
from npdeq.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "CosineAnnealingLR", "lr_scheduler"]
