"""Where the DEQ cores take their gradient-carrying states: TorchDEQ's ``n_states`` /
``indexing`` rules, checked.

Both cores start from the same list of solver steps (:func:`sample_steps`): ``DEQIndexing``
reads the states of one solve at those steps, ``DEQSliced`` cuts the solve into the segments
between them (:func:`segment_lengths`). :func:`pair_grad_steps` gives each state its
PhantomGrad step count (TorchDEQ's ``make_pair``). Everything is checked here, before any
solve.
"""

from __future__ import annotations

from typing import Sequence

from npdeq import backend

__all__ = ["sample_steps", "segment_lengths", "pair_grad_steps"]


def sample_steps(f_max_iter: int, n_states: int = 1, indexing: Sequence[int] | None = None,
                 distinct: bool = True) -> list[int]:
    """The solver steps (cumulative function evaluations) at which states are sampled.

    - ``n_states > 1``: ``n_states`` steps spread uniformly, the last at ``f_max_iter``:
      step ``f_max_iter - (n_states - k - 1) * (f_max_iter // n_states)`` for state k (so
      ``f_max_iter=24, n_states=2`` gives ``[12, 24]`` and ``25, 2`` gives ``[13, 25]``, as
      TorchDEQ's ``DEQIndexing``).
    - otherwise: the steps in ``indexing`` followed by ``f_max_iter`` (an ``indexing`` entry
      equal to ``f_max_iter`` is that final state, not a second one).
    - ``f_max_iter=0`` (no solve): every state is at step 0 (pure unrolling, meaningful for
      ``DEQSliced`` only, hence ``distinct=False``).

    Args:
        f_max_iter: the forward solver's iteration budget (>= 0).
        n_states: number of states to sample (>= 1).
        indexing: explicit steps, strictly increasing, in ``1..f_max_iter``.
        distinct: require distinct steps (``DEQIndexing``: states of one trajectory).

    Returns:
        Non-decreasing steps, one per state; the last is ``f_max_iter``.

    Raises:
        ValueError: ``n_states < 1``; both ``n_states > 1`` and ``indexing`` given;
            ``n_states`` larger than ``f_max_iter``; ``indexing`` not strictly increasing or
            outside ``1..f_max_iter``; repeated steps with ``distinct=True``.

    Example:
        >>> sample_steps(24, n_states=2), sample_steps(24, indexing=[6, 18])
        ([12, 24], [6, 18, 24])
    """
    n_states = backend.check_int("n_states", n_states, 1)
    indexing = list(indexing or ())
    if n_states > 1 and indexing:
        raise ValueError(f"give n_states ({n_states}) or indexing ({indexing}), not both "
                         "(TorchDEQ silently ignores indexing then)")
    if n_states > 1:
        if f_max_iter == 0:
            steps = [0] * n_states
        elif n_states > f_max_iter:
            raise ValueError(f"n_states={n_states} states cannot be spread over "
                             f"f_max_iter={f_max_iter} solver steps; lower n_states or raise "
                             "f_max_iter")
        else:
            delta = f_max_iter // n_states
            steps = [f_max_iter - (n_states - k - 1) * delta for k in range(n_states)]
    else:
        for previous, step in zip([0, *indexing], indexing):
            if step <= previous:
                raise ValueError(f"indexing must be strictly increasing solver steps >= 1, "
                                 f"got {indexing}")
        if indexing and indexing[-1] > f_max_iter:
            raise ValueError(f"indexing entry {indexing[-1]} is beyond f_max_iter="
                             f"{f_max_iter}")
        if indexing and indexing[-1] == f_max_iter:
            indexing = indexing[:-1]  # the final state itself
        steps = [*indexing, f_max_iter]
    if distinct and len(set(steps)) < len(steps):
        raise ValueError(f"DEQIndexing samples {len(steps)} distinct states of one solve, but "
                         f"f_max_iter={f_max_iter} leaves only the initial state; use "
                         "DEQSliced (core='sliced') for pure unrolling")
    return steps


def segment_lengths(steps: Sequence[int]) -> list[int]:
    """The iteration budget of each solve segment between consecutive sampled steps.

    Args:
        steps: non-decreasing steps from :func:`sample_steps`.

    Returns:
        ``steps[0], steps[1] - steps[0], ...``: they add up to the last step (TorchDEQ's
        ``DEQSliced`` uses ``f_max_iter // n_states`` for every segment and so drops the
        remainder).

    Example:
        >>> segment_lengths([13, 25])
        [13, 12]
    """
    return [b - a for a, b in zip([0, *steps], steps)]


def pair_grad_steps(n_states: int, grad: int | Sequence[int]) -> list[int]:
    """One PhantomGrad step count per state (TorchDEQ's ``make_pair``).

    Args:
        n_states: number of sampled states.
        grad: one int for every state, or one per state.

    Returns:
        A list of ``n_states`` ints.

    Raises:
        ValueError: a list whose length is neither 1 nor ``n_states``.

    Example:
        >>> pair_grad_steps(3, 2), pair_grad_steps(2, [1, 5])
        ([2, 2, 2], [1, 5])
    """
    steps = [grad] if isinstance(grad, int) else list(grad)
    if len(steps) == 1:
        return steps * n_states
    if len(steps) != n_states:
        raise ValueError(f"grad has {len(steps)} entries for {n_states} sampled states; give "
                         "one value or one per state")
    return steps
