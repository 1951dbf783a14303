"""Tools to check gradients: finite-difference checks of the tape (``check_grads``).

May import numpy (it is outside the array-namespace rule's scope).
"""

from npdeq.testing.gradcheck import check_grads, default_eps, numerical_jacobian, numerical_vjp

__all__ = ["check_grads", "numerical_vjp", "numerical_jacobian", "default_eps"]
