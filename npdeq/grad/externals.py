"""Find the tensors from outside a function that its recorded graph reaches.

A DEQ map ``f(z)`` closes over parameters and an input injection (which may itself be the
output of earlier layers). Rules that re-record ``f`` (PhantomGrad) need those tensors as
their parents without the user listing them: record ``f`` once, then walk its graph from the
outputs and stop at every tensor that existed before the call (a leaf that requires grad, or
a node older than the call's start on the tape's clock). Imports only the tape.
"""

from __future__ import annotations

from typing import Sequence

from npdeq.autodiff import Tensor
from npdeq.autodiff.primitive import tape_clock

__all__ = ["outside_tensors", "tape_clock"]


def outside_tensors(outputs: Sequence[Tensor], inside: Sequence[Tensor],
                    since: int) -> list[Tensor]:
    """Tensors that ``outputs`` depend on and that were created before the clock read ``since``.

    Args:
        outputs: the results of one recorded call.
        inside: leaves created for the call (e.g. the state z), excluded from the result.
        since: :func:`tape_clock` read just before the call.

    Returns:
        The outside tensors that require grad, each once, in discovery order.
    """
    inside_ids = {id(t) for t in inside}
    found: list[Tensor] = []
    seen: set[int] = set()
    stack = [o for o in outputs if o.requires_grad]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if id(t) in inside_ids:
            continue
        node = t._node
        if node is None or node.clock < since:
            found.append(t)
            continue
        stack.extend(p for _, p in node.parents)
    return found
