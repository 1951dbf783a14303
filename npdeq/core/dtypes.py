"""The DEQ cores' dtype check: the state and the tensors ``func`` closes over agree.

npdeq's ops follow the array API promotion rule (float32 with float64 gives float64), so a
float64 ``z_init`` given to a model whose parameters are float32 is no error for any single
op: every solver iteration silently runs in float64 and the solution comes back float64
(PyTorch raises on the same mix). The first call of ``func`` in a solve is therefore
recorded, and the tensors from outside ``func`` that its result depends on (the parameters
and a recorded input injection: :func:`~npdeq.grad.externals.outside_tensors`) are compared
with the state. The opposite mix (a float64 parameter in a float32 model) makes ``func``
return float64 for a float32 state, which the solvers' check of every call reports
(:func:`npdeq.solver.state.check_result`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff import Tensor, enable_grad
from npdeq.grad.externals import outside_tensors, tape_clock
from npdeq.grad.state import call_state_func

__all__ = ["call_checking_dtypes"]


def _bits(xp: Any, dtype: Any) -> int:
    return xp.finfo(dtype).bits if xp.isdtype(dtype, "real floating") else 0


def call_checking_dtypes(func: Callable[..., Any],
                         states: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """``func(*states)`` recorded once, after checking that no tensor it closes over has a
    lower floating-point precision than the state.

    Args:
        func: the DEQ map on Tensors.
        states: the state Tensors (detached).

    Returns:
        ``func``'s outputs (see :func:`~npdeq.grad.state.call_state_func`), detached.

    Raises:
        TypeError: the state is float64 while a tensor ``func`` uses that requires grad
            (a parameter, or the input injection) is float32; names both dtypes.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.nn.Parameter(np.eye(2, dtype=np.float32))
        >>> z = npdeq.Tensor(np.zeros((1, 2)))                       # float64
        >>> call_checking_dtypes(lambda z: z @ W, [z])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: z_init has dtype float64 but func uses a float32 tensor that requires grad ...
    """
    since = tape_clock()
    with enable_grad():
        out = call_state_func(func, states)
    xp = backend.array_namespace(states[0].data)
    widest = max(states, key=lambda s: _bits(xp, s.dtype))
    top = _bits(xp, widest.dtype)
    if top:
        for t in outside_tensors(out, states, since):
            bits = _bits(xp, t.dtype)
            if bits and bits < top:
                low = str(t.dtype).rpartition(".")[2]
                high = str(widest.dtype).rpartition(".")[2]
                raise TypeError(
                    f"z_init has dtype {high} but func uses a {low} tensor that requires grad "
                    f"(a parameter or the input injection, shape {tuple(t.shape)}): every "
                    f"solver iteration would run in {high} (the {low} values are promoted) "
                    f"and the solution would be {high}. Make z_init {low} (the model's "
                    f"dtype), or convert the model with model.to(dtype={high!r})")
    return tuple(o.detach() for o in out)
