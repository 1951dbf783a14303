"""``Module``: the base class of layers and models, PyTorch's ``nn.Module`` in small.

A Module keeps three ordered registries filled by attribute assignment: parameters
(:class:`~npdeq.nn.Parameter`), buffers (arrays saved and moved with the model but not
trained, e.g. a spectral norm's power-iteration vector) and submodules. Everything else
(parameter lists, state dicts, moving between NumPy/CuPy/devices, train/eval) walks them.
Imports the backend and the tape.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping

from npdeq import backend
from npdeq.autodiff.tensor import Tensor
from npdeq.nn.parameter import Parameter

__all__ = ["Module"]


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign Parameters, submodules and buffers
    (:meth:`register_buffer`) as attributes, and define ``forward``; calling the module calls
    ``forward``.

    Example:
        >>> import numpy as np, npdeq
        >>> class Scale(Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.s = npdeq.nn.Parameter(np.ones(2))
        ...     def forward(self, x):
        ...         return self.s * x
        >>> m = Scale()
        >>> [name for name, _ in m.named_parameters()], m(np.ones(2)).shape
        (['s'], (2,))
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -------------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call "
                                 "super().__init__() before assigning attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            # As PyTorch: assigning to a registered buffer updates it (a power iteration's
            # ``self.u = new_u``) instead of silently dropping it from state_dict() and to().
            self.register_buffer(name, value)
            return
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: the registries.
        registries = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            registry = registries.get(key)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array: Any) -> None:
        """Register an array (or ``None``) saved and moved with the module but not trained.

        Args:
            name: attribute name.
            array: an array of any supported library, a Tensor (its array is kept), or
                ``None``.

        Raises:
            TypeError: ``name`` is not a string, or ``array`` is not an array.
            KeyError: ``name`` is already a parameter or submodule.

        Example:
            >>> import numpy as np
            >>> m = Module(); m.register_buffer('u', np.ones(3))
            >>> list(m.state_dict())
            ['u']
        """
        if not isinstance(name, str) or not name or "." in name:
            raise TypeError(f"buffer name must be a non-empty string without dots, got {name!r}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"{name!r} is already a parameter or submodule of "
                           f"{type(self).__name__}")
        if isinstance(array, Tensor):
            array = array.data
        if array is not None:
            try:
                backend.array_namespace(array)
            except TypeError:
                raise TypeError(f"buffer {name!r} must be an array, a Tensor or None, got "
                                f"{type(array).__name__}") from None
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` under ``name`` (``None`` removes it).

        Raises:
            TypeError: ``param`` is not a Parameter.
        """
        if param is None:
            self._parameters.pop(name, None)
            return
        if not isinstance(param, Parameter):
            raise TypeError(f"{name!r}: expected an npdeq.nn.Parameter, got "
                            f"{type(param).__name__}")
        setattr(self, name, param)

    def add_module(self, name: str, module: "Module") -> None:
        """Register ``module`` under ``name``.

        Raises:
            TypeError: ``module`` is not a Module.
        """
        if not isinstance(module, Module):
            raise TypeError(f"{name!r}: expected an npdeq.nn.Module, got {type(module).__name__}")
        setattr(self, name, module)

    # -- calling ------------------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- traversal ----------------------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """Yield ``(name, module)`` for this module and every submodule, each once.

        Example:
            >>> from npdeq.nn import Sequential, Tanh
            >>> [name for name, _ in Sequential(Tanh(), Tanh()).named_modules()]
            ['', '0', '1']
        """
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator["Module"]:
        """Yield this module and every submodule, each once."""
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """Yield ``(name, module)`` for the direct submodules."""
        yield from ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self) -> Iterator["Module"]:
        """Yield the direct submodules."""
        for _, module in self.named_children():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted name, parameter)`` for every parameter, each object once.

        Example:
            >>> from npdeq.nn import Linear
            >>> [n for n, _ in Linear(2, 3, seed=0).named_parameters()]
            ['weight', 'bias']
        """
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self) -> Iterator[Parameter]:
        """Yield every parameter (shared ones once)."""
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Yield ``(dotted name, array)`` for every buffer that is not ``None``."""
        for module_name, module in self.named_modules(prefix):
            for name, array in module._buffers.items():
                if array is not None:
                    yield (f"{module_name}.{name}" if module_name else name), array

    def buffers(self) -> Iterator[Any]:
        """Yield every buffer array."""
        for _, array in self.named_buffers():
            yield array

    def apply(self, fn: Callable[["Module"], Any]) -> "Module":
        """Call ``fn`` on every submodule (children first) and on ``self``; return ``self``."""
        for module in reversed(list(self.modules())):
            fn(module)
        return self

    # -- modes and gradients ------------------------------------------------------------------

    def train(self, mode: bool = True) -> "Module":
        """Set training mode on this module and every submodule; return ``self``.

        Args:
            mode: ``True`` for training, ``False`` for evaluation.

        Raises:
            TypeError: ``mode`` is not a bool.
        """
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) takes a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        """Set evaluation mode (``train(False)``); return ``self``."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Clear ``.grad`` of every parameter."""
        for param in self.parameters():
            param.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (``False``) or unfreeze every parameter; return ``self``."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> "OrderedDict[str, Any]":
        """Parameters and buffers by dotted name, as arrays (shared, not copied).

        Example:
            >>> from npdeq.nn import Linear
            >>> {k: v.shape for k, v in Linear(2, 3, seed=0).state_dict().items()}
            {'weight': (3, 2), 'bias': (3,)}
        """
        state: OrderedDict[str, Any] = OrderedDict()
        for name, param in self.named_parameters():
            state[name] = param.data
        for name, array in self.named_buffers():
            state[name] = array
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers of the same names.

        Values are converted to each target's namespace, device and dtype; Parameter objects
        stay the same (only their ``.data`` changes).

        Args:
            state_dict: name -> array (any supported library), e.g. from :meth:`state_dict`
                or :func:`npdeq.nn.load`.
            strict: require the names to match exactly.

        Raises:
            KeyError: with ``strict``, missing or unexpected names (all listed).
            ValueError: an array whose shape differs from the target's (named).
            TypeError: ``state_dict`` is not a mapping.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [name for name in targets if name not in state_dict]
        unexpected = [name for name in state_dict if name not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected {', '.join(map(str, unexpected))}")
            raise KeyError(f"load_state_dict for {type(self).__name__}: {'; '.join(parts)}")
        for name, (owner, attr, current) in targets.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else value
            shape = tuple(getattr(value, "shape", ()))
            if shape != tuple(current.shape):
                raise ValueError(f"load_state_dict: {name!r} has shape {shape}, the model "
                                 f"expects {tuple(current.shape)}")
            xp = backend.array_namespace(current)
            array = backend.move_array(value, xp, backend.device(current), dtype=current.dtype)
            # A copy, as documented and as PyTorch: move_array returns an array already in
            # place as it is (and array_api_strict's asarray shares NumPy's memory), which
            # would tie the model to the source, e.g. to another model's parameters.
            array = xp.asarray(array, copy=True)
            if attr in owner._parameters:
                owner._parameters[attr].data = array
            else:
                owner._buffers[attr] = array

    def _state_targets(self) -> "OrderedDict[str, tuple[Module, str, Any]]":
        targets: OrderedDict[str, tuple[Module, str, Any]] = OrderedDict()
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    full = f"{module_name}.{name}" if module_name else name
                    targets[full] = (module, name, param.data)
            for name, array in module._buffers.items():
                if array is not None:
                    full = f"{module_name}.{name}" if module_name else name
                    targets[full] = (module, name, array)
        return targets

    # -- moving -------------------------------------------------------------------------------

    def to(self, target: Any = None, dtype: Any = None) -> "Module":
        """Move every parameter and buffer to another library/device and/or floating dtype.

        Parameters keep their identity (their ``.data`` is replaced) and lose any ``.grad``
        from the old device.

        Args:
            target: ``numpy``, ``cupy``, ``array_api_strict`` (modules or their
                ``array_api_compat`` wrappers), ``'cpu'``, ``'gpu'``/``'cuda'``, a device
                object (e.g. ``array_api_strict.Device('device1')``), an array to follow, or
                ``None`` to stay.
            dtype: a floating dtype of the target namespace (e.g. ``numpy.float32``), or a
                name such as ``'float32'``; integer buffers keep theirs.

        Returns:
            ``self``.

        Raises:
            RuntimeError: a GPU target without CuPy or a CUDA device.
            TypeError: an unknown target, or a dtype that is not a real floating dtype of the
                target namespace.
            ValueError: an unknown device or dtype name.

        Example:
            >>> import numpy as np
            >>> from npdeq.nn import Linear
            >>> layer = Linear(2, 3, seed=0).to(dtype='float32')
            >>> layer.weight.dtype
            dtype('float32')
        """
        arrays = [p.data for p in self.parameters()] + list(self.buffers())
        if target is None:
            if not arrays:
                return self
            xp, target_device = backend.array_namespace(arrays[0]), None
        else:
            xp, target_device = backend.resolve_target(target)
        requested = dtype
        if isinstance(dtype, str):
            try:
                dtype = getattr(xp, dtype)
            except AttributeError:
                raise ValueError(f"unknown dtype {dtype!r} for "
                                 f"{backend.namespace_name(xp)}") from None
        if dtype is not None:
            # move_array casts floating arrays to ``dtype``: an integer one would truncate
            # every parameter (PyTorch refuses it too).
            try:
                floating = xp.isdtype(dtype, "real floating")
            except (TypeError, ValueError):
                floating = False
            if not floating:
                raise TypeError(f"Module.to takes a real floating dtype of "
                                f"{backend.namespace_name(xp)}, got {requested!r}")
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None:
                    param.data = backend.move_array(param.data, xp, target_device, dtype)
                    param.grad = None
            for name, array in module._buffers.items():
                if array is not None:
                    module._buffers[name] = backend.move_array(array, xp, target_device, dtype)
        return self

    # -- display ------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        """The settings shown between the parentheses of ``repr``; subclasses override it."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"
