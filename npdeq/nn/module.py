"""``Module``: the base class of layers and models, PyTorch's ``nn.Module`` in small.

A Module keeps three ordered registries filled by attribute assignment: parameters
(:class:`~npdeq.nn.Parameter`), buffers (arrays saved and moved with the model but not
trained, e.g. a spectral norm's power-iteration vector) and submodules. Everything else
walks them: parameter lists, train/eval, and state dicts and moving between
NumPy/CuPy/devices, whose work is done by the functions of :mod:`npdeq.nn.state`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping

from npdeq import backend
from npdeq.backend import Array
from npdeq.backend.checks import check_bool
from npdeq.autodiff.tensor import Tensor
from npdeq.nn import state
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
        if name in self._parameters and value is not None and not isinstance(
                value, (Parameter, Module)):
            # As PyTorch: replacing a parameter by a plain value would silently untrain it.
            raise TypeError(f"cannot assign a {type(value).__name__} to parameter {name!r} of "
                            f"{type(self).__name__} (an npdeq.nn.Parameter or None expected; "
                            f"`del module.{name}` first to replace it by a computed Tensor)")
        if name in self._parameters and value is None:
            self._parameters[name] = None  # kept registered, as an absent bias
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

    def register_buffer(self, name: str, array: Array | Tensor | None) -> None:
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

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Array]]:
        """Yield ``(dotted name, array)`` for every buffer that is not ``None``."""
        for module_name, module in self.named_modules(prefix):
            for name, array in module._buffers.items():
                if array is not None:
                    yield (f"{module_name}.{name}" if module_name else name), array

    def buffers(self) -> Iterator[Array]:
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
        mode = check_bool("mode", mode, owner=f"{type(self).__name__}.train")
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

    # -- state and moving ---------------------------------------------------------------------

    def state_dict(self) -> "OrderedDict[str, Array]":
        """Parameters and buffers by dotted name, as arrays (shared, not copied).

        Example:
            >>> from npdeq.nn import Linear
            >>> {k: v.shape for k, v in Linear(2, 3, seed=0).state_dict().items()}
            {'weight': (3, 2), 'bias': (3,)}
        """
        return state.state_dict(self)

    def load_state_dict(self, state_dict: Mapping[str, Array], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers of the same names.

        Values are copied to each target's namespace, device and dtype; Parameter objects
        stay the same (only their ``.data`` changes), and a parameter or buffer never
        changes dtype. A value of another dtype is cast when no value can be lost by kind:
        integers or floats of another precision into a floating target (when no finite value
        overflows), integers into an integer target when every value fits, floats into an
        integer target when every value is a whole number that fits, anything real into a
        complex target. Anything else (complex into real, booleans into numbers or numbers
        into booleans, a float with a fractional part into an integer buffer) is refused.
        Every entry is checked before any is loaded, so an error leaves the module unchanged.

        Args:
            state_dict: name -> array (any supported library), e.g. from :meth:`state_dict`
                or :func:`npdeq.nn.load`.
            strict: require the names to match exactly.

        Raises:
            KeyError: with ``strict``, missing or unexpected names (all listed).
            ValueError: an array whose shape differs from the target's, or whose values
                do not fit the target's integer dtype (named, with both dtypes).
            TypeError: ``state_dict`` is not a mapping, an entry is not an array, or its
                dtype cannot be cast to the target's (named, with both dtypes).
        """
        state.load_state_dict(self, state_dict, strict)

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
            >>> from npdeq.nn import Linear
            >>> Linear(2, 3, seed=0).to(dtype='float32').weight.dtype
            dtype('float32')
        """
        return state.to(self, target, dtype)

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
