"""DEQ cores by name (``get_deq``, ``register_deq``) and ``reset_deq``.

``reset_deq`` is an extension point: the layers that add per-iteration state to a DEQ layer
(weight normalisation, variational dropout) register a reset hook with
:func:`register_reset_hook` when they are imported, so this module does not import them.
"""

from __future__ import annotations

from typing import Any, Callable

from npdeq.core.base import DEQBase
from npdeq.core.config import DEQConfig, unknown_key_error
from npdeq.core.cores import DEQIndexing, DEQSliced

__all__ = ["get_deq", "register_deq", "registered_deqs", "reset_deq", "register_reset_hook"]

_CORES: dict[str, type] = {"indexing": DEQIndexing, "sliced": DEQSliced}
_RESET_HOOKS: list[Callable[[Any], None]] = []


def registered_deqs() -> list[str]:
    """The core names :func:`get_deq` accepts, sorted.

    Example:
        >>> 'indexing' in registered_deqs() and 'sliced' in registered_deqs()
        True
    """
    return sorted(_CORES)


def register_deq(deq_type: str, core: type) -> None:
    """Register a DEQ core class under a name, for ``get_deq(core=name)``.

    Args:
        deq_type: the name (``--core`` on the command line).
        core: the class; it is called as ``core(config)`` with a :class:`DEQConfig`
            (subclass :class:`~npdeq.core.base.DEQBase` or one of the cores to get that).

    Raises:
        TypeError: a name that is not a string, or a core that is not callable.

    Example:
        >>> class MyDEQ(DEQSliced):
        ...     pass
        >>> register_deq('mine', MyDEQ)
        >>> type(get_deq(core='mine')).__name__
        'MyDEQ'
        >>> del _CORES['mine']
    """
    if not isinstance(deq_type, str) or not deq_type:
        raise TypeError(f"a DEQ core name must be a non-empty string, got {deq_type!r}")
    if not callable(core):
        raise TypeError(f"core {deq_type!r} must be a class, got {type(core).__name__}")
    _CORES[deq_type] = core


def get_deq(args: Any = None, **kwargs: Any) -> DEQBase:
    """Build the DEQ core named by the config key ``core`` (default ``'sliced'``).

    ``DEQIndexing`` (``core='indexing'``) reads its gradient-carrying states from one solve;
    ``DEQSliced`` (``core='sliced'``) cuts the solve into segments with a gradient functor
    after each. Both behave the same in eval mode.

    Args:
        args: a DEQ config: dict, ``argparse.Namespace`` (e.g. from a parser with
            :func:`~npdeq.core.config.add_deq_args`; the script's own flags are ignored) or
            :class:`DEQConfig`. Copied, never modified.
        **kwargs: DEQ config keys; they win over ``args``.

    Returns:
        The DEQ core instance (in training mode).

    Raises:
        ValueError: an unknown core name or config key (with the closest valid ones), or an
            invalid setting.

    Example:
        >>> deq = get_deq(core='indexing', f_solver='anderson', f_max_iter=30, ift=True)
        >>> type(deq).__name__, deq.f_max_iter
        ('DEQIndexing', 30)
        >>> import argparse
        >>> type(get_deq(argparse.Namespace(core='sliced', lr=0.1))).__name__
        'DEQSliced'
    """
    config = DEQConfig(args)
    config.update(**kwargs)
    name = config.get("core")
    if name not in _CORES:
        raise ValueError(f"config key 'core': {unknown_key_error(name, _CORES, 'DEQ core')}")
    return _CORES[name](config)


def register_reset_hook(hook: Callable[[Any], None]) -> None:
    """Add a function :func:`reset_deq` calls on every module of the model.

    The normalisation and dropout layers register theirs (recompute normalised weights,
    draw new dropout masks) when they are imported. Registering the same hook twice keeps
    one.

    Args:
        hook: ``hook(module)``; it must ignore modules it does not handle.

    Raises:
        TypeError: ``hook`` is not callable.

    Example:
        >>> seen = []
        >>> register_reset_hook(seen.append)
        >>> reset_deq(object())
        >>> len(seen)
        1
        >>> _RESET_HOOKS.remove(seen.append)
    """
    if not callable(hook):
        raise TypeError(f"a reset hook must be callable, got {type(hook).__name__}")
    if hook not in _RESET_HOOKS:
        _RESET_HOOKS.append(hook)


def reset_deq(model: Any) -> None:
    """Reset a DEQ layer's per-iteration state (usually before each training step).

    Calls every hook registered with :func:`register_reset_hook` on each module of
    ``model`` (``model.modules()`` when it has that method, else ``model`` alone). npdeq's
    normalisation and dropout layers, once they exist, register the hooks that recompute
    normalised weights and reset variational dropout masks, as TorchDEQ's ``reset_norm`` and
    ``reset_dropout``. With none registered (or on a model without such modules) this does
    nothing.

    Args:
        model: the DEQ layer (any object; a module tree once ``npdeq.nn`` exists).

    Example:
        >>> reset_deq(get_deq())  # nothing to reset
    """
    modules = model.modules() if callable(getattr(model, "modules", None)) else [model]
    for module in modules:
        for hook in _RESET_HOOKS:
            hook(module)
