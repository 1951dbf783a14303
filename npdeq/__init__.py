"""npdeq: Deep Equilibrium models and implicit layers on NumPy and CuPy.

The tape (``Tensor``, ``grad``, ``backward``, ``vjp``, ``no_grad``) and every primitive op
(``npdeq.tanh``, ``npdeq.matmul``, ``npdeq.conv2d``, ...) are available at the top level, with
the differentiable :func:`fixed_point`. The solvers are in :mod:`npdeq.solver`, the DEQ
gradient rules in :mod:`npdeq.grad` (which, called as a function, is the tape's ``grad``), the
DEQ cores with TorchDEQ's interface (``get_deq``, ``DEQIndexing``, ``DEQSliced``, ``DEQConfig``,
``add_deq_args``, ...) in :mod:`npdeq.core` and at the top level. The training stack:
:mod:`npdeq.nn` (modules and layers), :mod:`npdeq.optim`, TorchDEQ's :mod:`npdeq.norm`,
:mod:`npdeq.dropout`, :mod:`npdeq.loss` and :mod:`npdeq.utils`, and DeepEquilibriumNetworks.jl's
models in :mod:`npdeq.models`. Past one process: :mod:`npdeq.distributed` (data-parallel
training over MPI) and :mod:`npdeq.dask` (batches of independent problems on Dask arrays),
each loaded on first use.
"""

import importlib

from npdeq.autodiff import *  # noqa: F401,F403
from npdeq.autodiff import __all__ as _autodiff_all
from npdeq.backend.dtypes import default_dtype, get_default_dtype, set_default_dtype
from npdeq.backend.memory import reuse_freed_memory
from npdeq.exceptions import ConfigWarning, ConvergenceWarning
from npdeq import solver  # noqa: F401
from npdeq.solver import get_solver, register_solver
from npdeq import grad  # noqa: F401,E402  (the package; callable as the tape's grad)
from npdeq.grad import backward_factory, fixed_point
from npdeq import core  # noqa: F401,E402
from npdeq.core import (DEQBase, DEQConfig, DEQIndexing, DEQSliced, add_deq_args, get_deq,
                        register_deq, reset_deq, solver_stat_from_final_step)
from npdeq import nn, optim  # noqa: F401,E402
from npdeq import norm, dropout  # noqa: F401,E402
from npdeq import models  # noqa: F401
from npdeq import loss, utils  # noqa: F401
from npdeq import linalg  # noqa: F401,E402  (numpy.linalg's functions on the tape)
from npdeq import sparse  # noqa: F401,E402  (torch.sparse's mm on the tape)
# TorchDEQ's top-level names (torchdeq/__init__.py), where its users import them from.
from npdeq.dropout import (VariationalDropout, VariationalDropout1d, VariationalDropout2d,
                           VariationalDropout3d, VariationalDropToken1d, VariationalDropToken2d,
                           VariationalDropToken3d, reset_dropout)
from npdeq.loss import fp_correction, jac_reg, power_method, register_weight_func
from npdeq.norm import (apply_norm, register_norm, register_norm_module, remove_norm,
                        reset_norm)
from npdeq.utils import mem_gc, mixed_init

__version__ = "0.1.0"

__all__ = list(dict.fromkeys([
    "ConfigWarning", "ConvergenceWarning", "__version__", "fixed_point", "backward_factory",
    "nn", "optim", "models", "linalg", "sparse", "DEQBase", "DEQIndexing", "DEQSliced",
    "DEQConfig",
    "set_default_dtype", "get_default_dtype", "default_dtype", "reuse_freed_memory",
    # TorchDEQ 0.1.0's top-level exports (tests/test_import.py holds the list)
    "VariationalDropToken1d", "VariationalDropToken2d", "VariationalDropToken3d",
    "VariationalDropout", "VariationalDropout1d", "VariationalDropout2d", "VariationalDropout3d",
    "add_deq_args", "apply_norm", "fp_correction", "get_deq", "get_solver", "jac_reg",
    "mem_gc", "mixed_init", "power_method", "register_deq", "register_norm",
    "register_norm_module", "register_solver", "register_weight_func", "remove_norm",
    "reset_deq", "reset_dropout", "reset_norm", "solver_stat_from_final_step",
    "core", "grad", "solver", "norm", "dropout", "loss", "utils",
    *_autodiff_all]))


def __getattr__(name: str):
    # Subpackages behind optional engines, loaded on first use: ``npdeq.distributed`` (MPI)
    # and ``npdeq.dask`` import mpi4py and dask only when they are used.
    if name in ("distributed", "dask"):
        return importlib.import_module(f"npdeq.{name}")
    raise AttributeError(f"module 'npdeq' has no attribute {name!r}")
