"""DEQ config keys: TorchDEQ's names and defaults, and how each value is checked.

Every DEQ setting has one name and one default here (:data:`DEFAULTS`, grouped as TorchDEQ's
command line groups in :data:`GROUPS`), and one rule saying what a value of it may be, read by
:func:`check_value` (types, finiteness, ranges, choices; NumPy scalars are taken as Python
numbers). Keys for features implemented above the cores (normalisation, Jacobian
regularisation) are accepted, checked and stored like the others. :class:`DEQConfig`
(:mod:`npdeq.core.config`) holds a checked configuration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from npdeq.backend.checks import as_count, check_bool, check_real, describe_range
from npdeq.grad.adjoint import FALLBACKS
from npdeq.grad.phantom import PHANTOM_MEMORY

__all__ = ["DEFAULTS", "GROUPS", "STOP_MODES", "check_value", "unknown_key_error"]

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

STOP_MODES = ("abs", "rel")


# --- value checks -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class _Rule:
    """How one key's value is checked: its kind, bounds and choices.

    Kinds: ``'name'`` a non-empty str; ``'int'`` a count >= ``low`` (integral floats taken);
    ``'real'`` a finite number in the range; ``'flag'`` True or False; ``'choice'`` one of
    ``choices`` (``'none'`` spells ``None`` where ``None`` is a choice); ``'steps'`` one count
    or a list of them, kept as a list (``increasing``: strictly); ``'int_or_list'`` one count
    (kept) or a non-empty list of them.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[Any, ...] = ()
    none_ok: bool = False  # None is a value (kept as None)
    increasing: bool = False


def _rules(keys: str, rule: _Rule) -> dict[str, _Rule]:
    return dict.fromkeys(keys.split(), rule)


# One rule for every key of DEFAULTS (a test checks each default against its rule).
_RULES: dict[str, _Rule] = {
    **_rules("f_solver b_solver core norm_type", _Rule("name")),
    **_rules("f_max_iter b_max_iter eval_f_max_iter jac_incremental", _Rule("int", low=0)),
    **_rules("n_states sn_n_power_iters", _Rule("int", low=1)),
    "sup_gap": _Rule("int"),  # <= 0: off
    **_rules("f_tol b_tol gamma jac_loss_weight", _Rule("real", low=0.0)),  # tol 0: max_iter
    "jac_loss_freq": _Rule("real", low=0.0, high=1.0),
    **_rules("eval_factor norm_clip_value norm_target_norm",
             _Rule("real", low=0.0, low_open=True)),
    "tau": _Rule("real", low=0.0, high=1.0, low_open=True),
    **_rules("f_stop_mode b_stop_mode", _Rule("choice", choices=STOP_MODES)),
    "b_fallback": _Rule("choice", choices=FALLBACKS),
    "phantom_memory": _Rule("choice", choices=PHANTOM_MEMORY),
    "no_stat": _Rule("flag", none_ok=True),
    **_rules("ift hook_ift norm_no_scale norm_clip sradius_mode", _Rule("flag")),
    "indexing": _Rule("steps", low=1, none_ok=True, increasing=True),
    "sup_loc": _Rule("steps", low=1, none_ok=True),
    "grad": _Rule("int_or_list", low=0),
}


def _bad(key: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"config key {key!r}: expected {expected}, got {value!r}")


def _int(key: str, value: Any, rule: _Rule) -> int:
    """A count: Python/NumPy ints, integral floats (``12.0``); never bools or strings."""
    out = as_count(value)
    if out is None:  # an integral float (a parsed 12.0) is a count too
        try:
            number = check_real(key, value)
        except ValueError:
            number = math.nan  # not integral either
        if not number.is_integer():
            raise _bad(key, value, describe_range("an int", rule.low, fmt="d"))
        out = int(number)
    if rule.low is not None and not out >= rule.low:
        raise _bad(key, value, describe_range("an int", rule.low, fmt="d"))
    return out


def _real(key: str, value: Any, rule: _Rule) -> float:
    """A finite Python float in the rule's range (NumPy numbers and 0-d real arrays taken)."""
    try:
        return check_real(key, value, rule.low, rule.high, low_open=rule.low_open)
    except ValueError:
        expected = describe_range("a finite number", rule.low, rule.high, rule.low_open)
        raise _bad(key, value, expected) from None


def _flag(key: str, value: Any, rule: _Rule) -> bool:
    try:
        return check_bool(key, value)
    except TypeError:
        raise _bad(key, value, "True or False") from None


def _name(key: str, value: Any, rule: _Rule) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(key, value, "a name (str)")
    return value


def _choice(key: str, value: Any, rule: _Rule) -> Any:
    if None in rule.choices and isinstance(value, str) and value.lower() == "none":
        return None  # the command line's spelling of None
    if not (value is None and None in rule.choices
            or isinstance(value, str) and value in rule.choices):
        raise _bad(key, value, f"one of {rule.choices}")
    return value


def _steps(key: str, value: Any, rule: _Rule) -> list[int]:
    steps = [_int(key, v, rule) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if rule.increasing and any(b <= a for a, b in zip(steps, steps[1:])):
        raise _bad(key, value, "strictly increasing solver steps >= 1")
    return steps


def _int_or_list(key: str, value: Any, rule: _Rule) -> int | list[int]:
    if value is not None and not isinstance(value, (list, tuple)):
        return _int(key, value, rule)
    if not value:
        raise _bad(key, value, "an int >= 0 or a non-empty list of them")
    return _steps(key, value, rule)


_KINDS = {"name": _name, "int": _int, "real": _real, "flag": _flag, "choice": _choice,
          "steps": _steps, "int_or_list": _int_or_list}

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
    rule = _RULES[key]
    if value is None and rule.none_ok:
        return None
    return _KINDS[rule.kind](key, value, rule)


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
