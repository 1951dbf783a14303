"""Embedding lookup: rows of a weight table picked by integer indices, PyTorch's
``torch.nn.functional.embedding``.

Two primitives, each the other's VJP (so gradients of any order work): ``_take_rows``
gathers rows (``xp.take`` along axis 0) and ``_add_rows`` adds rows back by index
(``backend.add_rows``: a scatter-add, repeated indices add up).
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops.elementwise import where
from npdeq.autodiff.ops.shape import reshape
from npdeq.autodiff.ops.util import ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["embedding"]

_take_rows = primitive(lambda table, index: ns(table).take(table, index, axis=0),
                       name="take_rows")
"""``(V, D), (N,) -> (N, D)``: rows ``index`` of ``table``."""

_add_rows = primitive(lambda values, num_rows, index: backend.add_rows(num_rows, index, values),
                      name="add_rows")
"""``(N, D) -> (num_rows, D)``: ``values[i]`` added into row ``index[i]``."""

defvjp(_take_rows, lambda g, ans, table, index: _add_rows(g, table.shape[0], index))
defvjp(_add_rows, lambda g, ans, values, num_rows, index: _take_rows(g, index))


def embedding(input: Any, weight: Any, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` picked by the integer array ``input``, as
    ``torch.nn.functional.embedding``.

    The gradient with respect to ``weight`` adds each output's cotangent into the row it
    came from (repeated indices add up); the row ``padding_idx`` gets none.

    Args:
        input: integer array (or Tensor of one) of any shape, values in ``[0, V)``.
        weight: ``(V, D)`` Tensor or array.
        padding_idx: a row that receives no gradient (negative counts from the end), or
            ``None``.

    Returns:
        ``input.shape + (D,)`` Tensor in ``weight``'s namespace, dtype and device.

    Raises:
        TypeError: ``input`` is not an integer array.
        ValueError: ``weight`` is not 2-D, ``padding_idx`` is outside ``[-V, V)``, or an index
            is outside ``[0, V)`` (checked with one host read, as PyTorch's IndexError).

    Example:
        >>> import numpy as np, npdeq
        >>> table = np.arange(6.0).reshape(3, 2)
        >>> npdeq.embedding(np.array([[2, 0]]), table).numpy().tolist()
        [[[4.0, 5.0], [0.0, 1.0]]]
    """
    index = raw(input)
    table = raw(weight)
    xp = ns(index)
    if not hasattr(index, "dtype") or not xp.isdtype(index.dtype, "integral"):
        raise TypeError(f"embedding: input must be an array of integers, got "
                        f"{getattr(index, 'dtype', type(index).__name__)}")
    if len(table.shape) != 2:
        raise ValueError(f"embedding: weight must have shape (num_embeddings, embedding_dim), "
                         f"got shape {tuple(table.shape)}")
    rows, dim = table.shape
    if padding_idx is not None:
        padding = backend.check_int("padding_idx", padding_idx, -rows, owner="embedding")
        if padding >= rows:
            raise ValueError(f"embedding: padding_idx must be in [{-rows}, {rows}) for "
                             f"{rows} embeddings, got {padding_idx!r}")
        padding_idx = padding % rows
    flat = xp.reshape(index, (-1,))
    if flat.shape[0]:
        low, high = (backend.to_scalar(xp.min(flat)), backend.to_scalar(xp.max(flat)))
        if low < 0 or high >= rows:
            bad = low if low < 0 else high
            raise ValueError(f"embedding: index {bad} is out of range for {rows} embeddings "
                             f"(input of shape {tuple(index.shape)}; indices must be in "
                             f"[0, {rows}))")
    out = _take_rows(weight, flat)
    if padding_idx is not None:
        # Where the padding row was picked, its values as a constant: no gradient flows back.
        picked = xp.reshape(flat == padding_idx, (-1, 1))
        out = where(picked, raw(out), out)
    return reshape(out, tuple(index.shape) + (dim,))
