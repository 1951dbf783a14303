"""``Parallel``: Lux's ``Parallel(connection, layers...)``, for writing DeepEquilibriumNetworks.jl
models (a multi-scale model's first main layer takes the state and the input) in npdeq.
"""

from __future__ import annotations

from typing import Any, Callable

from npdeq.nn import Module

__all__ = ["Parallel"]


class Parallel(Module):
    """Apply ``layers[i]`` to input ``i`` and combine the outputs with ``connection``.

    As Lux's ``Parallel``: with one input and several layers, every layer gets that input.

    Args:
        connection: ``connection(*outputs)`` combines the outputs (e.g. ``npdeq.add`` for
            two layers: Julia's ``+``), or ``None`` to return them as a tuple.
        *layers: the layers (:class:`npdeq.nn.Module`), at least one.

    Shapes: inputs ``(B, ...)`` each; the output is what ``connection`` makes of the
    layers' outputs.

    Raises:
        TypeError: ``connection`` neither callable nor ``None``; a layer that is not a Module.
        ValueError: no layers.

    Example:
        >>> import numpy as np, npdeq
        >>> from npdeq import nn
        >>> layer = Parallel(npdeq.add, nn.Linear(4, 4, seed=0), nn.Linear(2, 4, seed=1))
        >>> layer(np.ones((12, 4)), np.ones((12, 2))).shape
        (12, 4)
    """

    def __init__(self, connection: Callable[..., Any] | None, *layers: Module) -> None:
        super().__init__()
        if connection is not None and not callable(connection):
            raise TypeError(f"Parallel: connection must be callable or None, got "
                            f"{type(connection).__name__}")
        if not layers:
            raise ValueError("Parallel needs at least one layer")
        self.connection = connection
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Parallel: layer {index} must be an npdeq.nn.Module, got "
                                f"{type(layer).__name__}")
            self.add_module(str(index), layer)

    def forward(self, *inputs: Any) -> Any:
        """Apply each layer to its input (or all to the one input) and combine.

        Raises:
            ValueError: a number of inputs that is neither 1 nor the number of layers.
        """
        layers = list(self._modules.values())
        if len(inputs) == 1:
            inputs = inputs * len(layers)
        if len(inputs) != len(layers):
            raise ValueError(f"Parallel has {len(layers)} layers but got {len(inputs)} inputs")
        outputs = tuple(layer(x) for layer, x in zip(layers, inputs))
        return outputs if self.connection is None else self.connection(*outputs)

    def extra_repr(self) -> str:
        return f"connection={getattr(self.connection, '__name__', self.connection)!r}"
