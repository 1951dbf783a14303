"""A ready-made multi-scale DEQ classifier for small images (the 8x8 digits of ``npdeq demo``).

Dense layers at every scale, as DeepEquilibriumNetworks.jl's multi-scale example, sized for the
64 pixels of a digit: a forward on a batch of 128 is a few small matrix products per solver
iteration.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq.autodiff import Tensor, add, concat, flatten
from npdeq.backend.checks import check_int
from npdeq.models.common import as_input
from npdeq.models.layers import Parallel
from npdeq.models.multiscale import MultiScaleDEQ
from npdeq.nn import Identity, Linear, Module, Tanh, init

__all__ = ["MultiScaleClassifier", "multiscale_classifier"]

# Solver settings unless the caller's config says otherwise: Anderson both ways (the backward
# fixed-point iteration runs out of its 40 steps once training loosens the contraction).
CLASSIFIER_DEQ_DEFAULTS: dict[str, Any] = {"f_solver": "anderson", "f_max_iter": 20,
                                           "b_solver": "anderson"}
# The recurrent (state-to-state) weights start at this fraction of PyTorch's default scale so
# that the initial map is a contraction and the first solves converge.
RECURRENT_SCALE = 0.5


class MultiScaleClassifier(Module):
    """``logits = head([z*_1, ..., z*_n])`` for the multi-scale fixed point of
    ``z_j = tanh(sum_i M_ij (W_i z_i + [i = 1] U x))``.

    The input is injected once (``U x``, into the first scale), each scale has its main
    linear layer ``W_i`` (with a bias on the coarser ones), ``M_ij`` maps scale ``i`` to scale
    ``j`` (the identity on the diagonal), and ``tanh`` follows the fusion. The head reads the
    concatenated states.

    Args:
        deq_config: DEQ config keys (:func:`npdeq.get_deq` keywords) over
            ``core='indexing', ift=True, f_solver='anderson', f_max_iter=20,
            b_solver='anderson'``.
        in_features: inputs per sample (64 for 8x8 images; ``(B, 1, 8, 8)`` is flattened).
        scales: state sizes per scale, finest first.
        classes: outputs.
        seed: initialisation seed (an int or ``numpy.random.Generator``; ``None``: npdeq's
            default generator).

    Shapes: ``(B, in_features)`` or ``(B, C, H, W)`` with ``C*H*W = in_features`` ->
    ``(B, classes)``.

    Raises:
        ValueError: a size that is not a positive int (NumPy integers accepted; named), or a
            bad DEQ setting.

    Example:
        >>> import numpy as np
        >>> model = MultiScaleClassifier(seed=0)
        >>> logits, info = model(np.zeros((5, 1, 8, 8)))
        >>> logits.shape, [tuple(z.shape) for z in info['solution'].z_star]
        ((5, 10), [(5, 32), (5, 16)])
    """

    def __init__(self, deq_config: dict[str, Any] | None = None, in_features: int = 64,
                 scales: Sequence[int] = (32, 16), classes: int = 10, seed: Any = 0) -> None:
        super().__init__()
        owner = "MultiScaleClassifier"
        in_features = check_int("in_features", in_features, 1, owner=owner)
        classes = check_int("classes", classes, 1, owner=owner)
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
            raise ValueError(f"{owner}: scales must be a non-empty sequence of positive ints, "
                             f"got {scales!r}")
        sizes = [check_int(f"scales[{i}]", s, 1, owner=owner) for i, s in enumerate(scales)]
        rng = init.generator(seed)
        self.injection = Linear(in_features, sizes[0], seed=rng)
        mains: list[Module] = [Parallel(add, Linear(sizes[0], sizes[0], bias=False, seed=rng),
                                        Identity())]
        mains += [Linear(s, s, seed=rng) for s in sizes[1:]]
        mapping = [[None if i == j else Linear(si, sj, bias=False, seed=rng)
                    for j, sj in enumerate(sizes)] for i, si in enumerate(sizes)]
        config = {**CLASSIFIER_DEQ_DEFAULTS, **(deq_config or {})}
        solver = config.pop("f_solver")
        self.deq_model = MultiScaleDEQ(mains, mapping, [Tanh() for _ in sizes], solver,
                                       [(s,) for s in sizes], **config)
        for name, param in self.deq_model.named_parameters():
            if name.endswith("weight"):
                param.data = RECURRENT_SCALE * param.data  # a new array: nothing in place
        self.head = Linear(sum(sizes), classes, seed=rng)

    def forward(self, x: Any) -> tuple[Tensor, dict]:
        """Classify a batch.

        Args:
            x: ``(B, in_features)`` or ``(B, C, H, W)`` array or Tensor (not modified).

        Returns:
            ``(logits, info)``: logits ``(B, classes)`` from the last returned state; ``info``
            the DEQ core's, with ``info['solution']``.
        """
        x = as_input(x, "MultiScaleClassifier")
        z_out, info = self.deq_model(self.injection(flatten(x, 1)))
        return self.head(concat(list(z_out[-1]), axis=1)), info


def multiscale_classifier(deq_config: dict[str, Any] | None = None, seed: Any = 0,
                          **kwargs: Any) -> MultiScaleClassifier:
    """The multi-scale DEQ classifier for 8x8 digits (``npdeq demo --model multiscale``).

    Args:
        deq_config: DEQ config keys (as the demo's other models take them).
        seed: initialisation seed.
        **kwargs: :class:`MultiScaleClassifier`'s ``in_features``, ``scales``, ``classes``.

    Returns:
        The model: ``forward(x) -> (logits, info)``, ``(B, 64)`` or ``(B, 1, 8, 8)`` ->
        ``(B, 10)``.

    Example:
        >>> import numpy as np
        >>> model = multiscale_classifier({'f_max_iter': 15}, seed=1)
        >>> model(np.zeros((4, 64)))[0].shape
        (4, 10)
    """
    return MultiScaleClassifier(deq_config, seed=seed, **kwargs)
