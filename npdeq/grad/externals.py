"""Find the tensors from outside a function that its recorded graph reaches.

A DEQ map ``f(z)`` closes over parameters and an input injection (which may itself be the
output of earlier layers). Rules that re-record ``f`` (PhantomGrad, ``mem_gc``) need those
tensors as their parents without the user listing them: record ``f`` once, then walk its
graph from the outputs and stop at every tensor that existed before the call (a leaf that
requires grad, or one recorded before the call's start on the tape's clock).
"""

from __future__ import annotations

from typing import Sequence

from npdeq.autodiff import Tensor
from npdeq.autodiff.graph import recorded_since, tape_clock, walk

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

    def made_by_the_call(t: Tensor) -> bool:
        return id(t) not in inside_ids and recorded_since(t, since)

    reached = walk([o for o in outputs if o.requires_grad], made_by_the_call)
    return [t for t in reached if id(t) not in inside_ids and not recorded_since(t, since)]
