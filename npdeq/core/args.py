"""``add_deq_args``: TorchDEQ's DEQ command line flags, same names and defaults, for ``argparse``.

The flags are generated from :data:`npdeq.core.config.DEFAULTS` (list flags keep TorchDEQ's
``[]``/``[1]`` defaults, which mean the same as the config's ``None``/``1``). A parsed
namespace goes to ``get_deq`` as is. Imports ``config`` of this package.
"""

from __future__ import annotations

from typing import Any

from npdeq.core.config import DEFAULTS, STOP_MODES

__all__ = ["add_deq_args"]


def _flags() -> list[tuple[str, str, dict[str, Any]]]:
    """(group title, key, argparse keywords) for each command line flag, TorchDEQ's set."""
    def value(key, kind, text, **extra):
        return key, dict(type=kind, default=DEFAULTS[key], help=text, **extra)

    def switch(key, text):
        return key, dict(action="store_true", help=text)

    solver = [
        value("f_solver", str, "forward solver: fixed_point_iter, simple_fixed_point_iter, "
              "anderson, broyden, or a registered name"),
        value("b_solver", str, "backward (IFT adjoint) solver, as --f_solver, or 'direct'"),
        value("f_max_iter", int, "most function evaluations of the forward solve"),
        value("b_max_iter", int, "most iterations of the backward solve"),
        value("f_tol", float, "forward solve tolerance"),
        value("b_tol", float, "backward solve tolerance"),
        value("f_stop_mode", str, "forward residual: abs or rel", choices=STOP_MODES),
        value("b_stop_mode", str, "backward residual: abs or rel", choices=STOP_MODES),
        value("b_fallback", str, "re-solve samples the iterative IFT adjoint leaves "
              "unconverged by GMRES (gmres), or only flag them (none; npdeq only)",
              choices=("gmres", "none")),
        value("eval_factor", float, "at test time, f_max_iter times this factor"),
        value("eval_f_max_iter", int, "at test time, this many iterations (0: use eval_factor)"),
    ]
    norm = [
        value("norm_type", str, "weight normalisation: weight_norm, spectral_norm or none"),
        switch("norm_no_scale", "no learnable target norm"),
        switch("norm_clip", "clip the rescaling factor at norm_clip_value"),
        value("norm_clip_value", float, "largest rescaling factor"),
        value("norm_target_norm", float, "target norm when it is not learned"),
        value("sn_n_power_iters", int, "power iterations of spectral normalisation"),
    ]
    training = [
        value("core", str, "DEQ core: indexing or sliced (or a registered name)"),
        switch("ift", "implicit differentiation on the last state"),
        switch("hook_ift", "implicit differentiation (same rule in npdeq)"),
        value("n_states", int, "number of states sampled uniformly along the solve"),
        ("indexing", dict(type=int, nargs="+", default=[],
                          help="solver steps at which to sample states")),
        value("gamma", float, "weight decay of the fixed-point correction loss"),
        ("grad", dict(type=int, nargs="+", default=[1], help="PhantomGrad steps per state")),
        value("tau", float, "PhantomGrad damping"),
        value("sup_gap", int, "also supervise every sup_gap-th PhantomGrad step (> 0)"),
        ("sup_loc", dict(type=int, nargs="+", default=[],
                         help="also supervise these PhantomGrad steps")),
        value("phantom_memory", str, "PhantomGrad: keep the k recorded steps for the backward "
              "pass (store) or record them again there (recompute: memory flat in k; "
              "npdeq only)", choices=("store", "recompute")),
    ]
    regularization = [
        value("jac_loss_weight", float, "Jacobian regularisation weight"),
        value("jac_loss_freq", float, "fraction of steps with Jacobian regularisation"),
        value("jac_incremental", int, "raise jac_loss_weight by 0.1 every this many steps "
              "(0: never)"),
    ]
    monitoring = [switch("sradius_mode", "estimate the spectral radius at test time")]
    groups = [("DEQ solver", solver), ("DEQ normalisation", norm), ("DEQ training", training),
              ("DEQ regularisation", regularization), ("DEQ monitoring", monitoring)]
    return [(title, key, kw) for title, flags in groups for key, kw in flags]


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
    groups: dict[str, Any] = {}
    for title, key, kwargs in _flags():
        if title not in groups:
            groups[title] = parser.add_argument_group(title) if nest else parser
        groups[title].add_argument(f"--{key}", **kwargs)
    return parser
