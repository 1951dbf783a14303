"""DEQ gradient rules on the tape: implicit differentiation (IFT), PhantomGrad / 1-step
gradients, TorchDEQ's ``backward_factory``, and the functional ``fixed_point``.

Imports the tape (:mod:`npdeq.autodiff`) and the solvers (:mod:`npdeq.solver`).
"""

from npdeq.grad.adjoint import adjoint_solve
from npdeq.grad.factory import backward_factory
from npdeq.grad.functional import fixed_point
from npdeq.grad.ift import implicit_grad
from npdeq.grad.phantom import phantom_grad, supervised_steps

__all__ = ["backward_factory", "fixed_point", "implicit_grad", "phantom_grad",
           "adjoint_solve", "supervised_steps"]
