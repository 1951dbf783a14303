"""DEQ configuration: TorchDEQ's config keys and defaults, their checks, and :class:`DEQConfig`.

Every DEQ setting has one name and one default here (:data:`DEFAULTS`, grouped as TorchDEQ's
command line groups in :data:`GROUPS`); the cores, ``get_deq`` and ``add_deq_args``
(:mod:`npdeq.core.args`) read them from this module. Keys for features that later layers
implement (normalisation, Jacobian regularisation) are accepted, checked and stored.

Where a configuration comes from decides how unknown keys are treated (TorchDEQ silently
ignores them all):

- keyword arguments, dicts (any mapping) and :class:`DEQConfig` objects are *strict*: a key
  that is not a DEQ key raises ``ValueError`` naming the key and the closest valid ones;
- an ``argparse.Namespace`` (or any other object with attributes) is usually a whole training
  script's flags, so attributes that are not DEQ keys are set aside (:attr:`DEQConfig.ignored`)
  unless they look like a misspelled DEQ key (``difflib`` ratio >= 0.9, e.g. ``f_maxiter``,
  ``stop_mode``), which raises as well.

Values are checked by :func:`check_value` (types, finiteness, ranges; NumPy scalars are
taken as Python numbers). A setting given explicitly that the configuration does not use (for
example ``tau`` with ``ift=True`` and one state) is accepted, as in TorchDEQ, but the cores
name it in one :class:`ConfigWarning` when they are built.

Imports only the standard library (``difflib`` lazily, on errors).
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Mapping
from typing import Any, Iterator

from npdeq.backend.checks import as_count, check_bool, check_real
from npdeq.exceptions import ConfigWarning
from npdeq.grad.adjoint import FALLBACKS
from npdeq.grad.phantom import PHANTOM_MEMORY

__all__ = ["DEQConfig", "DEFAULTS", "GROUPS", "STOP_MODES", "ConfigWarning", "default",
           "is_default", "is_set", "check_value", "unknown_key_error"]

# TorchDEQ's keys, defaults and command line groups (its add_deq_args plus DEQBase's no_stat).
GROUPS: dict[str, dict[str, Any]] = {
    "solver": {
        "f_solver": "fixed_point_iter", "b_solver": "fixed_point_iter",
        "f_max_iter": 40, "b_max_iter": 40, "f_tol": 1e-3, "b_tol": 1e-6,
        "f_stop_mode": "abs", "b_stop_mode": "abs", "eval_factor": 1.0, "eval_f_max_iter": 0,
        "no_stat": None,
        # npdeq's own: GMRES re-solves the samples an iterative IFT adjoint leaves
        # unconverged ('gmres'), or they are only flagged and warned about (None)
        "b_fallback": "gmres",
    },
    "norm": {
        "norm_type": "weight_norm", "norm_no_scale": False, "norm_clip": False,
        "norm_clip_value": 1.0, "norm_target_norm": 1.0, "sn_n_power_iters": 1,
    },
    "training": {
        "core": "sliced", "ift": False, "hook_ift": False, "n_states": 1, "indexing": None,
        "gamma": 0.8, "grad": 1, "tau": 1.0, "sup_gap": -1, "sup_loc": None,
        # npdeq's own: what PhantomGrad keeps for the backward pass (npdeq.grad.phantom)
        "phantom_memory": "store",
    },
    "regularization": {"jac_loss_weight": 0.0, "jac_loss_freq": 0.0, "jac_incremental": 0},
    "monitoring": {"sradius_mode": False},
}
DEFAULTS: dict[str, Any] = {k: v for group in GROUPS.values() for k, v in group.items()}

# Attribute objects (argparse namespaces) may carry the script's own flags; only names this
# close to a DEQ key are taken for misspellings.
NEAR_MISS_RATIO = 0.9
STOP_MODES = ("abs", "rel")


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


# --- value checks -------------------------------------------------------------------------

def _bad(key: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"config key {key!r}: expected {expected}, got {value!r}")


def _int(key: str, value: Any, minimum: int | None = None) -> int:
    """An integer count: Python/NumPy ints, integral floats (``12.0``); never bools/strings."""
    expected = "an int" if minimum is None else f"an int >= {minimum}"
    out = as_count(value)
    if out is None:  # an integral float (a parsed 12.0) is a count too
        try:
            number = check_real(key, value)
        except ValueError:
            raise _bad(key, value, expected) from None
        if not number.is_integer():
            raise _bad(key, value, expected)
        out = int(number)
    if minimum is not None and not out >= minimum:
        raise _bad(key, value, expected)
    return int(out)


def _number(key: str, value: Any, low: float = -math.inf, high: float = math.inf,
            low_open: bool = False) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``), as a
    Python float: Python and NumPy ints and floats, and 0-d real arrays; never bools, strings,
    NaN or infinities."""
    expected = "a finite number"
    if low_open:
        expected += f" > {low:g}" if high == math.inf else f" in ({low:g}, {high:g}]"
    elif low > -math.inf:
        expected += f" >= {low:g}" if high == math.inf else f" in [{low:g}, {high:g}]"
    try:
        return check_real(key, value, None if low == -math.inf else low,
                          None if high == math.inf else high, low_open=low_open)
    except ValueError:
        raise _bad(key, value, expected) from None


def _bool(key: str, value: Any) -> bool:
    try:
        return check_bool(key, value)
    except TypeError:
        raise _bad(key, value, "True or False") from None


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(key, value, "a name (str)")
    return value


def _int_list(key: str, value: Any, minimum: int | None = None) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_int(key, v, minimum) for v in value]
    return [_int(key, value, minimum)]


def check_value(key: str, value: Any) -> Any:
    """Check one DEQ setting and return it normalised (sequences become new lists, numbers
    Python ints and floats).

    Counts (``f_max_iter``, ``n_states``, ``indexing`` entries, ...) take Python or NumPy
    ints and integral floats, never bools; real settings (``f_tol``, ``gamma``, ``tau``, ...)
    take Python or NumPy numbers and 0-d real arrays, never bools or strings, and must be
    finite. Ranges: ``f_max_iter``, ``b_max_iter``, ``eval_f_max_iter``,
    ``jac_incremental`` >= 0; ``n_states``, ``sn_n_power_iters``, ``indexing`` and
    ``sup_loc`` entries >= 1 (``indexing`` strictly increasing); ``grad`` entries >= 0
    (>= 1 where PhantomGrad uses them, checked by the cores); ``sup_gap`` any int (<= 0:
    off); ``f_tol``, ``b_tol``, ``gamma``, ``jac_loss_weight`` >= 0 (a tolerance of 0 runs
    the solver to its ``max_iter``); ``jac_loss_freq`` in ``[0, 1]``; ``eval_factor``,
    ``norm_clip_value``, ``norm_target_norm`` > 0; ``tau`` in ``(0, 1]``; ``phantom_memory``
    ``'store'`` or ``'recompute'``; ``b_fallback`` ``'gmres'`` or ``None`` (``'none'``).

    Args:
        key: a key of :data:`DEFAULTS`.
        value: its value.

    Returns:
        The value, normalised (e.g. ``indexing=5`` becomes ``[5]``).

    Raises:
        ValueError: an unknown key or an invalid value (wrong type, NaN, infinite, or out of
            range), naming the key, the value and what was expected.

    Example:
        >>> check_value('indexing', (4, 8)), check_value('f_max_iter', 12.0)
        ([4, 8], 12)
        >>> check_value('gamma', float('nan'))
        Traceback (most recent call last):
        ValueError: config key 'gamma': expected a finite number >= 0, got nan
    """
    if key not in DEFAULTS:
        raise unknown_key_error(key)
    if key in ("f_solver", "b_solver", "core", "norm_type"):
        return _name(key, value)
    if key in ("f_max_iter", "b_max_iter", "eval_f_max_iter", "jac_incremental"):
        return _int(key, value, 0)
    if key in ("n_states", "sn_n_power_iters"):
        return _int(key, value, 1)
    if key == "sup_gap":
        return _int(key, value)  # <= 0: off
    if key in ("f_tol", "b_tol", "gamma", "jac_loss_weight"):
        return _number(key, value, low=0.0)  # tol 0: run to max_iter
    if key == "jac_loss_freq":
        return _number(key, value, low=0.0, high=1.0)
    if key in ("eval_factor", "norm_clip_value", "norm_target_norm"):
        return _number(key, value, low=0.0, low_open=True)
    if key == "tau":
        return _number(key, value, low=0.0, high=1.0, low_open=True)
    if key in ("f_stop_mode", "b_stop_mode"):
        if not isinstance(value, str) or value not in STOP_MODES:
            raise _bad(key, value, f"one of {STOP_MODES}")
        return value
    if key == "b_fallback":
        if isinstance(value, str) and value.lower() == "none":
            return None  # the command line's spelling of None
        if value not in FALLBACKS:
            raise _bad(key, value, f"one of {FALLBACKS}")
        return value
    if key == "phantom_memory":
        if not isinstance(value, str) or value not in PHANTOM_MEMORY:
            raise _bad(key, value, f"one of {PHANTOM_MEMORY}")
        return value
    if key == "no_stat":
        return None if value is None else _bool(key, value)
    if key in ("ift", "hook_ift", "norm_no_scale", "norm_clip", "sradius_mode"):
        return _bool(key, value)
    if key == "indexing":
        steps = _int_list(key, value, 1)
        if steps and any(b <= a for a, b in zip(steps, steps[1:])):
            raise _bad(key, value, "strictly increasing solver steps >= 1")
        return steps
    if key == "sup_loc":
        return _int_list(key, value, 1)
    if key == "grad":
        if value is None or isinstance(value, (list, tuple)) and not value:
            raise _bad(key, value, "an int >= 0 or a non-empty list of them")
        steps = _int_list(key, value, 0)
        return steps if isinstance(value, (list, tuple)) else steps[0]
    raise AssertionError(f"no check for config key {key!r}")  # pragma: no cover


def unknown_key_error(key: Any, valid: Any = DEFAULTS, what: str = "config key") -> ValueError:
    """A ``ValueError`` for an unknown key that names the closest valid ones.

    Args:
        key: the offending key.
        valid: the valid keys.
        what: how to call a key in the message.

    Returns:
        The error (to raise).

    Example:
        >>> print(unknown_key_error('stop_mode'))
        unknown config key 'stop_mode'; did you mean 'f_stop_mode', 'b_stop_mode'?
    """
    import difflib  # noqa: PLC0415 - only on errors

    close = difflib.get_close_matches(str(key), sorted(valid), n=3, cutoff=0.6)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close else
            f"valid keys: {', '.join(sorted(valid))}")
    return ValueError(f"unknown {what} {key!r}; {hint}")


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
        ValueError: unknown config key 'f_maxiter'; did you mean 'f_max_iter', 'b_max_iter', 'eval_f_max_iter'?
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
