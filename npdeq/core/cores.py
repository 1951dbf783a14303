"""The DEQ cores: ``DEQIndexing`` and ``DEQSliced``, TorchDEQ's two training graphs.

Both sample states at the steps of :func:`~npdeq.core.sampling.sample_steps` and attach a
gradient functor from :func:`~npdeq.grad.backward_factory` to each: IFT on the last state
when ``ift`` (or ``hook_ift``) is set, PhantomGrad with ``grad`` steps on the others. They
differ only in where the states come from:

- ``DEQIndexing`` runs one solve of ``f_max_iter`` iterations and reads the states at the
  sampled steps from its trajectory (the gradient functors sit beside the solve);
- ``DEQSliced`` runs one solve per segment between the steps, each resuming from the previous
  gradient functor's output (the functors sit inside the solve).

Their shared settings, checks and functor construction live in :class:`SampledDEQ`. Eval
mode is :class:`~npdeq.core.base.DEQBase`'s. In both modes :class:`SampledDEQ` adds the
solve's record, :class:`~npdeq.core.solution.DEQSolution`, to ``info['solution']``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff import is_grad_enabled
from npdeq.core.base import (BackwardRecorder, DEQBase, array_map, check_solver_call,
                             initial_state, solver_parameters)
from npdeq.core.config import default, is_default, is_set
from npdeq.core.sampling import pair_grad_steps, sample_steps, segment_lengths
from npdeq.core.solution import jacobian_due, solution_record
from npdeq.grad import backward_factory, supervised_steps
from npdeq.grad.adjoint import ADJOINT_DEFAULTS, ADJOINT_OPTIONS, LINEAR_SOLVERS
from npdeq.grad.state import as_state_tuple, raw_arrays
from npdeq.solver import SolverStat, get_solver
from npdeq.solver.failure import warn_failure

__all__ = ["SampledDEQ", "DEQIndexing", "DEQSliced", "merge_segment_stats",
           "flag_nonfinite_states"]

GradFunctor = Callable[..., list]


class SampledDEQ(DEQBase):
    """The settings both cores share: which states carry gradients, and how.

    Args:
        args: a DEQ config (dict, ``argparse.Namespace`` or :class:`DEQConfig`). Copied.
        ift: implicit differentiation (IFT) on the last sampled state.
        hook_ift: the same (npdeq has one IFT rule; TorchDEQ's hook variant saves memory).
        grad: PhantomGrad steps for the other states: one int, or one per state.
        tau: PhantomGrad damping in ``(0, 1]``.
        sup_gap: PhantomGrad also returns every ``sup_gap``-th unrolled state when > 0.
        sup_loc: PhantomGrad also returns the unrolled states at these steps.
            (The config key ``phantom_memory``, ``'store'`` or ``'recompute'``, chooses what
            PhantomGrad keeps for the backward pass: :func:`npdeq.grad.phantom_grad`.)
        n_states: number of states spread uniformly along the solve (see
            :func:`~npdeq.core.sampling.sample_steps`).
        indexing: explicit solver steps for the states (with ``n_states=1``); the final
            state at ``f_max_iter`` is always added.
        **kwargs: :class:`~npdeq.core.base.DEQBase`'s settings (``f_solver``, ``f_max_iter``,
            ``f_tol``, ``b_solver``, ...) and any other DEQ config key.

    Raises:
        ValueError: an unknown key or invalid value; ``n_states < 1``; both ``n_states > 1``
            and ``indexing``; ``indexing`` not strictly increasing or beyond ``f_max_iter``;
            ``grad < 1`` for a PhantomGrad state (all states when ``ift=False``); ``sup_loc``
            beyond ``grad``; a ``grad`` list of the wrong length; with IFT, a registered
            ``b_solver`` that cannot take ``max_iter``/``tol``/``stop_mode`` (checked here,
            not at the first ``backward()``).

    Warns:
        ConfigWarning: once, at construction, for settings given explicitly (different from
            their defaults) that this configuration ignores, as TorchDEQ silently does:
            ``tau``, ``sup_gap``, ``sup_loc`` and ``grad`` (other than 0 or 1) when ``ift``
            and a single state leave no state to PhantomGrad; ``b_solver``, ``b_max_iter``,
            ``b_tol``, ``b_stop_mode`` without IFT; ``b_max_iter``/``b_tol``/``b_stop_mode``
            with ``b_solver='direct'``; ``jac_loss_weight`` or ``jac_loss_freq`` alone (the
            Jacobian term needs both > 0); and :class:`~npdeq.core.base.DEQBase`'s.

    Example:
        >>> deq = DEQIndexing(f_max_iter=30, n_states=3, grad=[1, 2, 3])
        >>> deq.indexing, len(deq.produce_grad)
        ([10, 20, 30], 3)
    """

    def __init__(self, args: Any = None, ift: bool = default("ift"),
                 hook_ift: bool = default("hook_ift"), grad: int | Sequence[int] = default("grad"),
                 tau: float = default("tau"), sup_gap: int = default("sup_gap"),
                 sup_loc: Sequence[int] | None = default("sup_loc"),
                 n_states: int = default("n_states"),
                 indexing: Sequence[int] | None = default("indexing"), **kwargs: Any) -> None:
        own = dict(ift=ift, hook_ift=hook_ift, grad=grad, tau=tau, sup_gap=sup_gap,
                   sup_loc=sup_loc, n_states=n_states, indexing=indexing)
        super().__init__(args, **{k: v for k, v in own.items() if not is_default(v)}, **kwargs)
        cfg = self.args
        self.ift: bool = cfg.get("ift") or cfg.get("hook_ift")
        self.hook_ift: bool = cfg.get("hook_ift")
        self.grad: int | list[int] = cfg.get("grad")
        self.tau: float = cfg.get("tau")
        self.sup_gap: int = cfg.get("sup_gap")
        self.sup_loc: list[int] = cfg.get("sup_loc") or []
        self.phantom_memory: str = cfg.get("phantom_memory")
        self.arg_n_states: int = cfg.get("n_states")
        self.arg_indexing: list[int] = cfg.get("indexing") or []
        # TorchDEQ's attribute: DEQIndexing's sampled steps, DEQSliced's segment lengths.
        self.indexing: list[int] = self._steps(self.f_max_iter)
        self.produce_grad: list[GradFunctor] = self._grad_functors(len(self.indexing))
        if self.ift and self.b_solver not in LINEAR_SOLVERS:
            # the adjoint solve passes tol/max_iter/stop_mode (its defaults where the core
            # sets none): a solver that cannot take them would fail only at backward()
            check_solver_call(get_solver(self.b_solver), self.b_solver, "b_solver",
                              {k: v for k, v in dict(ADJOINT_DEFAULTS,
                                                     **self._b_solver_kwargs()).items()
                               if k not in ADJOINT_OPTIONS})
        self._warn_ignored_settings()

    _warns_after_subclass_init = True

    def _ignored_settings(self) -> list[tuple[list[str], str]]:
        """:meth:`DEQBase._ignored_settings` plus the gradient settings no state uses."""
        cfg, out = self.args, super()._ignored_settings()
        set_keys = lambda keys: [k for k in keys if is_set(cfg, k)]  # noqa: E731
        if self.ift and len(self.indexing) == 1:
            grad = self.grad if isinstance(self.grad, list) else [self.grad]
            keys = set_keys(("tau", "sup_gap", "sup_loc", "phantom_memory")) + (
                ["grad"] if is_set(cfg, "grad") and any(k > 0 for k in grad) else [])
            if keys:
                out.append((keys, "with ift=True and one sampled state: IFT differentiates "
                                  "it, no state uses PhantomGrad (they apply to the states "
                                  "before the last when n_states > 1 or indexing is given)"))
        backward = ("b_solver", "b_max_iter", "b_tol", "b_stop_mode", "b_fallback")
        if not self.ift:
            keys = set_keys(backward)
            if keys:
                out.append((keys, "with ift=False (and hook_ift=False): every state uses "
                                  "PhantomGrad, no IFT backward solve runs"))
        elif self.b_solver in LINEAR_SOLVERS:
            keys = [k for k, arg in (("b_max_iter", "max_iter"), ("b_tol", "tol"),
                                     ("b_stop_mode", "stop_mode"), ("b_fallback", "fallback"))
                    if is_set(cfg, k) and arg not in LINEAR_SOLVERS[self.b_solver]]
            if keys:
                why = ("an exact dense solve" if self.b_solver == "direct"
                       else "a linear solver, nothing to fall back from")
                out.append((keys, f"with b_solver={self.b_solver!r} (it takes no such "
                                  f"argument: {why})"))
        weight, freq = cfg.get("jac_loss_weight"), cfg.get("jac_loss_freq")
        if (weight > 0) != (freq > 0):
            out.append((set_keys(("jac_loss_weight", "jac_loss_freq")),
                        "unless both jac_loss_weight and jac_loss_freq are > 0 (no Jacobian "
                        "term is computed)"))
        return out

    def forward(self, func: Callable[..., Any], z_init: Any, solver_kwargs: dict | None = None,
                sradius_mode: bool = False,
                backward_writer: Callable[[dict], Any] | None = None) -> tuple[list, dict]:
        """:meth:`DEQBase.forward <npdeq.core.base.DEQBase.forward>`, plus the solve's record.

        Arguments, raises and ``z_out`` as :meth:`DEQBase.forward
        <npdeq.core.base.DEQBase.forward>`. ``info['solution']`` is a
        :class:`~npdeq.core.solution.DEQSolution` for the returned state ``z_out[-1]``:
        ``z_star``, ``u0``, ``residual`` ``(B,)``, ``nfe``, ``stats``, return codes, and
        ``jacobian_loss`` when the config's ``jac_loss_weight``/``jac_loss_freq`` ask for it
        in this call (:func:`~npdeq.core.solution.jacobian_due`; differentiable in training).
        Building it costs one more call of ``func`` (recorded, plus one VJP, with the
        Jacobian term). In training, a sample whose returned states hold a non-finite value
        (from the gradient functors' own calls of ``func``: PhantomGrad's steps, IFT's
        ``f(z*)``, or pure unrolling with ``f_max_iter=0``) is flagged in ``info['nonfinite']``
        and never counted as converged (:func:`flag_nonfinite_states`).

        Example:
            >>> import numpy as np, npdeq
            >>> W = npdeq.tensor(0.3 * np.eye(4), requires_grad=True)
            >>> deq = DEQIndexing(ift=True, jac_loss_weight=0.1, jac_loss_freq=1.0)
            >>> z_out, info = deq(lambda z: npdeq.tanh(z @ W + 1.0), np.zeros((2, 4)))
            >>> sol = info['solution']
            >>> sol.nfe == info['nfe'], sol.jacobian_loss.requires_grad, sol.retcode
            (True, True, ['converged', 'converged'])
        """
        recording = is_grad_enabled()
        z_out, info = super().forward(func, z_init, solver_kwargs, sradius_mode,
                                      backward_writer)
        if self.training:
            flag_nonfinite_states(z_out, info)
        info["solution"] = solution_record(func, initial_state(z_init), z_out[-1], info,
                                           jacobian=jacobian_due(self.args, self.training),
                                           create_graph=self.training and recording)
        return z_out, info

    def _steps(self, f_max_iter: int) -> list[int]:
        """The core's per-state schedule for a budget of ``f_max_iter`` (checked)."""
        raise NotImplementedError

    def _grad_functors(self, count: int) -> list[GradFunctor]:
        """One gradient functor per state: PhantomGrad, and IFT for the last when ``ift``."""
        functors = []
        for i, k in enumerate(pair_grad_steps(count, self.grad)):
            if self.ift and i == count - 1:
                functors.append(backward_factory("ift", hook_ift=self.hook_ift,
                                                 b_solver=self.b_solver,
                                                 b_solver_kwargs=self._b_solver_kwargs()))
                continue
            if k < 1:
                which = "the states before the last" if self.ift else "every state (ift=False)"
                raise ValueError(f"grad={self.grad!r}: PhantomGrad needs >= 1 step for "
                                 f"{which}")
            supervised_steps(k, self.sup_gap, self.sup_loc)  # sup_loc within 1..k
            functors.append(backward_factory(k, tau=self.tau, sup_gap=self.sup_gap,
                                             sup_loc=self.sup_loc,
                                             phantom_memory=self.phantom_memory))
        return functors

    def _b_solver_kwargs(self) -> dict:
        """``b_max_iter``/``b_tol``/``b_stop_mode`` for the backward solver (those it takes),
        and ``b_fallback`` as the adjoint's ``fallback`` for an iterative one."""
        kwargs = dict(max_iter=self.b_max_iter, tol=self.b_tol, stop_mode=self.b_stop_mode)
        if self.b_solver in LINEAR_SOLVERS:
            return {k: v for k, v in kwargs.items() if k in LINEAR_SOLVERS[self.b_solver]}
        accepted = solver_parameters(get_solver(self.b_solver))
        return {**{k: v for k, v in kwargs.items() if accepted is None or k in accepted
                   or k == "max_iter"}, "fallback": self.args.get("b_fallback")}

    def _schedule(self, f_max_iter: int) -> tuple[list[int], list[GradFunctor]]:
        """The steps and functors for this call (rebuilt when ``f_max_iter`` is overridden)."""
        if f_max_iter == self.f_max_iter:
            return self.indexing, self.produce_grad
        steps = self._steps(f_max_iter)
        functors = (self.produce_grad if len(steps) == len(self.produce_grad)
                    else self._grad_functors(len(steps)))
        return steps, functors


class DEQIndexing(SampledDEQ):
    """DEQ core that reads its states from one solve's trajectory (TorchDEQ's DEQIndexing).

    One forward solve of ``f_max_iter`` iterations records the (best so far) state at each
    sampled step; a gradient functor is attached to each recorded state, beside the solve.
    ``f_max_iter=24, n_states=2`` samples steps ``[12, 24]``; ``indexing=[6, 18]`` samples
    ``[6, 18, 24]``. Exactly that many states come back even when the solver stops early
    (the missing ones are the final state), plus any extra PhantomGrad states from
    ``sup_gap``/``sup_loc``. Arguments as :class:`SampledDEQ` and
    :class:`~npdeq.core.base.DEQBase`.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.3 * np.eye(4), requires_grad=True)
        >>> deq = DEQIndexing(f_max_iter=24, n_states=2, ift=True)
        >>> z_out, info = deq(lambda z: npdeq.tanh(z @ W + 1.0), np.zeros((2, 4)))
        >>> deq.indexing, len(z_out), info['backward'] is None
        ([12, 24], 2, True)
        >>> sum((z * z).sum() for z in z_out).backward()
        >>> info['backward']['converged'].tolist()
        [True, True]
    """

    def _steps(self, f_max_iter: int) -> list[int]:
        return sample_steps(f_max_iter, self.arg_n_states, self.arg_indexing, distinct=True)

    def _train_forward(self, func: Callable[..., Any], z0: Any, f_max_iter: int, kwargs: dict,
                       recorder: BackwardRecorder) -> tuple[list, dict]:
        steps, functors = self._schedule(f_max_iter)
        solver_steps = [s for s in steps if s > 0]
        _, trajectory, info = self._solve(array_map(func, z0), z0, f_max_iter, solver_steps,
                                          kwargs)
        states = ([z0] if steps[0] == 0 else []) + list(trajectory)
        z_out: list = []
        for state, functor in zip(states, functors):
            z_out += functor(self, func, state, writer=recorder)
        return z_out, recorder.attach(info)


class DEQSliced(SampledDEQ):
    """DEQ core that cuts the solve into segments with a gradient functor after each
    (TorchDEQ's DEQSliced).

    The steps of :func:`~npdeq.core.sampling.sample_steps` become segment budgets
    (``f_max_iter=24, n_states=2``: two solves of 12 iterations); each segment's solution
    goes through its gradient functor, and the next segment resumes from that functor's
    output. ``f_max_iter=0`` runs no solve: ``n_states`` functors applied in a row (pure
    unrolling). The segments add up to ``f_max_iter`` (TorchDEQ drops the remainder of
    ``f_max_iter // n_states``). Arguments as :class:`SampledDEQ` and
    :class:`~npdeq.core.base.DEQBase`.

    ``info`` describes the whole forward: traces concatenated over the segments, ``nfe``
    summed, ``nonfinite`` over all segments, and the residuals, ``converged`` and ``nstep``
    (counted over the concatenated trace) of the last segment's solution.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.3 * np.eye(4), requires_grad=True)
        >>> deq = DEQSliced(f_max_iter=24, n_states=2, grad=2)
        >>> z_out, info = deq(lambda z: npdeq.tanh(z @ W + 1.0), np.zeros((2, 4)))
        >>> deq.indexing, len(z_out)
        ([12, 12], 2)
    """

    def _steps(self, f_max_iter: int) -> list[int]:
        return segment_lengths(sample_steps(f_max_iter, self.arg_n_states, self.arg_indexing,
                                            distinct=False))

    def _train_forward(self, func: Callable[..., Any], z0: Any, f_max_iter: int, kwargs: dict,
                       recorder: BackwardRecorder) -> tuple[list, dict]:
        segments, functors = self._schedule(f_max_iter)
        fn = array_map(func, z0)
        z, infos, z_out = z0, [], []
        for i, (budget, functor) in enumerate(zip(segments, functors)):
            z_star, _, info = self._solve(fn, z, budget, None, kwargs,
                                          quiet=i < len(segments) - 1)
            infos.append(info)
            outs = functor(self, func, z_star, writer=recorder)
            z_out += outs
            last = raw_arrays(as_state_tuple(outs[-1]))
            z = last if isinstance(z0, tuple) else last[0]
        return z_out, recorder.attach(merge_segment_stats(infos))


def flag_nonfinite_states(z_out: Sequence[Any], info: SolverStat) -> None:
    """Flag the samples whose returned states hold NaN/inf in ``info`` (in place).

    The solver flags what it meets; the gradient functors call ``func`` again after it
    (PhantomGrad's steps, IFT's ``f(z*)``; with ``f_max_iter=0`` they are the only calls), so
    their outputs are checked here: ``info['nonfinite']`` gains those samples,
    ``info['converged']`` loses them, and one
    :class:`~npdeq.exceptions.ConvergenceWarning` says so when the solve had not flagged them.
    One host read.

    Args:
        z_out: the core's returned states (Tensors or tuples of Tensors), each ``(B, ...)``.
        info: the forward statistics (new arrays are stored; the old ones are not changed).

    Example:
        >>> import numpy as np, npdeq, warnings
        >>> info = SolverStat(nonfinite=np.zeros(2, bool), converged=np.ones(2, bool))
        >>> with warnings.catch_warnings(record=True):
        ...     flag_nonfinite_states([npdeq.tensor(np.array([[1.0], [np.inf]]))], info)
        >>> info['nonfinite'].tolist(), info['converged'].tolist()
        ([False, True], [True, False])
    """
    bad = None
    for z in z_out:
        for t in as_state_tuple(z):
            a = t.data
            xp = backend.array_namespace(a)
            rows = xp.any(~xp.isfinite(xp.reshape(a, (a.shape[0], -1))), axis=1)
            bad = rows if bad is None else bad | rows
    if bad is None:
        return
    before = info["nonfinite"]
    info["nonfinite"] = before | bad
    info["converged"] = info["converged"] & ~bad
    if backend.to_scalar(xp.any(bad & ~before)):
        warn_failure("DEQ gradient steps (PhantomGrad's unrolled steps or IFT's f(z*)) "
                     "produced non-finite values for some samples (info['nonfinite'])")


def merge_segment_stats(infos: Sequence[SolverStat]) -> SolverStat:
    """One :class:`~npdeq.solver.SolverStat` for consecutive solve segments.

    Args:
        infos: the statistics of each segment, in order.

    Returns:
        Traces concatenated along the iteration axis; ``nfe`` summed; ``nonfinite`` true for
        a sample that met a non-finite value in any segment (warned once here when only an
        inner, silenced segment saw it); ``abs_lowest``, ``rel_lowest``, ``converged`` and
        ``sradius`` of the last segment; ``nstep`` the last segment's, counted over the
        concatenated trace (0 when the last segment ran no iteration).

    Example:
        >>> import numpy as np
        >>> from npdeq.solver import fixed_point_iter
        >>> _, _, a = fixed_point_iter(lambda z: 0.5 * z, np.ones((1, 2)), tol=0.1)
        >>> _, _, b = fixed_point_iter(lambda z: 0.5 * z, np.ones((1, 2)), tol=0.5)
        >>> m = merge_segment_stats([a, b])
        >>> m['abs_trace'].shape, m['nfe'], m['nstep'].tolist()
        ((1, 6), 6, [6])
    """
    if len(infos) == 1:
        return infos[0]
    last = infos[-1]
    xp = backend.array_namespace(last["abs_trace"])
    merged = SolverStat(last)
    for key in ("abs_trace", "rel_trace"):
        merged[key] = xp.concat([info[key] for info in infos], axis=1)
    offset = sum(info["abs_trace"].shape[1] for info in infos[:-1])
    merged["nstep"] = xp.where(last["nstep"] > 0, last["nstep"] + offset, last["nstep"])
    merged["nfe"] = sum(info["nfe"] for info in infos)
    inner = infos[0]["nonfinite"]
    for info in infos[1:-1]:
        inner = inner | info["nonfinite"]
    merged["nonfinite"] = inner | last["nonfinite"]
    if backend.to_scalar(xp.any(inner & ~last["nonfinite"])):
        warn_failure("DEQSliced: f returned non-finite values in an inner solve segment "
                     "(info['nonfinite'])")
    return merged
