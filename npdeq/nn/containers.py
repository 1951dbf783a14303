"""Containers: ``Sequential`` (modules applied in order) and ``ModuleList``."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from npdeq.nn.module import Module

__all__ = ["Sequential", "ModuleList"]


class _Ordered(Module):
    """What both containers share: length, indexing and iteration over the submodules."""

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))


class Sequential(_Ordered):
    """Apply modules (or any callables that are Modules) in order.

    Args:
        *modules: the stages.

    Raises:
        TypeError: a stage that is not a Module.

    Example:
        >>> import numpy as np
        >>> from npdeq.nn import Linear, Tanh
        >>> net = Sequential(Linear(4, 8, seed=0), Tanh(), Linear(8, 2, seed=1))
        >>> net(np.ones((3, 4))).shape, len(net)
        ((3, 2), 3)
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            self.add_module(str(index), module)

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(_Ordered):
    """A list of modules whose parameters the parent registers (not callable itself).

    Example:
        >>> from npdeq.nn import Linear
        >>> blocks = ModuleList([Linear(2, 2, seed=i) for i in range(3)])
        >>> len(list(blocks.parameters()))
        6
    """

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> "ModuleList":
        """Add ``module`` at the end; return ``self``."""
        self.add_module(str(len(self._modules)), module)
        return self
