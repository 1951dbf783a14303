"""DEQ cores with TorchDEQ's interface: ``DEQBase``, ``DEQIndexing``, ``DEQSliced``,
``get_deq``, ``register_deq``, ``reset_deq``, ``DEQConfig`` and ``add_deq_args``; and the
solve's record ``DEQSolution``.

``z_out, info = deq(func, z_init)`` solves the fixed point of ``func`` and, in training mode,
returns the gradient-carrying states the core samples (IFT and/or PhantomGrad, from
:mod:`npdeq.grad`); in eval mode ``[z*]``. Modules: ``keys`` (keys, defaults, checks),
``config`` (``DEQConfig``), ``args`` (``add_deq_args``), ``sampling`` (which solver steps carry
gradients), ``solver_calls`` (how the cores call solvers, checked before any solve),
``base`` (``DEQBase``), ``cores`` (the two cores), ``solution`` (``DEQSolution``,
``info['solution']``, with the Jacobian regularisation term), ``registry`` (by-name
construction, ``reset_deq``), ``sradius`` (power method).
"""

from npdeq.core.args import add_deq_args
from npdeq.core.base import DEQBase
from npdeq.core.config import DEFAULTS, ConfigWarning, DEQConfig
from npdeq.core.cores import DEQIndexing, DEQSliced
from npdeq.core.registry import (get_deq, register_deq, register_reset_hook, registered_deqs,
                                 reset_deq)
from npdeq.core.solution import DEQSolution, solver_stat_from_final_step
from npdeq.core.sradius import power_method, spectral_radius

__all__ = ["DEQBase", "DEQIndexing", "DEQSliced", "get_deq", "register_deq", "reset_deq",
           "registered_deqs", "register_reset_hook", "DEQConfig", "add_deq_args", "DEFAULTS",
           "power_method", "spectral_radius", "DEQSolution", "ConfigWarning",
           "solver_stat_from_final_step"]
