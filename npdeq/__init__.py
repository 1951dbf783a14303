"""npdeq: Deep Equilibrium models and implicit layers on NumPy and CuPy.

The tape (``Tensor``, ``grad``, ``backward``, ``vjp``, ``no_grad``) and every primitive op
(``npdeq.tanh``, ``npdeq.matmul``, ``npdeq.conv2d``, ...) are available at the top level, with
the differentiable :func:`fixed_point`. The solvers are in :mod:`npdeq.solver`, the DEQ
gradient rules in :mod:`npdeq.grad` (which, called as a function, is the tape's ``grad``).
"""

from npdeq.autodiff import *  # noqa: F401,F403
from npdeq.autodiff import __all__ as _autodiff_all
from npdeq.exceptions import ConvergenceWarning
from npdeq import solver  # noqa: F401
from npdeq import grad  # noqa: F401,E402  (the package; callable as the tape's grad)
from npdeq.grad import backward_factory, fixed_point

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "__version__", "fixed_point", "backward_factory", "solver",
           *_autodiff_all]
