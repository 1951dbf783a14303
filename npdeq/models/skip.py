"""``SkipDEQ``: a DEQ whose solve starts from a learned guess (DeepEquilibriumNetworks.jl's
``SkipDeepEquilibriumNetwork``, Pal et al. 2022), and its regularised variant (``SkipRegDEQ``).
"""

from __future__ import annotations

from typing import Any

from npdeq.autodiff import Tensor
from npdeq.backend.checks import as_count
from npdeq.grad.state import as_state_tuple, restore
from npdeq.models.common import (as_input, build_deq, check_module, per_sample_shape,
                                 state_mse, zero_state)
from npdeq.nn import Module

__all__ = ["SkipDEQ", "VARIANTS"]

# DeepEquilibriumNetworks.jl spells the second one "Regularized"; both spellings are taken.
VARIANTS = ("skip", "regularised", "regularized")


class SkipDEQ(Module):
    """A DEQ ``z* = f(z*, x)`` solved from a cheap guess ``u0``, with the skip loss that trains
    the guess towards the fixed point.

    - ``variant='skip'``: ``u0 = g(x)`` from a small network ``g`` (SkipDEQ).
    - ``variant='regularised'``: ``u0 = f(0, x)``, one pass of ``f`` from zeros; no ``g``
      (DEQ.jl's SkipRegDEQ: the skip loss then trains ``f`` itself to need fewer steps).

    ``forward(x)`` returns ``(z_out, info)`` as the DEQ cores do; ``info['solution']`` is the
    core's :class:`~npdeq.core.DEQSolution` with ``u0`` the guess *with its graph* and
    ``skip_loss = mean((u0 - z*)^2)`` (``z*`` detached, so only the guess learns from it), a
    0-d Tensor to add to the task loss with a weight of your choice.

    Args:
        f: the DEQ map, an :class:`npdeq.nn.Module` called as ``f(z, x)`` and returning a
            state shaped as ``z`` (a Tensor, or a tuple of Tensors for a tuple state).
        g: ``variant='skip'``: the guess network, ``g(x) -> z`` (a Module). ``None`` for the
            regularised variant.
        deq: the DEQ core (from :func:`npdeq.get_deq`); default
            ``get_deq(core='indexing', ift=True, **deq_config)``.
        variant: ``'skip'`` or ``'regularised'`` (``'regularized'`` accepted).
        state_shape: regularised variant: the per-sample shape of ``z`` (an int, a tuple of
            ints, or a list of them for a tuple state); default ``x``'s per-sample shape, as
            DEQ.jl's ``zero(x)``.
        **deq_config: DEQ config keys for the default core (``f_solver``, ``f_max_iter``,
            ``f_tol``, ``jac_loss_weight``, ...).

    Shapes: ``x`` ``(B, ...)``; states ``(B, ...)``.

    Raises:
        ValueError: an unknown ``variant``; ``g`` missing for ``'skip'`` or given for
            ``'regularised'``; ``state_shape`` with ``'skip'`` or malformed; both ``deq``
            and ``deq_config``; a bad DEQ setting.
        TypeError: ``f``, ``g`` or ``deq`` of the wrong kind.

    Example:
        >>> import numpy as np, npdeq
        >>> from npdeq import nn
        >>> class F(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.W, self.U = nn.Linear(8, 8, seed=0), nn.Linear(4, 8, seed=1)
        ...     def forward(self, z, x):
        ...         return npdeq.tanh(0.5 * self.W(z) + self.U(x))
        >>> model = SkipDEQ(F(), nn.Linear(4, 8, seed=2), f_solver='anderson', f_tol=1e-6)
        >>> z_out, info = model(np.ones((3, 4)))
        >>> sol = info['solution']
        >>> z_out[-1].shape, sol.skip_loss.shape, sol.u0.requires_grad, sol.success
        ((3, 8), (), True, True)
    """

    def __init__(self, f: Module, g: Module | None = None, deq: Any = None,
                 variant: str = "skip", state_shape: Any = None, **deq_config: Any) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"SkipDEQ: variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = "skip" if variant == "skip" else "regularised"
        self.f = check_module(f, "f", "SkipDEQ")
        if self.variant == "skip":
            if g is None:
                raise ValueError("SkipDEQ(variant='skip') needs g, the network that makes the "
                                 "initial guess g(x) (or use variant='regularised')")
            if state_shape is not None:
                raise ValueError(f"SkipDEQ: state_shape={state_shape!r} is for "
                                 "variant='regularised'; with 'skip' g(x) decides the shape")
            self.g = check_module(g, "g", "SkipDEQ")
        else:
            if g is not None:
                raise ValueError("SkipDEQ(variant='regularised') starts from f(0, x) and takes "
                                 f"no g, got a {type(g).__name__}")
            self.g = None
        self.state_shape = self._shapes(state_shape)
        self.deq = build_deq(deq, deq_config, "SkipDEQ")

    @staticmethod
    def _shapes(state_shape: Any) -> list[tuple[int, ...]] | None:
        """``state_shape`` as a list of per-sample shapes (several for a tuple state)."""
        if state_shape is None:
            return None
        # A list of shapes (ints, NumPy integers included, or tuples) is a tuple state.
        if isinstance(state_shape, list) and all(isinstance(s, (tuple, list))
                                                 or as_count(s) is not None
                                                 for s in state_shape):
            return [per_sample_shape(s, f"state_shape[{i}]") for i, s in enumerate(state_shape)]
        return [per_sample_shape(state_shape, "state_shape")]

    def initial_state(self, x: Any) -> Any:
        """The guess ``u0`` for input ``x``, with its graph: ``g(x)``, or ``f(0, x)``.

        Args:
            x: ``(B, ...)`` array or Tensor.

        Returns:
            A Tensor, or a tuple of Tensors for a tuple state.
        """
        x = as_input(x, "SkipDEQ")
        if self.g is not None:
            return self.g(x)
        shapes = self.state_shape or [tuple(x.shape[1:])]
        zeros = zero_state(x, shapes)
        return self.f(zeros if len(shapes) > 1 else zeros[0], x)

    def forward(self, x: Any) -> tuple[list, dict]:
        """Solve from the guess; record the guess and the skip loss.

        Args:
            x: ``(B, ...)`` array or Tensor (not modified).

        Returns:
            ``(z_out, info)`` from the DEQ core, with ``info['solution'].u0`` the guess and
            ``info['solution'].skip_loss`` its mean squared distance to ``z*``.
        """
        x = as_input(x, "SkipDEQ")
        u0 = self.initial_state(x)

        def func(*zs: Tensor) -> Any:
            return self.f(restore(zs, u0), x)

        z_out, info = self.deq(func, u0)
        solution = info["solution"]
        info["solution"] = solution.replace(
            u0=u0, skip_loss=state_mse(u0, as_state_tuple(solution.z_star)))
        return z_out, info

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"
