"""What every DEQ weight normalisation shares: :class:`NormBase` and the axis helpers.

A normalisation reparametrises some weights of one module (``weight`` of a ``Linear`` or
``Conv2d`` by default). :meth:`NormBase.apply` replaces the ``weight`` Parameter by the
norm's own parameters and buffers and sets ``module.weight`` to a plain Tensor recorded on
the tape; calling the norm object (``reset_norm``) recomputes that Tensor. In a DEQ the map
is called at every solver iteration, so the normalised weight is computed once per training
step, not once per call, as TorchDEQ does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from npdeq.autodiff import Tensor, no_grad
from npdeq.autodiff import ops
from npdeq.core.config import DEQConfig
from npdeq.backend.checks import check_int
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter

__all__ = ["NormBase", "reduce_axes", "norm_except_dim", "as_tensor_operand", "as_dims",
           "snapshot"]

Targets = tuple[tuple[str, ...], tuple[Any, ...]]


def as_tensor_operand(x: Any) -> Tensor:
    """``x`` as a Tensor (raw arrays become leaves without a graph).

    Python operators between a raw ``array_api_strict`` array and a Tensor raise, so the
    functional forms wrap their inputs first.

    Args:
        x: a Tensor (returned as it is) or an array.

    Returns:
        A Tensor sharing ``x``'s array.

    Example:
        >>> import numpy as np
        >>> t = as_tensor_operand(np.ones(2))
        >>> as_tensor_operand(t) is t, t.requires_grad
        (True, False)
    """
    return x if isinstance(x, Tensor) else Tensor(x)


def reduce_axes(ndim: int, dim: int | None) -> tuple[int, ...]:
    """Every axis of an ``ndim``-dimensional weight but ``dim`` (all of them for ``None``).

    Args:
        ndim: the weight's number of dimensions.
        dim: the axis kept (one norm per index along it), negative allowed, or ``None``.

    Returns:
        The axes to reduce over, sorted.

    Raises:
        ValueError: ``dim`` out of range for ``ndim``.

    Example:
        >>> reduce_axes(4, 0), reduce_axes(2, -1), reduce_axes(2, None)
        ((1, 2, 3), (0,), (0, 1))
    """
    if dim is None:
        return tuple(range(ndim))
    original = dim
    try:
        dim = check_int("dim", dim)
    except ValueError:
        dim = None
    if dim is None or not -ndim <= dim < ndim:
        raise ValueError(f"dim must be an int in [-{ndim}, {ndim}) or None for a weight of "
                         f"{ndim} dimensions, got {original!r}")
    dim %= ndim
    return tuple(a for a in range(ndim) if a != dim)


def norm_except_dim(w: Any, dim: int | None) -> Tensor:
    """The L2 norm of ``w`` over every axis but ``dim``, kept as size-1 axes (on the tape).

    Args:
        w: a weight (Tensor or array), e.g. ``(out, in)`` or ``(out, in, kh, kw)``.
        dim: the axis with one norm per index (``0``: one per output row/channel), or
            ``None`` for the norm of the whole array.

    Returns:
        A Tensor shaped like ``w`` with every reduced axis of size 1, e.g. ``(out, 1)``.

    Example:
        >>> import numpy as np
        >>> norm_except_dim(np.array([[3.0, 4.0], [0.0, 2.0]]), 0).data
        array([[5.],
               [2.]])
    """
    w = as_tensor_operand(w)
    return ops.sqrt(ops.sum(w * w, axis=reduce_axes(w.ndim, dim), keepdims=True))


def as_dims(dims: Any, count: int) -> tuple[Any, ...]:
    """``dims`` as one entry per name: ints (NumPy integers accepted) or ``None``.

    An entry that is not an int is kept as it is, for :func:`reduce_axes` to report with
    the weight's number of dimensions.

    Raises:
        ValueError: ``dims`` neither an int, ``None`` nor a sequence.

    Example:
        >>> import numpy as np
        >>> as_dims(np.int64(0), 2), as_dims([1, None], 2)
        ((0, 0), (1, None))
    """
    if dims is None:
        return (None,) * count
    try:
        return (check_int("dims", dims),) * count
    except ValueError:
        pass
    try:
        items = tuple(dims)
    except TypeError:
        raise ValueError(f"dims must be an int, None or one of them per name, got "
                         f"{dims!r}") from None
    return tuple(None if d is None else _dim(d) for d in items)


def _dim(d: Any) -> Any:
    try:
        return check_int("dims", d)
    except ValueError:
        return d  # reported with the weight's number of dimensions by reduce_axes


def snapshot(module: Module) -> Any:
    """A function that puts ``module``'s registries and attributes back as they are now.

    What :meth:`NormBase.apply` and :func:`~npdeq.norm.apply_norm` undo with when the
    first computation of a normalised weight fails, so a failed call changes nothing.

    Example:
        >>> from npdeq.nn import Linear
        >>> layer = Linear(2, 2, seed=0)
        >>> restore = snapshot(layer)
        >>> del layer.bias; restore(); [n for n, _ in layer.named_parameters()]
        ['weight', 'bias']
    """
    parameters, buffers = list(module._parameters.items()), list(module._buffers.items())
    modules, attributes = list(module._modules.items()), dict(module.__dict__)

    def restore() -> None:
        for registry, saved in ((module._parameters, parameters), (module._buffers, buffers),
                                (module._modules, modules)):
            registry.clear()
            registry.update(saved)
        for key in [k for k in module.__dict__ if k not in attributes]:
            del module.__dict__[key]
        module.__dict__.update(attributes)

    return restore


class NormBase:
    """Base class of the weight normalisations :func:`~npdeq.norm.apply_norm` applies.

    A subclass defines ``_attach`` (register its parameters and buffers in place of the
    weight), ``compute_weight`` (the normalised weight, on the tape), ``_detach`` (drop what
    ``_attach`` added), optionally ``_step`` (state updated once per reset, e.g. power
    iteration), :meth:`settings_from_config` and ``takes_seed`` (its constructor takes a
    ``seed`` for random draws). Each subclass keeps its own table of module
    types it normalises by default (``_target_modules``: class -> ``(names, dims)``), filled
    with :func:`~npdeq.norm.register_norm_module`; subclasses start from a copy of their
    parent's.

    Args:
        names: the attribute names of the normalised weights (``('weight',)``).
        dims: the axis of each weight that keeps one norm per index (``0``: per output).

    Raises:
        ValueError: ``names`` and ``dims`` of different lengths, or no names.

    Example:
        A norm that scales each output row to unit max-abs value (no parameters of its own):

        >>> import numpy as np
        >>> from npdeq.nn import Linear
        >>> class MaxNorm(NormBase):
        ...     _target_modules = {Linear: (("weight",), (0,))}
        ...     def _attach(self, module, name, dim, weight):
        ...         module.register_parameter(name + "_raw", weight)
        ...     def _detach(self, module, name):
        ...         del module._parameters[name + "_raw"]
        ...     def _source(self, module, name):
        ...         return module._parameters[name + "_raw"]
        ...     def compute_weight(self, module, name, dim):
        ...         w = module._parameters[name + "_raw"]
        ...         return w / ops.max(ops.abs(w), axis=1, keepdims=True)
        >>> layer = Linear(3, 2, seed=0)
        >>> _ = MaxNorm.apply(layer)
        >>> np.abs(layer.weight.data).max(axis=1).tolist()
        [1.0, 1.0]
    """

    _target_modules: ClassVar[dict[type, Targets]] = {}
    # Whether the constructor takes ``seed`` (apply_norm passes its seed only then).
    takes_seed: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Registering a module type for one norm must not register it for the others.
        cls._target_modules = dict(cls._target_modules)

    def __init__(self, names: Sequence[str], dims: Sequence[Any]) -> None:
        self.names, self.dims = tuple(names), tuple(dims)
        if not self.names or len(self.names) != len(self.dims):
            raise ValueError(f"names and dims must be non-empty and of the same length, got "
                             f"names={self.names!r}, dims={self.dims!r}")

    # -- configuration ------------------------------------------------------------------------

    @classmethod
    def settings_from_config(cls, config: DEQConfig) -> dict[str, Any]:
        """The constructor keywords this norm reads from a DEQ config (none here).

        Args:
            config: the DEQ configuration (``norm_*`` keys and ``sn_n_power_iters``).

        Returns:
            Keyword arguments for :meth:`apply`.
        """
        return {}

    @classmethod
    def targets(cls, module: Any) -> Targets | None:
        """``(names, dims)`` registered for ``module``'s type (or its nearest base class).

        Args:
            module: any object.

        Returns:
            The registered names and dims, or ``None`` when no type in its MRO is registered.
        """
        for klass in type(module).__mro__:
            if klass in cls._target_modules:
                return cls._target_modules[klass]
        return None

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def apply(cls, module: Module, names: str | Sequence[str] | None = None,
              dims: Any = None, **settings: Any) -> "NormBase":
        """Normalise weights of ``module``: replace each named Parameter by this norm.

        The Parameter objects are kept (re-registered under the norm's names), so an
        optimizer built before still updates them. ``module.weight`` becomes a Tensor
        recorded on the tape, recomputed by calling the returned object (``reset_norm``).

        Args:
            module: the module (e.g. an :class:`~npdeq.nn.Linear`).
            names: attribute name(s) of the weights; default from the registered table.
            dims: the axis (or one per name) keeping one norm per index; default from the
                table.
            **settings: the norm's constructor keywords (e.g. ``learn_scale``, ``clip``).

        Returns:
            The norm object, also stored as ``module._deq_norm``.

        Raises:
            TypeError: ``module`` is not an ``npdeq.nn.Module``.
            ValueError: ``module`` is already normalised, its type is not registered and no
                ``names``/``dims`` are given, a name is not a Parameter of it, or the first
                computation of the weight fails (e.g. an all-zero weight); the module is
                then left unchanged.

        Example:
            >>> from npdeq.nn import Linear
            >>> from npdeq.norm import WeightNorm
            >>> layer = Linear(3, 2, seed=0)
            >>> _ = WeightNorm.apply(layer)
            >>> sorted(name for name, _ in layer.named_parameters())
            ['bias', 'weight_g', 'weight_v']
        """
        if not isinstance(module, Module):
            raise TypeError(f"module must be an npdeq.nn.Module, got {type(module).__name__}")
        if "_deq_norm" in module.__dict__:
            raise ValueError(f"{type(module).__name__} is already normalised "
                             f"({type(module._deq_norm).__name__}); call remove_norm first")
        if names is None or dims is None:
            found = cls.targets(module)
            if found is None:
                raise ValueError(f"{cls.__name__} has no default weights for "
                                 f"{type(module).__name__}: pass names and dims, or register "
                                 "the type with register_norm_module")
            names = found[0] if names is None else names
            dims = found[1] if dims is None else dims
        names = (names,) if isinstance(names, str) else tuple(names)
        dims = as_dims(dims, len(names))
        for name in names:
            if not isinstance(module._parameters.get(name), Parameter):
                raise ValueError(f"{type(module).__name__}.{name} is not a Parameter, so "
                                 f"{cls.__name__} cannot normalise it")
        for name, dim in zip(names, dims):
            reduce_axes(module._parameters[name].ndim, dim)  # checks dim before any change
        fn = cls(names, dims, **settings)
        # Undone on any error (a zero weight found by the first computation): the module is
        # then as it was, parameter order included.
        restore = snapshot(module)
        try:
            for name, dim in zip(fn.names, fn.dims):
                fn._attach(module, name, dim, module._parameters.pop(name))
            module._deq_norm = fn
            fn(module)
        except BaseException:
            restore()
            raise
        return fn

    def __call__(self, module: Module) -> None:
        """Recompute every normalised weight of ``module`` (once per training step).

        Args:
            module: the module this norm was applied to.
        """
        for name, dim in zip(self.names, self.dims):
            self._step(module, name, dim)
            setattr(module, name, self.compute_weight(module, name, dim))

    def remove(self, module: Module) -> None:
        """Bake the current normalised weights into plain ``weight`` Parameters.

        The values equal the normalised weight at the norm's current state (no power
        iteration step); the norm's parameters and buffers are removed.

        Args:
            module: the module this norm was applied to.
        """
        for name, dim in zip(self.names, self.dims):
            with no_grad():
                weight = self.compute_weight(module, name, dim)
            trainable = self._source(module, name).requires_grad
            self._detach(module, name)
            module.__dict__.pop(name, None)
            # A new Parameter: the old one's optimizer state described v, not W.
            setattr(module, name, Parameter(weight.data, requires_grad=trainable))
        module.__dict__.pop("_deq_norm", None)

    # -- subclass hooks -----------------------------------------------------------------------

    def _attach(self, module: Module, name: str, dim: Any, weight: Parameter) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _attach")

    def _detach(self, module: Module, name: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _detach")

    def _source(self, module: Module, name: str) -> Parameter:
        """The Parameter the weight was built from (its trainability is kept on removal)."""
        raise NotImplementedError(f"{type(self).__name__} does not define _source")

    def _step(self, module: Module, name: str, dim: Any) -> None:
        """State updated once per reset, before the weight is recomputed (none here)."""

    def compute_weight(self, module: Module, name: str, dim: Any) -> Tensor:
        """The normalised weight from the module's current parameters and buffers.

        Args:
            module: the module this norm was applied to.
            name: the weight's name.
            dim: its normalisation axis.

        Returns:
            The weight, recorded on the tape when grad mode is on.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define compute_weight")

    def extra_repr(self) -> str:
        """The settings shown by ``repr``."""
        return f"names={self.names!r}, dims={self.dims!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
