"""DeepEquilibriumNetworks.jl's models on npdeq's DEQ cores: ``SkipDEQ`` (a learned initial
guess, or SkipRegDEQ's one pass of ``f``), ``MultiScaleDEQ`` (a tuple state at several
resolutions, one fixed point), the ``Parallel`` combinator their layers are written with, and
a ready-made multi-scale digits classifier (``multiscale_classifier``).

Every model returns ``(z_out, info)`` (the classifier ``(logits, info)``) with the solve's
record :class:`~npdeq.core.DEQSolution` in ``info['solution']`` (re-exported here). Modules:
``common`` (shared checks, the default core), ``layers`` (``Parallel``), ``skip``,
``multiscale``, ``classifier``.
"""

from npdeq.core.solution import DEQSolution
from npdeq.models.classifier import MultiScaleClassifier, multiscale_classifier
from npdeq.models.layers import Parallel
from npdeq.models.multiscale import MultiScaleDEQ
from npdeq.models.skip import SkipDEQ

__all__ = ["SkipDEQ", "MultiScaleDEQ", "Parallel", "MultiScaleClassifier",
           "multiscale_classifier", "DEQSolution"]
