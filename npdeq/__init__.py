"""npdeq: Deep Equilibrium models and implicit layers on NumPy and CuPy.

The tape (``Tensor``, ``grad``, ``backward``, ``vjp``, ``no_grad``) and every primitive op
(``npdeq.tanh``, ``npdeq.matmul``, ``npdeq.conv2d``, ...) are available at the top level.
"""

from npdeq.autodiff import *  # noqa: F401,F403
from npdeq.autodiff import __all__ as _autodiff_all
from npdeq.exceptions import ConvergenceWarning

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "__version__", *_autodiff_all]
