"""Applying, resetting and removing weight normalisation on a whole model (TorchDEQ's
``apply_norm``, ``reset_norm``, ``remove_norm``) and the registries behind them.

``apply_norm`` walks ``model.named_modules()`` and normalises every module of a registered
type (``Linear``, ``Conv1d`` and ``Conv2d`` by default, as TorchDEQ;
:func:`register_norm_module` adds more, e.g. ``Embedding``, whose rows TorchDEQ leaves alone)
with the norm named by ``norm_type`` (``'weight_norm'``, ``'spectral_norm'``,
:func:`register_norm` adds more). Importing this module registers :func:`reset_norm`'s
per-module step with :func:`npdeq.core.registry.register_reset_hook`, so
``reset_deq(model)`` recomputes the normalised weights.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq.core.config import DEQConfig, GROUPS, default, is_default
from npdeq.core.registry import register_reset_hook
from npdeq.nn import init
from npdeq.nn.conv import Conv1d
from npdeq.nn.module import Module
from npdeq.norm.base import NormBase, as_dims, snapshot
from npdeq.norm.spectral_norm import SpectralNorm
from npdeq.norm.weight_norm import WeightNorm

__all__ = ["apply_norm", "reset_norm", "remove_norm", "register_norm", "register_norm_module",
           "registered_norms"]

_NORMS: dict[str, type[NormBase]] = {"weight_norm": WeightNorm, "spectral_norm": SpectralNorm}
_NO_NORM = ("none", None)
# apply_norm's keyword settings are the config's normalisation keys (norm_type excepted: it
# has its own parameter).
_NORM_KEYS = tuple(k for k in GROUPS["norm"] if k != "norm_type")


def registered_norms() -> list[str]:
    """The ``norm_type`` names :func:`apply_norm` accepts besides ``'none'``, sorted.

    Example:
        >>> registered_norms()[:2]
        ['spectral_norm', 'weight_norm']
    """
    return sorted(_NORMS)


def register_norm(norm_type: str, norm_class: type[NormBase]) -> None:
    """Register a normalisation class under a name, for ``apply_norm(model, norm_type)``.

    Args:
        norm_type: the name (``--norm_type`` on the command line); not ``'none'``.
        norm_class: a subclass of :class:`~npdeq.norm.base.NormBase`.

    Raises:
        ValueError: an empty name or ``'none'``.
        TypeError: ``norm_class`` is not a ``NormBase`` subclass.

    Example:
        >>> class ScaledWeightNorm(WeightNorm):
        ...     pass
        >>> register_norm('scaled_weight_norm', ScaledWeightNorm)
        >>> 'scaled_weight_norm' in registered_norms()
        True
        >>> del _NORMS['scaled_weight_norm']
    """
    if not isinstance(norm_type, str) or not norm_type or norm_type == "none":
        raise ValueError(f"norm_type must be a non-empty name other than 'none', got "
                         f"{norm_type!r}")
    if not (isinstance(norm_class, type) and issubclass(norm_class, NormBase)):
        raise TypeError(f"norm_class for {norm_type!r} must be a subclass of "
                        f"npdeq.norm.NormBase, got {norm_class!r}")
    _NORMS[norm_type] = norm_class


def _norm_class(norm_type: Any) -> type[NormBase]:
    if norm_type not in _NORMS:
        names = ", ".join(repr(n) for n in ["none", *registered_norms()])
        raise ValueError(f"unknown norm_type {norm_type!r}; registered: {names}")
    return _NORMS[norm_type]


def register_norm_module(module_class: type, norm_type: str,
                         names: str | Sequence[str] = "weight", dims: Any = 0) -> None:
    """Make ``apply_norm`` with ``norm_type`` normalise modules of ``module_class``.

    Args:
        module_class: an :class:`~npdeq.nn.Module` subclass (its subclasses match too,
            unless registered themselves).
        norm_type: a registered norm name.
        names: the attribute name(s) of the weights to normalise.
        dims: the axis (or one per name) that keeps one norm per index: the output axis,
            ``0`` for ``(out, in, ...)`` weights; ``None`` (weight norm only) for one norm
            of the whole weight.

    Raises:
        TypeError: ``module_class`` is not a Module subclass, or a name is not a string.
        ValueError: an unknown ``norm_type``, or ``names`` and ``dims`` of different
            lengths.

    Example:
        >>> from npdeq.nn import Linear
        >>> class Bilinear(Linear):
        ...     pass
        >>> register_norm_module(Bilinear, 'weight_norm', 'weight', 0)
        >>> del WeightNorm._target_modules[Bilinear]
    """
    if not (isinstance(module_class, type) and issubclass(module_class, Module)):
        raise TypeError(f"module_class must be an npdeq.nn.Module subclass, got "
                        f"{module_class!r}")
    norm_class = _norm_class(norm_type)
    names = (names,) if isinstance(names, str) else tuple(names)
    dims = as_dims(dims, len(names))
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"names must be attribute names (str), got {names!r}")
    if not names or len(names) != len(dims):
        raise ValueError(f"names and dims must be non-empty and of the same length, got "
                         f"names={names!r}, dims={dims!r}")
    norm_class._target_modules[module_class] = (names, dims)


def _as_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not all(isinstance(v, str) for v in value):
        raise TypeError(f"{what} must be a string or a list of strings, got {value!r}")
    return list(value)


def apply_norm(model: Module, norm_type: str | None = default("norm_type"),
               prefix_filter_out: str | Sequence[str] | None = None,
               filter_out: str | Sequence[str] | None = None, args: Any = None, *,
               seed: Any = None, **norm_kwargs: Any) -> list[str]:
    """Normalise the weights of every registered module in ``model`` (TorchDEQ's function).

    A module is normalised when its type (or a base class) is registered for the norm
    (``Linear``, ``Conv1d`` and ``Conv2d`` by default), its weights are Parameters, its name
    does not start with a prefix in ``prefix_filter_out`` and contains no string of
    ``filter_out``.
    Afterwards ``module.weight`` is recomputed by :func:`reset_norm` or ``reset_deq``,
    which a training loop calls once per step (and after moving or loading the model).

    Settings come from the config keys ``norm_no_scale``, ``norm_target_norm``,
    ``norm_clip``, ``norm_clip_value`` and ``sn_n_power_iters``: keyword arguments win over
    ``args``, which wins over the defaults. ``norm_type``: an explicit argument wins over
    ``args['norm_type']``, which wins over ``'weight_norm'`` (TorchDEQ lets ``args`` win
    over an explicit argument).

    Args:
        model: the model (an :class:`~npdeq.nn.Module`).
        norm_type: ``'weight_norm'``, ``'spectral_norm'``, a name from
            :func:`register_norm`, or ``'none'``/``None`` (nothing is done).
        prefix_filter_out: module-name prefix(es) to skip, e.g. ``'encoder'``.
        filter_out: substring(s) of module names to skip, e.g. ``['embedding']``.
        args: a DEQ config (dict, ``argparse.Namespace`` or :class:`DEQConfig`); read only.
        seed: an int or Generator for norms that draw random numbers (spectral norm's start
            vectors); default npdeq's default generator.
        **norm_kwargs: normalisation config keys (``norm_no_scale=True``, ...).

    Returns:
        The names of the modules normalised (``''`` for ``model`` itself).

    Raises:
        ValueError: an unknown ``norm_type`` (the registered ones listed), an unknown or
            invalid setting, a matching module that is already normalised, or a weight that
            cannot be normalised (all zero, or not finite); nothing is changed then.
        TypeError: ``model`` is not a Module, or bad filters.

    Example:
        >>> from npdeq.nn import Linear, Sequential, Tanh
        >>> model = Sequential(Linear(4, 8, seed=0), Tanh(), Linear(8, 4, seed=1))
        >>> apply_norm(model, 'weight_norm', filter_out='2', norm_clip=True)
        ['0']
        >>> sorted(name for name, _ in model[0].named_parameters())
        ['bias', 'weight_g', 'weight_v']
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be an npdeq.nn.Module, got {type(model).__name__}")
    unknown = [k for k in norm_kwargs if k not in _NORM_KEYS]
    if unknown:
        raise ValueError(f"apply_norm got unknown setting(s) {', '.join(map(repr, unknown))}; "
                         f"expected config keys {', '.join(_NORM_KEYS)}")
    config = DEQConfig(args)
    config.update(**norm_kwargs)
    if is_default(norm_type):
        norm_type = config.get("norm_type")
    if norm_type in _NO_NORM:
        return []
    norm_class = _norm_class(norm_type)
    settings = norm_class.settings_from_config(config)
    if seed is not None and norm_class.takes_seed:
        # One generator for the whole model: modules of one shape get different draws.
        settings["seed"] = init.generator(seed)
    prefixes = _as_list(prefix_filter_out, "prefix_filter_out")
    substrings = _as_list(filter_out, "filter_out")
    chosen = []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p in prefixes) or any(s in name for s in substrings):
            continue
        targets = norm_class.targets(module)
        if targets is None:
            continue
        if "_deq_norm" in module.__dict__:
            raise ValueError(f"module {name!r} ({type(module).__name__}) is already "
                             f"normalised ({type(module._deq_norm).__name__}); call "
                             "remove_norm first")
        if all(module._parameters.get(n) is not None for n in targets[0]):
            chosen.append((name, module))
    if chosen:
        # Check the settings once, before any module changes.
        norm_class(*norm_class.targets(chosen[0][1]), **settings)
    # All or nothing: a module whose weight cannot be normalised (an all-zero weight) undoes
    # the ones normalised before it.
    undo = [snapshot(module) for _, module in chosen]
    try:
        for _, module in chosen:
            norm_class.apply(module, **settings)
    except BaseException:
        for restore in undo:
            restore()
        raise
    return [name for name, _ in chosen]


def reset_norm(model: Any) -> None:
    """Recompute every normalised weight of ``model`` (TorchDEQ's ``reset_norm``).

    Call it once per training step, before the forward pass (``reset_deq`` does it too), and
    after moving (``Module.to``) or loading the model. In training mode spectral norms take
    their power-iteration step(s) first.

    Args:
        model: a Module (every submodule is visited) or any object with ``modules()``.

    Raises:
        TypeError: ``model`` has no ``modules()`` method.

    Example:
        >>> from npdeq.nn import Linear
        >>> layer = Linear(3, 2, seed=0)
        >>> _ = apply_norm(layer)
        >>> w = layer.weight
        >>> reset_norm(layer)
        >>> layer.weight is w
        False
    """
    for module in _modules(model, "reset_norm"):
        _reset_module(module)


def remove_norm(model: Any) -> None:
    """Bake every normalised weight of ``model`` into a plain ``weight`` Parameter.

    The values are the normalised weights at the current parameters (no power-iteration
    step), so the model computes the same outputs; the norms' parameters and buffers are
    removed (TorchDEQ's ``remove_norm``).

    Args:
        model: a Module or any object with ``modules()``.

    Raises:
        TypeError: ``model`` has no ``modules()`` method.

    Example:
        >>> from npdeq.nn import Linear
        >>> layer = Linear(3, 2, seed=0)
        >>> _ = apply_norm(layer, 'spectral_norm')
        >>> remove_norm(layer)
        >>> [name for name, _ in layer.named_parameters()]
        ['bias', 'weight']
    """
    for module in _modules(model, "remove_norm"):
        norm = getattr(module, "__dict__", {}).get("_deq_norm")
        if norm is not None:
            norm.remove(module)


def _modules(model: Any, what: str) -> list[Any]:
    modules = getattr(model, "modules", None)
    if not callable(modules):
        raise TypeError(f"{what} needs a model with modules() (an npdeq.nn.Module), got "
                        f"{type(model).__name__}")
    return list(modules())


def _reset_module(module: Any) -> None:
    # Any object may reach a reset_deq hook; only modules carrying a norm are touched.
    norm = getattr(module, "__dict__", {}).get("_deq_norm")
    if norm is not None:
        norm(module)


register_reset_hook(_reset_module)

# TorchDEQ's default module types beyond the norms' own tables (Linear, Conv2d): one norm per
# output channel of a (C_out, C_in / groups, k) weight.
for _norm in ("weight_norm", "spectral_norm"):
    register_norm_module(Conv1d, _norm, "weight", 0)
del _norm
