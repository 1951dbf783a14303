"""npdeq's reverse-mode tape: ``Tensor``, grad mode, the recorded graph, the primitive
registry, the engine and the primitive ops."""

from npdeq.autodiff import methods as _methods  # noqa: F401  (binds Tensor operators)
from npdeq.autodiff.engine import backward, grad, vjp
from npdeq.autodiff.mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from npdeq.autodiff.ops import *  # noqa: F401,F403
from npdeq.autodiff.ops import __all__ as _ops_all
from npdeq.autodiff.graph import Node
from npdeq.autodiff.primitive import Primitive, defvjp, defvjp_argnums, primitive
from npdeq.autodiff.tensor import Tensor
from npdeq.autodiff.transforms import hvp, jvp
from npdeq.autodiff.jacobians import hessian, jacobian

__all__ = [
    "Tensor",
    "backward", "grad", "vjp", "jvp", "hvp", "jacobian", "hessian",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
    "primitive", "defvjp", "defvjp_argnums", "Primitive", "Node",
    *_ops_all,
]
