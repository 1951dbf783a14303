"""``DEQBase``: what every DEQ core shares.

The configuration (solver settings, checked at construction), the forward solve on raw arrays
(``func`` wrapped into an array map that records nothing), the checks of ``forward``'s
arguments before any solve (the solver calls: :mod:`npdeq.core.solver_calls`), the eval path
(one solve, detached ``[z*]``, optional spectral radius), and the hook that keeps the
backward statistics in ``info``. The cores in :mod:`npdeq.core.cores` add the training path.

``DEQBase`` is an :class:`npdeq.nn.Module`, so ``model.train()`` / ``model.eval()`` on a
user's model reach it, as in TorchDEQ.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Any, Callable

from npdeq.autodiff import Tensor, is_grad_enabled, no_grad
from npdeq.core.config import ConfigWarning, DEQConfig, default, is_default, is_set
from npdeq.core.dtypes import call_checking_dtypes
from npdeq.core.solver_calls import (NO_STOPPING_TEST, check_solver_call, check_solver_kwargs,
                                     named_solver, solver_parameters)
from npdeq.core.sradius import spectral_radius
from npdeq.exceptions import ConvergenceWarning
from npdeq.grad.adjoint import LINEAR_SOLVERS, store_backward_stats
from npdeq.grad.state import call_state_func, solver_map
from npdeq.nn.module import Module
from npdeq.solver import get_solver

__all__ = ["DEQBase", "array_map", "initial_state", "solver_parameters", "check_solver_call",
           "BackwardRecorder", "NO_STOPPING_TEST"]


def array_map(func: Callable[..., Any], z: Any,
              check_dtypes: bool | None = None) -> Callable[..., Any]:
    """The cores' :func:`~npdeq.grad.state.solver_map`: with ``check_dtypes`` its first
    call is recorded, to check that no parameter has a lower precision than the state
    (:func:`npdeq.core.dtypes.call_checking_dtypes`); by default it is when grad mode is on
    at that call (a training forward: the eval path and ``no_grad`` record nothing).

    Args:
        func: ``func(z)`` or ``func(*zs)`` on Tensors.
        z: an array or a tuple of arrays: the structure ``func`` is called with.
        check_dtypes: ``True``/``False``: always/never check at the first call.

    Returns:
        ``f(z) -> z'`` (or ``f(*zs) -> tuple``) on raw arrays.

    Example:
        >>> import numpy as np, npdeq
        >>> array_map(lambda z: npdeq.tanh(z), np.zeros((1, 2)))(np.ones((1, 2))).shape
        (1, 2)
    """
    if check_dtypes is False:
        return solver_map(func, z)
    return solver_map(func, z, functools.partial(_first_call, check_dtypes))


def _first_call(check_dtypes: bool | None, func: Callable[..., Any],
                states: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    if check_dtypes or is_grad_enabled():
        return call_checking_dtypes(func, states)
    with no_grad():
        return call_state_func(func, states)


def initial_state(z_init: Any) -> Any:
    """``z_init`` as raw arrays: one array, or a tuple of arrays for a tuple/list state.

    Tensors are taken by value (no gradient flows into the initial state, as in TorchDEQ).

    Args:
        z_init: an array or Tensor, or a tuple/list of them.

    Returns:
        The array, or a tuple of arrays.

    Raises:
        TypeError: something that is not an array, a Tensor or a non-empty tuple/list of them.

    Example:
        >>> import numpy as np, npdeq
        >>> type(initial_state([npdeq.tensor(np.zeros((1, 2))), np.ones((1, 3))])).__name__
        'tuple'
    """
    def raw(a: Any, where: str) -> Any:
        a = a.data if isinstance(a, Tensor) else a
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"z_init{where} must be an array or a Tensor, got {type(a).__name__}")
        return a

    if isinstance(z_init, (tuple, list)):
        if not z_init:
            raise TypeError("z_init is an empty tuple; a tuple state needs at least one array")
        return tuple(raw(a, f"[{i}]") for i, a in enumerate(z_init))
    return raw(z_init, "")


class BackwardRecorder:
    """The backward writer the cores hand to the gradient functors.

    Stores the IFT backward solver's statistics in ``info['backward']`` when the backward pass
    runs (``None`` until then, and for PhantomGrad-only or eval calls), those of the solves
    that higher derivatives add in ``info['backward_higher']`` by order, then calls the
    user's ``backward_writer``.

    Args:
        writer: the user's ``backward_writer`` (or ``None``).

    Example:
        >>> recorder = BackwardRecorder(None)
        >>> info = recorder.attach({})
        >>> recorder({'nstep': 3})
        >>> info
        {'backward': {'nstep': 3}}
    """

    __slots__ = ("writer", "info")

    def __init__(self, writer: Callable[[dict], Any] | None) -> None:
        self.writer = writer
        self.info: dict | None = None

    def attach(self, info: dict) -> dict:
        """Make ``info`` the dict that receives the backward statistics; return it."""
        info["backward"] = None
        self.info = info
        return info

    def __call__(self, stats: dict) -> None:
        if self.info is not None:
            store_backward_stats(self.info, stats)
        if self.writer is not None:
            self.writer(stats)


def _detached(z: Any) -> Any:
    """A state (a Tensor or a tuple of them) cut from the tape."""
    if isinstance(z, tuple):
        return tuple(_detached(a) for a in z)
    return z.detach() if isinstance(z, Tensor) else z


class DEQBase(Module):
    """Base class of the DEQ cores: configuration, forward solve, eval path.

    Not meant to be used as a DEQ itself (its training path raises); subclass it to build a
    new core, overriding ``_train_forward`` (or ``forward``). An :class:`npdeq.nn.Module`
    (no parameters of its own): a user's model that holds it switches it with
    ``model.train()``/``model.eval()``. Settings come from ``args``
    and keyword arguments; an explicitly passed keyword wins over ``args``, ``args`` over the
    defaults shown (TorchDEQ lets ``args`` win over named constructor arguments; ``get_deq``
    has always let keywords win).

    Args:
        args: a DEQ config: dict, ``argparse.Namespace`` or :class:`DEQConfig`. Copied.
        f_solver: forward solver name (``'fixed_point_iter'``, ``'simple_fixed_point_iter'``,
            ``'anderson'``, ``'broyden'`` or a registered one).
        b_solver: backward (IFT adjoint) solver name, ``'gmres'`` or ``'direct'``.
        no_stat: accepted and stored for compatibility; npdeq's solvers always return
            per-sample statistics (``simple_fixed_point_iter`` is the cheap one). Default: True
            for ``simple_fixed_point_iter``.
        f_max_iter: the forward solver's iteration budget.
        b_max_iter: the backward solver's iteration budget.
        f_tol: forward tolerance.
        b_tol: backward tolerance.
        f_stop_mode: ``'abs'`` or ``'rel'`` forward residual.
        b_stop_mode: ``'abs'`` or ``'rel'`` backward residual.
        eval_factor: in eval mode the budget is ``int(f_max_iter * eval_factor)``...
        eval_f_max_iter: ...unless this is positive.
        **kwargs: any other DEQ config key (see :data:`npdeq.core.config.DEFAULTS`); stored.

    Raises:
        ValueError: an unknown key (with the closest valid ones), an invalid value (NaN,
            infinite, out of range: :func:`~npdeq.core.config.check_value`), an unknown
            solver, or a registered solver whose signature cannot take the arguments the core
            passes (:func:`check_solver_call`).

    Warns:
        ConfigWarning: settings given explicitly that have no effect here (``eval_factor``
            with ``eval_f_max_iter > 0``; ``f_tol``/``f_stop_mode`` with a solver that has no
            such stopping test; the cores add their gradient settings), once, at
            construction.

    Example:
        >>> deq = DEQBase(f_solver='anderson', f_max_iter=20)
        >>> deq.f_solver, deq.eval_f_max_iter, deq.training
        ('anderson', 20, True)
    """

    def __init__(self, args: Any = None, f_solver: str = default("f_solver"),
                 b_solver: str = default("b_solver"), no_stat: bool | None = default("no_stat"),
                 f_max_iter: int = default("f_max_iter"), b_max_iter: int = default("b_max_iter"),
                 f_tol: float = default("f_tol"), b_tol: float = default("b_tol"),
                 f_stop_mode: str = default("f_stop_mode"),
                 b_stop_mode: str = default("b_stop_mode"),
                 eval_factor: float = default("eval_factor"),
                 eval_f_max_iter: int = default("eval_f_max_iter"), **kwargs: Any) -> None:
        named = dict(f_solver=f_solver, b_solver=b_solver, no_stat=no_stat,
                     f_max_iter=f_max_iter, b_max_iter=b_max_iter, f_tol=f_tol, b_tol=b_tol,
                     f_stop_mode=f_stop_mode, b_stop_mode=b_stop_mode,
                     eval_factor=eval_factor, eval_f_max_iter=eval_f_max_iter, **kwargs)
        super().__init__()
        self.args = DEQConfig(args)
        self.args.update(**{k: v for k, v in named.items() if not is_default(v)})
        cfg = self.args
        self.f_solver: str = cfg.get("f_solver")
        self.b_solver: str = cfg.get("b_solver")
        # unknown names raise here, not at the first call (or at backward)
        named_solver("f_solver", self.f_solver)
        if self.b_solver not in LINEAR_SOLVERS:  # those the adjoint solve handles itself
            named_solver("b_solver", self.b_solver, extra=tuple(LINEAR_SOLVERS))
        no_stat = cfg.get("no_stat")
        self.no_stat: bool = (self.f_solver == "simple_fixed_point_iter"
                              if no_stat is None else no_stat)
        self.f_max_iter: int = cfg.get("f_max_iter")
        self.b_max_iter: int = cfg.get("b_max_iter")
        self.f_tol: float = cfg.get("f_tol")
        self.b_tol: float = cfg.get("b_tol")
        self.f_stop_mode: str = cfg.get("f_stop_mode")
        self.b_stop_mode: str = cfg.get("b_stop_mode")
        eval_max = cfg.get("eval_f_max_iter")
        self.eval_f_max_iter: int = (eval_max if eval_max > 0
                                     else int(self.f_max_iter * cfg.get("eval_factor")))
        forward = get_solver(self.f_solver)
        accepted = solver_parameters(forward)
        check_solver_call(forward, self.f_solver, "f_solver",
                          ["max_iter", "indexing"] + [k for k in ("tol", "stop_mode")
                                                      if accepted is None or k in accepted])
        if not self._warns_after_subclass_init:
            self._warn_ignored_settings()

    # A subclass that adds settings sets this and calls _warn_ignored_settings at the end of
    # its own __init__ (its _ignored_settings needs its attributes).
    _warns_after_subclass_init = False

    def _warn_ignored_settings(self) -> None:
        """One :class:`~npdeq.core.config.ConfigWarning` listing the settings without effect,
        attributed to the first caller outside this package (``get_deq``'s or the
        constructor's caller)."""
        ignored = self._ignored_settings()
        if not ignored:
            return
        here, frame, level = os.path.dirname(os.path.abspath(__file__)), sys._getframe(1), 2
        while frame is not None and os.path.dirname(
                os.path.abspath(frame.f_code.co_filename)) == here:
            frame, level = frame.f_back, level + 1
        warnings.warn(f"{type(self).__name__}: " + "; ".join(
            f"{', '.join(keys)} {'has' if len(keys) == 1 else 'have'} no effect {why}"
            for keys, why in ignored), ConfigWarning, stacklevel=level)

    def _ignored_settings(self) -> list[tuple[list[str], str]]:
        """The explicitly set keys this configuration does not use, each with the reason.

        Extended by subclasses (the cores add the gradient settings).
        """
        cfg, out = self.args, []
        if is_set(cfg, "eval_factor") and cfg.get("eval_f_max_iter") > 0:
            out.append((["eval_factor"], "when eval_f_max_iter > 0 (it sets the eval budget)"))
        accepted = solver_parameters(get_solver(self.f_solver))
        keys = [k for k, arg in (("f_tol", "tol"), ("f_stop_mode", "stop_mode"))
                if is_set(cfg, k) and (self.f_solver in NO_STOPPING_TEST
                                       or (accepted is not None and arg not in accepted))]
        if keys:
            out.append((keys, f"with f_solver={self.f_solver!r} (it has no such stopping "
                              "test)"))
        return out

    # -- forward ------------------------------------------------------------------------------

    def __call__(self, func: Callable[..., Any], z_init: Any, solver_kwargs: dict | None = None,
                 sradius_mode: bool | None = None,
                 backward_writer: Callable[[dict], Any] | None = None) -> tuple[list, dict]:
        return self.forward(func, z_init, solver_kwargs, sradius_mode, backward_writer)

    def forward(self, func: Callable[..., Any], z_init: Any, solver_kwargs: dict | None = None,
                sradius_mode: bool | None = None,
                backward_writer: Callable[[dict], Any] | None = None) -> tuple[list, dict]:
        """Solve for the fixed point; in training, attach the gradient rules.

        Args:
            func: the DEQ map on Tensors, ``func(z) -> z`` (or ``func(*zs) -> zs`` for a tuple
                state), closing over its parameters and the input injection.
            z_init: the initial state: a ``(B, ...)`` array or Tensor, or a tuple/list of
                them sharing B. Taken by value.
            solver_kwargs: arguments for the forward solver in this call (``m``, ``lam``,
                ``tau``, ``tol``, ``stop_mode``, ...), and ``f_max_iter`` to override the
                budget (``0``: no solve, pure unrolling).
            sradius_mode: eval mode only: put the per-sample spectral radius estimate of
                ``df/dz`` at z* in ``info['sradius']`` (100 power iterations on VJPs).
                ``None`` (default): the config key ``sradius_mode`` (default False).
            backward_writer: called with the IFT backward solver's statistics when the
                backward pass runs (they are also stored in ``info['backward']``).

        Returns:
            ``(z_out, info)``. Training: the list of gradient-carrying states chosen by the
            core (detached, with the same values, when called under
            :func:`~npdeq.autodiff.no_grad`: nothing is recorded then); eval: ``[z*]``
            detached. With a tuple state each entry is a tuple of Tensors.
            ``info``: the forward solver's per-sample statistics
            (:class:`~npdeq.solver.SolverStat`: ``abs_lowest``, ``nstep``, ``converged``,
            ``nonfinite``, ``sradius``, ...) and ``'backward'`` (``None`` until a backward
            pass through IFT has run, then its statistics).

        Raises:
            TypeError: ``func`` or ``backward_writer`` not callable; a bad ``z_init``.
            ValueError: bad ``solver_kwargs`` (unknown for the solver, or reserved); a
                per-call ``f_max_iter`` that does not fit the sampling settings; ``func``
                returning another structure or shape than ``z_init`` (at its first call).

        Example:
            >>> import numpy as np, npdeq
            >>> deq = npdeq.get_deq(core='indexing', f_tol=1e-8).eval()
            >>> z_out, info = deq(lambda z: 0.5 * z + 1.0, np.zeros((2, 3)), sradius_mode=True)
            >>> z_out[0].requires_grad, info['converged'].tolist()
            (False, [True, True])
            >>> info['sradius'].round(6).tolist()
            [0.5, 0.5]
        """
        if not callable(func):
            raise TypeError(f"func must be callable, got {type(func).__name__}")
        if backward_writer is not None and not callable(backward_writer):
            raise TypeError("backward_writer must be callable or None")
        if sradius_mode is None:
            sradius_mode = self.args.get("sradius_mode")
        elif not isinstance(sradius_mode, bool):
            raise TypeError(f"sradius_mode must be True, False or None, got {sradius_mode!r}")
        z0 = initial_state(z_init)
        kwargs, budget = check_solver_kwargs(self.f_solver, solver_kwargs)
        if self.training:
            recording = is_grad_enabled()
            z_out, info = self._train_forward(func, z0,
                                              self.f_max_iter if budget is None else budget,
                                              kwargs, BackwardRecorder(backward_writer))
            if not recording:  # whatever a gradient rule did, nothing leaves recorded
                z_out = [_detached(z) for z in z_out]
            return z_out, info
        budget = self.eval_f_max_iter if budget is None else budget
        z_star, _, info = self._solve(array_map(func, z0, check_dtypes=False), z0, budget,
                                      None, kwargs)
        if sradius_mode:
            info["sradius"] = spectral_radius(func, z_star)
        BackwardRecorder(None).attach(info)
        z_out = (tuple(Tensor(a) for a in z_star) if isinstance(z_star, tuple)
                 else Tensor(z_star))
        return [z_out], info

    def _train_forward(self, func: Callable[..., Any], z0: Any, f_max_iter: int, kwargs: dict,
                       recorder: BackwardRecorder) -> tuple[list, dict]:
        raise NotImplementedError(
            f"{type(self).__name__} has no training path: use DEQIndexing or DEQSliced "
            "(get_deq), or override _train_forward / forward in a subclass")

    # -- shared pieces ------------------------------------------------------------------------

    def _solve(self, func: Callable[..., Any], z0: Any, max_iter: int,
               indexing: list[int] | None, kwargs: dict, quiet: bool = False) -> tuple:
        """Run the forward solver on raw arrays: ``(z, trajectory, info)``.

        ``f_tol``/``f_stop_mode`` are passed to solvers that take them; ``kwargs`` win.
        ``quiet`` silences the solver's :class:`~npdeq.exceptions.ConvergenceWarning` (for
        solves that are not meant to converge, such as DEQSliced's inner segments).
        """
        solver = get_solver(self.f_solver)
        accepted = solver_parameters(solver)
        settings = {key: value for key, value in (("tol", self.f_tol),
                                                  ("stop_mode", self.f_stop_mode))
                    if accepted is None or key in accepted}
        settings.update(kwargs)
        if not quiet:
            return solver(func, z0, max_iter=max_iter, indexing=indexing or None, **settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return solver(func, z0, max_iter=max_iter, indexing=indexing or None, **settings)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.args.config.items())
        mode = "training" if self.training else "eval"
        return f"{type(self).__name__}({settings}{', ' if settings else ''}mode={mode!r})"
