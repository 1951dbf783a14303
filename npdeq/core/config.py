"""DEQ configuration: :class:`DEQConfig`, the DEQ keys that were set, checked and copied.

The keys, their defaults and their checks live in :mod:`npdeq.core.keys` (re-exported here:
:data:`DEFAULTS`, :data:`GROUPS`, :func:`check_value`, ...); the cores, ``get_deq`` and
``add_deq_args`` (:mod:`npdeq.core.args`) read them through this module.

Where a configuration comes from decides how unknown keys are treated (TorchDEQ silently
ignores them all):

- keyword arguments, dicts (any mapping) and :class:`DEQConfig` objects are *strict*: a key
  that is not a DEQ key raises ``ValueError`` naming the key and the closest valid ones;
- an ``argparse.Namespace`` (or any other object with attributes) is usually a whole training
  script's flags, so attributes that are not DEQ keys are set aside (:attr:`DEQConfig.ignored`)
  unless they look like a misspelled DEQ key (``difflib`` ratio >= 0.9, e.g. ``f_maxiter``,
  ``stop_mode``), which raises as well.

A setting given explicitly that the configuration does not use (for example ``tau`` with
``ift=True`` and one state) is accepted, as in TorchDEQ, but the cores name it in one
:class:`ConfigWarning` when they are built.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from typing import Any, Iterator

from npdeq.core.keys import DEFAULTS, GROUPS, STOP_MODES, check_value, unknown_key_error
from npdeq.exceptions import ConfigWarning

__all__ = ["DEQConfig", "DEFAULTS", "GROUPS", "STOP_MODES", "ConfigWarning", "default",
           "is_default", "is_set", "check_value", "unknown_key_error"]

# Attribute objects (argparse namespaces) may carry the script's own flags; only names this
# close to a DEQ key are taken for misspellings.
NEAR_MISS_RATIO = 0.9


class _Default:
    """A constructor default that yields to a value from ``args``; shows as the value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def default(key: str) -> Any:
    """The default of ``key`` as a marker for constructor signatures.

    A parameter declared ``f_max_iter: int = default('f_max_iter')`` shows as ``40`` in
    ``help()``, and :func:`is_default` tells that the caller did not pass it, so a value from
    ``args`` can take its place (explicit keyword > ``args`` > default).

    Args:
        key: a key of :data:`DEFAULTS`.

    Returns:
        A marker holding ``DEFAULTS[key]``.

    Raises:
        KeyError: an unknown key.

    Example:
        >>> default('f_max_iter')
        40
    """
    return _Default(DEFAULTS[key])


def is_default(value: Any) -> bool:
    """Whether ``value`` is a marker made by :func:`default` (a parameter the caller left out).

    Args:
        value: a parameter's value.

    Returns:
        ``True`` for a :func:`default` marker.

    Example:
        >>> is_default(default('tau')), is_default(1.0)
        (True, False)
    """
    return isinstance(value, _Default)


def is_set(config: "DEQConfig", key: str) -> bool:
    """Whether ``config`` sets ``key`` to something other than its default.

    ``add_deq_args``' list flags (``[]`` for ``indexing``/``sup_loc``, ``[1]`` for ``grad``)
    count as their config defaults (``None``, ``1``), so a parsed namespace of defaults sets
    nothing.

    Args:
        config: a :class:`DEQConfig`.
        key: a key of :data:`DEFAULTS`.

    Returns:
        Whether the value set differs from the default.

    Example:
        >>> is_set(DEQConfig({'tau': 0.5}), 'tau'), is_set(DEQConfig({'tau': 1.0}), 'tau')
        (True, False)
        >>> is_set(DEQConfig({'grad': [1], 'indexing': []}), 'grad')
        False
    """
    if key not in config.config:
        return False
    value, base = config.config[key], DEFAULTS[key]
    if value in (None, []) and base in (None, []):
        return False
    if isinstance(value, list) and len(value) == 1 and not isinstance(base, list):
        value = value[0]
    return value != base


def _is_near_miss(key: str) -> bool:
    import difflib  # noqa: PLC0415

    return bool(difflib.get_close_matches(key, DEFAULTS, n=1, cutoff=NEAR_MISS_RATIO))


def _is_namespace(obj: Any) -> bool:
    argparse = sys.modules.get("argparse")  # no namespace exists before argparse is imported
    return argparse is not None and isinstance(obj, argparse.Namespace)


class DEQConfig:
    """A DEQ configuration: the DEQ keys that were set, checked, and copied from their source.

    Args:
        config: ``None``, a dict (or any mapping), an ``argparse.Namespace`` (or any object
            with attributes, read with ``vars``), or another ``DEQConfig``. Its values are
            copied: later changes to the caller's object do not reach this config, and this
            config never writes to it.
        strict: whether keys that are not DEQ keys raise. ``None`` (default): strict for
            mappings and ``DEQConfig``; for namespaces, only near-misses of DEQ keys raise and
            other attributes (the script's own flags) are kept in :attr:`ignored`.

    Attributes:
        config: dict of the DEQ keys that were set (defaults not included).
        ignored: dict of the attributes of a namespace that are not DEQ keys.

    Raises:
        ValueError: an unknown key (with the closest valid ones), or an invalid value.
        TypeError: a ``config`` of another kind.

    Example:
        >>> cfg = DEQConfig({'f_max_iter': 12})
        >>> cfg.update(ift=True)
        >>> cfg.get('f_max_iter'), cfg.get('f_tol'), cfg.ift
        (12, 0.001, True)
        >>> DEQConfig({'f_maxiter': 12})
        Traceback (most recent call last):
        ValueError: unknown config key 'f_maxiter'; did you mean 'f_max_iter', 'b_max_iter',
        'eval_f_max_iter'?
    """

    def __init__(self, config: Any = None, *, strict: bool | None = None) -> None:
        self.config: dict[str, Any] = {}
        self.ignored: dict[str, Any] = {}
        if config is None:
            return
        if isinstance(config, DEQConfig):
            self.config = copy.deepcopy(config.config)
            self.ignored = dict(config.ignored)
            return
        if isinstance(config, Mapping):
            items, lenient = dict(config), False
        elif _is_namespace(config) or hasattr(config, "__dict__"):
            items, lenient = dict(vars(config)), True
        else:
            raise TypeError(f"a DEQ config must be a dict, an argparse.Namespace or a DEQConfig, "
                            f"got {type(config).__name__}")
        lenient = lenient if strict is None else not strict
        for key, value in items.items():
            if key not in DEFAULTS and lenient and not _is_near_miss(str(key)):
                self.ignored[key] = value  # the script's own flag: kept, never used
                continue
            self._set(key, value)

    def _set(self, key: Any, value: Any) -> None:
        if key not in DEFAULTS:
            raise unknown_key_error(key)
        self.config[key] = check_value(key, copy.deepcopy(value))

    def get(self, key: str, default: Any = ...) -> Any:
        """The value of ``key``: the one set, else ``default`` when given, else its default.

        Args:
            key: a DEQ key.
            default: returned when the key was not set (TorchDEQ's ``get``); when left out,
                the key's default from :data:`DEFAULTS`.

        Returns:
            The value.

        Raises:
            ValueError: an unknown key (only when ``default`` is left out).

        Example:
            >>> DEQConfig().get('f_max_iter'), DEQConfig().get('f_max_iter', 10)
            (40, 10)
        """
        if key in self.config:
            return self.config[key]
        if default is not ...:
            return default
        if key not in DEFAULTS:
            raise unknown_key_error(key)
        return copy.deepcopy(DEFAULTS[key])

    def update(self, **kwargs: Any) -> None:
        """Set DEQ keys (they win over values set before).

        Args:
            **kwargs: DEQ keys and values.

        Raises:
            ValueError: an unknown key or an invalid value (nothing is changed then).

        Example:
            >>> cfg = DEQConfig()
            >>> cfg.update(f_solver='anderson', f_tol=1e-4)
            >>> cfg
            DEQConfig(f_solver='anderson', f_tol=0.0001)
        """
        checked = {}
        for key, value in kwargs.items():
            if key not in DEFAULTS:
                raise unknown_key_error(key)
            checked[key] = check_value(key, copy.deepcopy(value))
        self.config.update(checked)

    def to_dict(self, with_defaults: bool = False) -> dict[str, Any]:
        """A copy of the settings as a dict.

        Args:
            with_defaults: include every DEQ key (defaults for those not set).

        Returns:
            A new dict.

        Example:
            >>> DEQConfig({'ift': True}).to_dict()
            {'ift': True}
        """
        base = copy.deepcopy(DEFAULTS) if with_defaults else {}
        base.update(copy.deepcopy(self.config))
        return base

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key in ("config", "ignored"):
            raise AttributeError(key)
        if key not in DEFAULTS:
            raise AttributeError(f"'DEQConfig' has no attribute {key!r} (not a DEQ key)")
        return self.get(key)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.config

    def __iter__(self) -> Iterator[str]:
        return iter(self.config)

    def __len__(self) -> int:
        return len(self.config)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DEQConfig):
            return NotImplemented
        return self.to_dict(True) == other.to_dict(True)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"DEQConfig({items})"
