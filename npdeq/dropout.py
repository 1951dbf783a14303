"""Variational dropout for DEQ layers, TorchDEQ's ``torchdeq.dropout``.

Ordinary dropout draws a new mask at every call; inside a DEQ map, called at every solver
iteration, that would change the map from one iteration to the next and there would be no
fixed point to find. Variational dropout draws one mask per training step (at the first
call after a reset), reuses it at every call until :func:`reset_dropout` (or ``reset_deq``)
and scales kept entries by ``1 / (1 - p)`` so the expected output is the input. It is the
identity in evaluation mode. Masks are drawn with the backend's random helpers in the
input's namespace and on its device, from the layer's ``seed`` or npdeq's default generator
(:func:`npdeq.nn.init.manual_seed`).

Mask shapes for channels-first inputs (``token_first=False``, npdeq's layout):

- :class:`VariationalDropout`: the input's shape (every entry independently);
- :class:`VariationalDropout1d`/``2d``/``3d``: ``(B, C, 1, ...)``, whole channels dropped;
- :class:`VariationalDropToken1d`/``2d``/``3d``: ``(B, 1, L, ...)``, whole positions dropped.

Importing this module registers the ``reset_deq`` hook.
"""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff import Tensor, ops
from npdeq.backend import Array
from npdeq.backend.checks import check_bool, check_real
from npdeq.core.registry import register_reset_hook
from npdeq.nn import init
from npdeq.nn.functional import dropout_mask
from npdeq.nn.module import Module

__all__ = ["VariationalDropout", "VariationalDropout1d", "VariationalDropout2d",
           "VariationalDropout3d", "VariationalDropToken1d", "VariationalDropToken2d",
           "VariationalDropToken3d", "reset_dropout"]

# Input layouts by number of spatial dims, (channels first, token_first), for error messages.
_LAYOUTS = {1: ("(B, C, L)", "(B, L, C)"), 2: ("(B, C, H, W)", "(B, H, W, C)"),
            3: ("(B, C, D, H, W)", "(B, D, H, W, C)")}


class _VariationalDropoutNd(Module):
    """Base class of the variational dropout layers: one mask per training step.

    Subclasses define :meth:`mask_shape`. The mask is drawn at the first training-mode call
    after a reset, and again when the input's mask shape, namespace or device changes (a
    new batch size, a model moved to the GPU).

    Args:
        dropout: probability p of zeroing an entry (or channel, or token), in ``[0, 1]``
            (a NumPy scalar is accepted; NaN is not). ``p = 1`` zeroes everything, a
            defined result (as PyTorch), without computing ``1 / (1 - p)``.
        token_first: the feature axis is last (``(B, L, C)``) instead of second
            (``(B, C, L)``); ignored by :class:`VariationalDropout`.
        seed: an int or ``numpy.random.Generator`` seeding this layer's stream of masks
            (default: npdeq's default generator).

    Attributes:
        mask: the current mask (a raw array of the input's dtype holding ``0`` and
            ``1 / (1 - p)``), or ``None`` until the next training-mode call.

    Raises:
        ValueError: ``dropout`` outside ``[0, 1]``, NaN, or not a number.
        TypeError: ``token_first`` is not a bool.

    Example:
        >>> import numpy as np
        >>> drop = VariationalDropout1d(0.5, seed=0)
        >>> x = np.ones((2, 3, 4))
        >>> y1, y2 = drop(x), drop(x)  # e.g. two solver iterations of one step
        >>> bool((y1.data == y2.data).all()), drop.mask.shape
        (True, (2, 3, 1))
        >>> drop.reset_mask(); drop.mask is None
        True
    """

    spatial_dims: int = 0

    def __init__(self, dropout: float = 0.5, token_first: bool = False, *,
                 seed: Any = None) -> None:
        super().__init__()
        self.dropout = check_real("dropout probability", dropout, 0.0, 1.0)
        self.token_first = check_bool("token_first", token_first)
        # An int seed starts one stream for this layer (so successive masks differ); with
        # no seed every draw uses the default generator of that moment (manual_seed works).
        self._generator = None if seed is None else init.generator(seed)
        self.mask: Array = None

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The mask's shape for an input of ``shape``.

        Args:
            shape: the input's shape.

        Returns:
            A shape that broadcasts to ``shape``.

        Raises:
            ValueError: an input with the wrong number of dimensions.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define mask_shape")

    def _expect_ndim(self, shape: tuple[int, ...]) -> None:
        if len(shape) != self.spatial_dims + 2:
            layout = _LAYOUTS[self.spatial_dims][self.token_first]
            raise ValueError(f"{type(self).__name__} expects a {self.spatial_dims + 2}-D input "
                             f"{layout}, got shape {tuple(shape)}")

    def reset_mask(self) -> None:
        """Forget the mask: the next training-mode call draws a new one."""
        self.mask = None

    def draw_mask(self, x: Any) -> Array:
        """Draw and keep a new mask for input ``x`` (in its namespace, on its device).

        Args:
            x: the input, a floating-point array or Tensor.

        Returns:
            The mask: ``0`` with probability p, else ``1 / (1 - p)``; shaped
            :meth:`mask_shape` of ``x``.

        Example:
            >>> import numpy as np
            >>> mask = VariationalDropout(0.75, seed=0).draw_mask(np.ones((2, 3)))
            >>> set(mask.ravel().tolist()) <= {0.0, 4.0}
            True
        """
        data = x.data if isinstance(x, Tensor) else x
        mask = dropout_mask(data, self.mask_shape(tuple(data.shape)), self.dropout,
                            self._generator)
        self.mask = mask
        return mask

    def _mask_fits(self, data: Any) -> bool:
        mask = self.mask
        return (mask is not None and tuple(mask.shape) == self.mask_shape(tuple(data.shape))
                and mask.dtype == data.dtype
                and backend.array_namespace(mask) is backend.array_namespace(data)
                and backend.device(mask) == backend.device(data))

    def forward(self, x: Any) -> Any:
        """Multiply ``x`` by the step's mask (training), or return ``x`` (evaluation, p = 0).

        Args:
            x: a floating-point array or Tensor; shape as the class says.

        Returns:
            ``x * mask`` (a Tensor), or ``x`` itself.

        Raises:
            TypeError: a non-floating-point input.
            ValueError: an input with the wrong number of dimensions.
        """
        if not self.training or self.dropout == 0.0:
            return x
        data = x.data if isinstance(x, Tensor) else x
        xp = backend.array_namespace(data)
        if not xp.isdtype(data.dtype, "real floating"):
            raise TypeError(f"{type(self).__name__} needs a floating-point input, got dtype "
                            f"{data.dtype}")
        if not self._mask_fits(data):
            self.draw_mask(data)
        return ops.mul(x, self.mask)

    def extra_repr(self) -> str:
        extra = f"dropout={self.dropout}"
        return extra + (", token_first=True" if self.token_first else "")


class VariationalDropout(_VariationalDropoutNd):
    """Variational dropout of single entries: the mask has the input's shape.

    Args:
        dropout: probability of zeroing an entry, in ``[0, 1]``.
        seed: an int or Generator for the masks (default: npdeq's default generator).

    Shapes: any ``(B, ...)`` input, output of the same shape.

    Raises:
        ValueError: a bad ``dropout``.

    Example:
        >>> import numpy as np
        >>> drop = VariationalDropout(0.5, seed=0)
        >>> x = np.ones((2, 3))
        >>> bool((drop(x).data == drop(x).data).all())  # one mask per step
        True
        >>> sorted(set(drop(x).data.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
    """

    def __init__(self, dropout: float = 0.5, *, seed: Any = None) -> None:
        super().__init__(dropout, False, seed=seed)

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)


class _ChannelDropout(_VariationalDropoutNd):
    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self._expect_ndim(shape)
        ones = (1,) * self.spatial_dims
        if self.token_first:
            return (shape[0], *ones, shape[-1])
        return (shape[0], shape[1], *ones)


class _TokenDropout(_VariationalDropoutNd):
    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self._expect_ndim(shape)
        if self.token_first:
            return (*shape[:-1], 1)
        return (shape[0], 1, *shape[2:])


# The six channel and token layers differ in their base class and number of spatial axes
# only, so one docstring template serves them all.
_WHAT = {1: "a sequence", 2: "an image", 3: "a volume"}
_TOKEN_UNIT = {1: "position", 2: "pixel", 3: "voxel"}
_LAYER_DOC = """Variational dropout of whole {unit}s of {what}: mask ``{mask}``.

    Args:
        dropout: probability of zeroing a {unit}{whole}, in ``[0, 1]``.
        token_first: inputs are ``{last_layout}`` (mask ``{last_mask}``) instead of
            ``{layout}``.
        seed: an int or Generator for the masks (default: npdeq's default generator).

    Shapes: ``{layout} -> {layout}``.

    Raises:
        ValueError: a bad ``dropout``; an input that is not {ndim}-D.

    Example:
        >>> import numpy as np
        >>> {name}(0.5, seed=0).draw_mask(np.ones({example})).shape
        {expected}
    """


def _documented(example: tuple[int, ...], expected: tuple[int, ...]) -> Any:
    """Class decorator: the layer's docstring from :data:`_LAYER_DOC`, for its base class and
    ``spatial_dims`` (``example`` an input shape, ``expected`` its mask's)."""
    def document(cls: type) -> type:
        spatial_dims = cls.spatial_dims
        layout, last_layout = _LAYOUTS[spatial_dims]
        axes = layout[1:-1].split(", ")  # B, C, then the spatial axes
        spatial, ones = axes[2:], ["1"] * spatial_dims
        if issubclass(cls, _ChannelDropout):
            unit, whole = "channel", ""
            mask, last_mask = ["B", "C", *ones], ["B", *ones, "C"]
        else:
            unit, whole = _TOKEN_UNIT[spatial_dims], " (all its channels)"
            mask, last_mask = ["B", "1", *spatial], ["B", *spatial, "1"]
        cls.__doc__ = _LAYER_DOC.format(
            unit=unit, what=_WHAT[spatial_dims], whole=whole, layout=layout,
            ndim=spatial_dims + 2, last_layout=last_layout, mask=f"({', '.join(mask)})",
            last_mask=f"({', '.join(last_mask)})", name=cls.__name__, example=example,
            expected=expected)
        return cls
    return document


@_documented((2, 4, 7), (2, 4, 1))
class VariationalDropout1d(_ChannelDropout):
    spatial_dims = 1


@_documented((2, 4, 5, 5), (2, 4, 1, 1))
class VariationalDropout2d(_ChannelDropout):
    spatial_dims = 2


@_documented((2, 4, 3, 3, 3), (2, 4, 1, 1, 1))
class VariationalDropout3d(_ChannelDropout):
    spatial_dims = 3


@_documented((2, 4, 7), (2, 1, 7))
class VariationalDropToken1d(_TokenDropout):
    spatial_dims = 1


@_documented((2, 4, 5, 6), (2, 1, 5, 6))
class VariationalDropToken2d(_TokenDropout):
    spatial_dims = 2


@_documented((2, 4, 3, 3, 3), (2, 1, 3, 3, 3))
class VariationalDropToken3d(_TokenDropout):
    spatial_dims = 3


def reset_dropout(model: Any) -> None:
    """Forget the masks of every variational dropout layer of ``model``, so the next
    training step draws new ones (TorchDEQ's ``reset_dropout``; ``reset_deq`` does it too).

    Args:
        model: a Module (every submodule is visited) or any object with ``modules()``.

    Raises:
        TypeError: ``model`` has no ``modules()`` method.

    Example:
        >>> import numpy as np
        >>> from npdeq.nn import Sequential
        >>> model = Sequential(VariationalDropout(0.5, seed=0))
        >>> _ = model(np.ones((2, 3)))
        >>> reset_dropout(model)
        >>> model[0].mask is None
        True
    """
    modules = getattr(model, "modules", None)
    if not callable(modules):
        raise TypeError(f"reset_dropout needs a model with modules() (an npdeq.nn.Module), "
                        f"got {type(model).__name__}")
    for module in modules():
        _reset_module(module)


def _reset_module(module: Any) -> None:
    # reset_deq passes every module (and possibly non-modules): only dropout layers act.
    if isinstance(module, _VariationalDropoutNd):
        module.reset_mask()


register_reset_hook(_reset_module)
