"""``add_deq_args``: TorchDEQ's DEQ command line flags, same names and defaults, for ``argparse``.

The flags are generated from :data:`npdeq.core.config.DEFAULTS` (list flags keep TorchDEQ's
``[]``/``[1]`` defaults, which mean the same as the config's ``None``/``1``). A parsed
namespace goes to ``get_deq`` as is.
"""

from __future__ import annotations

from typing import Any

from npdeq.core.config import DEFAULTS, STOP_MODES
from npdeq.grad.phantom import PHANTOM_MEMORY

__all__ = ["add_deq_args"]


# The help of each flag, in TorchDEQ's groups. A flag's type and default are its key's default
# (a bool default makes a switch); the list flags and the choices are below.
HELP: dict[str, dict[str, str]] = {
    "DEQ solver": {
        "f_solver": "forward solver: fixed_point_iter, simple_fixed_point_iter, anderson, "
                    "broyden, or a registered name",
        "b_solver": "backward (IFT adjoint) solver, as --f_solver, or 'direct'",
        "f_max_iter": "most function evaluations of the forward solve",
        "b_max_iter": "most iterations of the backward solve",
        "f_tol": "forward solve tolerance",
        "b_tol": "backward solve tolerance",
        "f_stop_mode": "forward residual: abs or rel",
        "b_stop_mode": "backward residual: abs or rel",
        "b_fallback": "re-solve samples the iterative IFT adjoint leaves unconverged by GMRES "
                      "(gmres), or only flag them (none; npdeq only)",
        "eval_factor": "at test time, f_max_iter times this factor",
        "eval_f_max_iter": "at test time, this many iterations (0: use eval_factor)",
    },
    "DEQ normalisation": {
        "norm_type": "weight normalisation: weight_norm, spectral_norm or none",
        "norm_no_scale": "no learnable target norm",
        "norm_clip": "clip the rescaling factor at norm_clip_value",
        "norm_clip_value": "largest rescaling factor",
        "norm_target_norm": "target norm when it is not learned",
        "sn_n_power_iters": "power iterations of spectral normalisation",
    },
    "DEQ training": {
        "core": "DEQ core: indexing or sliced (or a registered name)",
        "ift": "implicit differentiation on the last state",
        "hook_ift": "implicit differentiation (same rule in npdeq)",
        "n_states": "number of states sampled uniformly along the solve",
        "indexing": "solver steps at which to sample states",
        "gamma": "weight decay of the fixed-point correction loss",
        "grad": "PhantomGrad steps per state",
        "tau": "PhantomGrad damping",
        "sup_gap": "also supervise every sup_gap-th PhantomGrad step (> 0)",
        "sup_loc": "also supervise these PhantomGrad steps",
        "phantom_memory": "PhantomGrad: keep the k recorded steps for the backward pass "
                          "(store) or record them again there (recompute: memory flat in k; "
                          "npdeq only)",
    },
    "DEQ regularisation": {
        "jac_loss_weight": "Jacobian regularisation weight",
        "jac_loss_freq": "fraction of steps with Jacobian regularisation",
        "jac_incremental": "raise jac_loss_weight by 0.1 every this many steps (0: never)",
    },
    "DEQ monitoring": {"sradius_mode": "estimate the spectral radius at test time"},
}
# TorchDEQ's lists of ints (nargs='+') and their defaults, which mean the config's None and 1.
LIST_DEFAULTS: dict[str, list[int]] = {"indexing": [], "grad": [1], "sup_loc": []}
CHOICES: dict[str, tuple[str, ...]] = {
    "f_stop_mode": STOP_MODES, "b_stop_mode": STOP_MODES, "b_fallback": ("gmres", "none"),
    "phantom_memory": PHANTOM_MEMORY}


def flag_options(key: str, text: str) -> dict[str, Any]:
    """The ``add_argument`` keywords of the flag of ``key``, with help ``text``.

    Example:
        >>> flag_options('f_max_iter', 'most iterations')
        {'type': <class 'int'>, 'default': 40, 'help': 'most iterations'}
    """
    if key in LIST_DEFAULTS:
        return dict(type=int, nargs="+", default=list(LIST_DEFAULTS[key]), help=text)
    value = DEFAULTS[key]
    if isinstance(value, bool):
        return dict(action="store_true", help=text)
    options = dict(type=type(value), default=value, help=text)
    if key in CHOICES:
        options["choices"] = CHOICES[key]
    return options


def add_deq_args(parser: Any) -> Any:
    """Add TorchDEQ's DEQ flags (same names and defaults) to an ``argparse`` parser.

    The flags come in five groups: solver (``--f_solver``, ``--f_max_iter``, ``--f_tol``,
    ...), normalisation (``--norm_type``, ...), training (``--core``, ``--ift``,
    ``--n_states``, ``--indexing``, ``--grad``, ``--tau``, ...), regularisation
    (``--jac_loss_weight``, ...) and monitoring (``--sradius_mode``). The parsed namespace can
    be passed to :func:`~npdeq.core.registry.get_deq` as is; the script's own flags in it are
    ignored.

    Args:
        parser: an ``argparse.ArgumentParser`` (or an argument group).

    Returns:
        ``parser`` (TorchDEQ returns ``None``).

    Example:
        >>> import argparse
        >>> parser = add_deq_args(argparse.ArgumentParser())
        >>> args = parser.parse_args(['--f_max_iter', '12', '--ift', '--indexing', '4', '8'])
        >>> args.f_max_iter, args.ift, args.indexing, args.core
        (12, True, [4, 8], 'sliced')
    """
    import argparse  # noqa: PLC0415 - the caller has imported it already

    nest = isinstance(parser, argparse.ArgumentParser)  # groups inside groups are deprecated
    for title, texts in HELP.items():
        group = parser.add_argument_group(title) if nest else parser
        for key, text in texts.items():
            group.add_argument(f"--{key}", **flag_options(key, text))
    return parser
