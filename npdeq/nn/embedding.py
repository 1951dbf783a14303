"""``Embedding``: a lookup table of learned vectors, PyTorch's ``torch.nn.Embedding``, a thin
Module over :func:`npdeq.embedding`.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.backend import Array
from npdeq.autodiff import ops
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_int
from npdeq.nn import init
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter

__all__ = ["Embedding"]


def _padding_idx(padding_idx: Any, num_embeddings: int) -> int | None:
    """``padding_idx`` as a row in ``[0, num_embeddings)`` (negatives count from the end)."""
    if padding_idx is None:
        return None
    index = check_int("padding_idx", padding_idx, owner="Embedding")
    if not -num_embeddings <= index < num_embeddings:
        raise ValueError(f"Embedding: padding_idx must be in [{-num_embeddings}, "
                         f"{num_embeddings}) for num_embeddings={num_embeddings}, got "
                         f"{padding_idx!r}")
    return index % num_embeddings


def _normal(shape: tuple[int, ...], seed: Any, where: dict) -> Any:
    """N(0, 1) samples drawn on the host (the same values on every library and device for
    one seed, as :func:`npdeq.nn.init.uniform`), created where ``where`` says."""
    like = init.new_array((), **where)
    host_xp = backend.default_namespace()
    host = backend.random_normal(shape, like=host_xp.zeros((), dtype=host_xp.float64),
                                 seed=init.generator(seed))
    return backend.move_array(host, backend.array_namespace(like), backend.device(like),
                              dtype=like.dtype)


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``, indexed by integers.

    ``weight`` starts as N(0, 1) samples (PyTorch's default), with the row ``padding_idx``
    set to zeros; that row receives no gradient. The gradient of the other rows adds up the
    cotangents of every position that picked them.

    Args:
        num_embeddings: rows V of the table.
        embedding_dim: size D of each vector.
        padding_idx: a row kept out of training (negative counts from the end), or ``None``.
        seed, xp, dtype, device: as for :class:`~npdeq.nn.Linear`.

    Shapes: an integer array of any shape ``S`` (values in ``[0, V)``) ``-> S + (D,)``;
    ``weight`` is ``(V, D)``.

    Raises:
        ValueError: a size that is not a positive int, or ``padding_idx`` out of range; at
            call, an index out of range.
        TypeError: at call, an input that is not an integer array.

    Example:
        >>> import numpy as np
        >>> emb = Embedding(10, 3, padding_idx=0, seed=0)
        >>> out = emb(np.array([[0, 2, 4], [4, 3, 9]]))
        >>> out.shape, out.numpy()[0, 0].tolist()
        ((2, 3, 3), [0.0, 0.0, 0.0])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 *, seed: Any = None, xp: Any = None, dtype: Any = None,
                 device: Any = None) -> None:
        super().__init__()
        self.num_embeddings = check_int("num_embeddings", num_embeddings, 1, owner="Embedding")
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, owner="Embedding")
        self.padding_idx = _padding_idx(padding_idx, self.num_embeddings)
        weight = _normal((self.num_embeddings, self.embedding_dim), seed,
                         dict(xp=xp, dtype=dtype, device=device))
        if self.padding_idx is not None:
            weight[self.padding_idx, :] = 0.0
        self.weight = Parameter(weight)

    @classmethod
    def from_pretrained(cls, embeddings: Array, freeze: bool = True,
                        padding_idx: int | None = None) -> "Embedding":
        """An Embedding holding a copy of the ``(V, D)`` array ``embeddings`` (PyTorch's
        classmethod); ``freeze`` turns its gradient off.

        Raises:
            ValueError: ``embeddings`` is not 2-D, or a bad ``padding_idx``.
            TypeError: ``freeze`` is not a bool.

        Example:
            >>> import numpy as np
            >>> emb = Embedding.from_pretrained(np.eye(3))
            >>> emb(np.array([2])).numpy().tolist(), emb.weight.requires_grad
            ([[0.0, 0.0, 1.0]], False)
        """
        data = embeddings.data if isinstance(embeddings, Tensor) else embeddings
        if len(getattr(data, "shape", ())) != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D "
                             f"(num_embeddings, embedding_dim), got shape "
                             f"{tuple(getattr(data, 'shape', ()))}")
        freeze = check_bool("freeze", freeze, owner="Embedding.from_pretrained")
        xp = backend.array_namespace(data)
        module = cls.__new__(cls)
        Module.__init__(module)
        module.num_embeddings, module.embedding_dim = (int(s) for s in data.shape)
        module.padding_idx = _padding_idx(padding_idx, module.num_embeddings)
        module.weight = Parameter(xp.asarray(data, copy=True))
        module.weight.requires_grad_(not freeze)
        return module

    def forward(self, input: Any) -> Tensor:
        return ops.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        extra = f"{self.num_embeddings}, {self.embedding_dim}"
        return extra if self.padding_idx is None else f"{extra}, padding_idx={self.padding_idx}"
