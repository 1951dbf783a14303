"""The record of one DEQ solve: :class:`DEQSolution` in ``info['solution']``.

DeepEquilibriumNetworks.jl returns a ``DeepEquilibriumSolution`` (``z_star``, ``u0``,
``residual``, ``jacobian_loss``, ``nfe``) beside every output; npdeq's cores put the same
record, with the solver's statistics and a per-sample return code, in the ``info`` dict they
return (``info['solution']``), in training and eval mode alike. :func:`solution_record` builds
it from one extra evaluation of ``f`` at the returned state, made when its ``residual`` is
first read (at once, recorded on the tape, when the Jacobian term is due);
:func:`jacobian_due` decides when that is, from the config keys ``jac_loss_weight`` and
``jac_loss_freq``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from npdeq import backend
from npdeq.backend import Array
from npdeq.autodiff import Tensor, enable_grad, no_grad
from npdeq.grad.jacobian import jacobian_frobenius
from npdeq.grad.state import as_state_tuple, call_state_func, raw_arrays, restore
from npdeq.nn import init
from npdeq.solver import SolverStat, pack_states, residual_norms
from npdeq.solver import solver_stat_from_final_step as _stat_from_arrays

__all__ = ["DEQSolution", "RETCODES", "jacobian_due", "solution_record",
           "solver_stat_from_final_step"]

# Per-sample return codes, in the order they are decided (a non-finite sample never counts
# as converged; the solvers guarantee that).
RETCODES = ("converged", "nonfinite", "max_iter")
# info keys that are not the forward solver's statistics (the record itself, and the
# backward statistics the core fills in later, during the backward pass).
_NOT_STATS = ("solution", "backward")


class Once:
    """A callable without arguments that calls ``make`` on its first call and then returns
    that result, having let go of ``make`` (and of what it holds: ``f``, its inputs).

    Example:
        >>> once = Once(lambda: [1])
        >>> once() is once()
        True
    """

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make: Callable[[], Any] | None = make
        self._value: Any = None

    @classmethod
    def done(cls, value: Any) -> "Once":
        """A :class:`Once` that already holds ``value`` (nothing left to call; pickles)."""
        once = cls(None)  # type: ignore[arg-type]
        once._value = value
        return once

    def __call__(self) -> Any:
        if self._make is not None:
            self._value, self._make = self._make(), None
        return self._value


@dataclasses.dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class DEQSolution:
    """What one DEQ forward found: DeepEquilibriumNetworks.jl's ``DeepEquilibriumSolution``
    with the solver's statistics and return codes.

    An immutable dataclass; the models of :mod:`npdeq.models` add fields with
    :meth:`replace`. ``B`` is the batch size. The record never changes once built: its lazy
    ``residual`` is kept by the callable ``residual_of`` (a :class:`Once`), which copies made by
    :meth:`replace` share (so the extra call of ``f`` happens once for all of them).

    Attributes:
        z_star: the state the DEQ returns as its output (``z_out[-1]``'s value, detached): a
            ``(B, ...)`` Tensor, or a tuple of them for a tuple state. In eval mode and with
            IFT it is the solver's fixed point (IFT returns ``f(z*)``, which has its value up
            to the residual); with PhantomGrad it is the last unrolled state.
        u0: the initial guess the solve started from, in the state's structure (detached
            Tensors from the cores; :class:`~npdeq.models.SkipDEQ` stores its ``g(x)`` with
            its graph).
        residual: ``(B,)`` array, ``||f(z_star) - z_star||`` per sample (L2 over every entry
            of the state, as the solvers' ``abs`` residual), from one extra call of ``f``
            made when the field is first read (or at once, with the Jacobian term), so that
            training steps that never look at it do not pay for it.
        residual_of: the callable (no arguments) that returns ``residual`` (a :class:`Once`
            from the cores, so every read after the first returns the same array), or the
            ``(B,)`` array itself.
        jacobian_loss: a 0-d Tensor, the Hutchinson estimate of ``||df/dz||_F^2 / numel(z)``
            at ``z_star`` (:func:`~npdeq.grad.jacobian.jacobian_frobenius`, one probe) when
            Jacobian regularisation ran in this call (:func:`jacobian_due`), else ``None``.
            Differentiable in training: add ``jac_loss_weight * jacobian_loss`` to the loss.
        nfe: the forward solver's function evaluations (``info['nfe']``; the record's own
            evaluation and the gradient functors' are not counted).
        stats: the forward solver's :class:`~npdeq.solver.SolverStat` (a shallow copy of
            ``info`` without ``'solution'`` and ``'backward'``).
        skip_loss: :class:`~npdeq.models.SkipDEQ`'s ``mean((u0 - z*)^2)`` (a Tensor), else
            ``None``.

    Example:
        >>> import numpy as np, npdeq
        >>> deq = npdeq.get_deq(core='indexing', f_tol=1e-8)
        >>> _, info = deq(lambda z: 0.5 * z + 1.0, np.zeros((2, 3)))
        >>> sol = info['solution']
        >>> sol.retcode, sol.success, sol.jacobian_loss is None, tuple(sol.residual.shape)
        (['converged', 'converged'], True, True, (2,))
    """

    z_star: Any
    u0: Any
    residual_of: Callable[[], Array] | Array = dataclasses.field(repr=False)
    jacobian_loss: Tensor | None
    nfe: int
    stats: SolverStat
    skip_loss: Tensor | None = None

    @property
    def residual(self) -> Array:
        """``(B,)`` array: ``||f(z_star) - z_star||`` per sample (computed on first read)."""
        return self.residual_of() if callable(self.residual_of) else self.residual_of

    @property
    def converged(self) -> Array:
        """``(B,)`` bool array: the sample reached the forward tolerance."""
        return self.stats["converged"]

    @property
    def nonfinite(self) -> Array:
        """``(B,)`` bool array: ``f`` returned NaN/inf for the sample during the solve."""
        return self.stats["nonfinite"]

    @property
    def retcode(self) -> list[str]:
        """Per-sample return codes, one of :data:`RETCODES` each: ``'converged'``,
        ``'nonfinite'``, or ``'max_iter'`` (the budget ran out first; always so for
        ``simple_fixed_point_iter``, which has no tolerance). Reads the flags to the host."""
        converged = backend.to_numpy(self.converged).tolist()
        nonfinite = backend.to_numpy(self.nonfinite).tolist()
        return [RETCODES[0] if c else RETCODES[1] if n else RETCODES[2]
                for c, n in zip(converged, nonfinite)]

    @property
    def success(self) -> bool:
        """Whether every sample converged (one host read)."""
        xp = backend.array_namespace(self.converged)
        return bool(backend.to_scalar(xp.all(self.converged)))

    def replace(self, **changes: Any) -> "DEQSolution":
        """A copy with some fields changed (``dataclasses.replace``).

        Raises:
            TypeError: an unknown field name.
        """
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        shapes = [tuple(z.shape) for z in as_state_tuple(self.z_star)]
        jac = None if self.jacobian_loss is None else float(backend.to_scalar(
            self.jacobian_loss.data))
        return (f"DEQSolution(z_star={shapes[0] if len(shapes) == 1 else shapes}, "
                f"nfe={self.nfe}, retcode={self.retcode}, jacobian_loss={jac})")


def jacobian_due(args: Any, training: bool) -> bool:
    """Whether this forward computes the Jacobian term (TorchDEQ's ``jac_loss_weight`` /
    ``jac_loss_freq`` semantics).

    Never when ``jac_loss_weight == 0`` or ``jac_loss_freq == 0``. In training, when a
    uniform draw ``u`` in ``[0, 1)`` is below ``jac_loss_freq`` (so ``freq >= 1``: every call,
    and no draw is made); the draw comes from npdeq's default generator
    (:func:`npdeq.nn.init.generator`, reset by :func:`npdeq.nn.manual_seed`). In eval mode
    always (no draw), so evaluations report it deterministically. ``jac_incremental`` (raise
    the weight during training) is the training loop's business.

    Args:
        args: the core's :class:`~npdeq.core.config.DEQConfig`.
        training: the core's mode.

    Returns:
        The decision.

    Example:
        >>> from npdeq.core import DEQConfig
        >>> jacobian_due(DEQConfig({'jac_loss_weight': 0.5, 'jac_loss_freq': 1.0}), True)
        True
        >>> jacobian_due(DEQConfig({'jac_loss_weight': 0.0, 'jac_loss_freq': 1.0}), False)
        False
    """
    weight, freq = args.get("jac_loss_weight"), args.get("jac_loss_freq")
    if weight <= 0 or freq <= 0:
        return False
    if not training or freq >= 1:
        return True
    return float(init.generator().random()) < freq


def solution_record(func: Callable[..., Any], z0: Any, z_out: Any, info: SolverStat,
                    jacobian: bool, create_graph: bool) -> DEQSolution:
    """Build the :class:`DEQSolution` of one forward from one more call of ``func``.

    Args:
        func: the DEQ map on Tensors (``func(z)`` or ``func(*zs)``).
        z0: the initial state as raw arrays (an array or a tuple of them).
        z_out: the state the core returns last (a Tensor or a tuple of Tensors).
        info: the core's forward statistics.
        jacobian: compute ``jacobian_loss`` (the call of ``func`` is then recorded on the
            tape, even under ``no_grad``, and one VJP taken with a probe drawn from npdeq's
            default generator).
        create_graph: keep ``jacobian_loss`` differentiable (training); else it is detached.

    Returns:
        The record.

    Example:
        >>> import numpy as np, npdeq
        >>> z = npdeq.tensor(np.full((1, 2), 2.0))
        >>> sol = solution_record(lambda z: 0.5 * z + 1.0, np.zeros((1, 2)), z,
        ...                       SolverStat(nfe=3), jacobian=True, create_graph=False)
        >>> sol.residual.tolist(), sol.jacobian_loss.shape, sol.nfe
        ([0.0], (), 3)
    """
    states = raw_arrays(as_state_tuple(z_out))

    def residual_of(images: Any) -> Array:
        return residual_norms(pack_states(raw_arrays(images)), pack_states(states))[0]

    def lazy_residual() -> Array:
        with no_grad():
            return residual_of(call_state_func(func, tuple(Tensor(a) for a in states)))

    jac = None
    residual: Callable[[], Array] = Once(lazy_residual)
    if jacobian:
        with enable_grad():
            leaves = tuple(Tensor(a, requires_grad=True) for a in states)
            images = call_state_func(func, leaves)
            jac = jacobian_frobenius(images, leaves, vecs=1, create_graph=create_graph,
                                     seed=init.generator())
        jac = jac if create_graph else jac.detach()
        residual = Once.done(residual_of(images))  # computed with the Jacobian term
    return DEQSolution(
        z_star=restore(tuple(Tensor(a) for a in states), z_out),
        u0=restore(tuple(Tensor(a) for a in as_state_tuple(z0)), z0),
        residual_of=residual, jacobian_loss=jac, nfe=info.get("nfe"),
        stats=SolverStat({k: v for k, v in info.items() if k not in _NOT_STATS}))


def solver_stat_from_final_step(z: Any, fz: Any, nstep: int = 0, *, tol: float | None = None,
                                stop_mode: str = "abs") -> SolverStat:
    """TorchDEQ's ``solver_stat_from_final_step`` on Tensors or arrays (the statistics are not
    differentiable: Tensors are read, detached). See
    :func:`npdeq.solver.solver_stat_from_final_step`, which takes arrays only.

    Example:
        >>> import numpy as np, npdeq
        >>> z = npdeq.tensor(np.ones((2, 3)), requires_grad=True)
        >>> npdeq.solver_stat_from_final_step(z, 0.5 * z, nstep=3, tol=1.0)["converged"].tolist()
        [True, True]
    """
    unwrap = (lambda s: raw_arrays(s) if isinstance(s, (tuple, list)) else raw_arrays([s])[0])
    return _stat_from_arrays(unwrap(z), unwrap(fz), nstep, tol=tol, stop_mode=stop_mode)
