"""Batched fixed-point solvers on raw arrays of any supported namespace.

``fixed_point_iter``, ``simple_fixed_point_iter``, ``anderson_solver``, ``broyden_solver``,
``newton_krylov`` (matrix-free Newton with GMRES inner solves), ``ode_solver`` (the steady
state of ``dz/dt = f(z) - z``) and ``gmres_solver`` (affine maps) solve ``z = f(z)`` per
sample, freezing each sample once it converges, and return ``(z, trajectory, info)`` with a
:class:`SolverStat` of per-sample statistics. :func:`gmres` solves batched linear systems
given as a product ``v -> A v``. States are one ``(B, ...)`` array or a tuple of arrays
sharing the batch dimension (:func:`pack_states`/:func:`unpack_states` convert to and from
the packed ``(B, D)`` form).
No Tensors inside the loops: a Tensor given as the initial state or returned by ``func`` (one
written with npdeq's ops) is read as its array, so the solvers do not differentiate; for
gradients use :func:`npdeq.fixed_point` or a DEQ core.
"""

from npdeq.solver.anderson import anderson_solver
from npdeq.solver.broyden import broyden_solver
from npdeq.solver.fixed_point import fixed_point_iter, simple_fixed_point_iter
from npdeq.solver.gmres import gmres, gmres_solver
from npdeq.solver.newton_krylov import newton_krylov
from npdeq.solver.ode import ode_solver
from npdeq.solver.registry import get_solver, register_solver, registered_solvers
from npdeq.solver.state import pack_states, state_shapes, unpack_states
from npdeq.solver.stats import SolverStat, residual_norms, solver_stat_from_final_step

__all__ = [
    "fixed_point_iter", "simple_fixed_point_iter", "anderson_solver", "broyden_solver",
    "newton_krylov", "ode_solver", "gmres_solver", "gmres",
    "get_solver", "register_solver", "registered_solvers",
    "pack_states", "unpack_states", "state_shapes",
    "SolverStat", "residual_norms", "solver_stat_from_final_step",
]
