"""``Dropout``: PyTorch's ``torch.nn.Dropout``, a new mask at every call in training mode, the
identity in evaluation mode. For dropout inside a DEQ map (one mask per training step, so
the solver sees one map) use :mod:`npdeq.dropout`'s variational dropout instead.
"""

from __future__ import annotations

from typing import Any

from npdeq.backend.checks import check_real
from npdeq.nn import functional as F
from npdeq.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each entry with probability ``p`` and scale the rest by ``1 / (1 - p)``
    (training); return the input unchanged (evaluation).

    Args:
        p: the drop probability, in ``[0, 1]``.
        inplace: must be ``False`` (npdeq never modifies its inputs).

    Raises:
        ValueError: ``p`` outside ``[0, 1]`` or NaN; ``inplace=True``.

    Example:
        >>> import numpy as np
        >>> drop = Dropout(0.5)
        >>> x = np.ones(4)
        >>> drop.eval()(x) is x
        True
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = check_real("p", p, 0.0, 1.0, owner="Dropout")
        F.check_no_inplace(inplace, "Dropout")
        self.inplace = False

    def forward(self, x: Any) -> Any:
        if not self.training:
            return x
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"
