"""DEQ gradient rules on the tape: implicit differentiation (IFT), PhantomGrad / 1-step
gradients, TorchDEQ's ``backward_factory``, and the functional ``fixed_point``.

``npdeq.grad`` is also the tape's ``grad`` function (``npdeq.grad(outputs, inputs)``): this
package shares its name with TorchDEQ's ``torchdeq.grad`` module, and a package attribute
would otherwise hide the function, so the module object itself is made callable and forwards
to :func:`npdeq.autodiff.grad`.
"""

import sys
import types

from npdeq.autodiff import engine as _engine
from npdeq.grad.adjoint import adjoint_solve
from npdeq.grad.factory import backward_factory
from npdeq.grad.functional import fixed_point
from npdeq.grad.ift import implicit_grad
from npdeq.grad.jacobian import jacobian_frobenius
from npdeq.grad.phantom import phantom_grad, supervised_steps

__all__ = ["backward_factory", "fixed_point", "implicit_grad", "phantom_grad",
           "adjoint_solve", "supervised_steps", "jacobian_frobenius"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return _engine.grad(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
