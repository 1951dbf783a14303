"""``Parameter``: a leaf Tensor that a :class:`~npdeq.nn.Module` registers as trainable."""

from __future__ import annotations

from typing import Any

from npdeq.autodiff.tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A trainable array: a leaf :class:`~npdeq.Tensor` with ``requires_grad=True``.

    Assigning a Parameter to an attribute of a :class:`~npdeq.nn.Module` registers it, so
    ``module.parameters()``, ``state_dict()``, ``to()`` and the optimizers find it. Its
    identity is stable: ``Module.to`` and ``load_state_dict`` replace ``.data``, never the
    object, so an optimizer built before a move still holds the model's parameters.

    Args:
        data: a floating-point array of any supported library (or a Tensor, whose array is
            shared).
        requires_grad: ``False`` for a frozen parameter (still saved and moved).

    Raises:
        TypeError: a non-floating-point array.

    Example:
        >>> import numpy as np
        >>> p = Parameter(np.zeros(3))
        >>> p.requires_grad, p.is_leaf
        (True, True)
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data, requires_grad=False)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
