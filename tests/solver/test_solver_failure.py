"""The one failed-solve warning: which message, how many host reads, where it points."""

from __future__ import annotations

import warnings

import pytest

from npdeq import ConvergenceWarning
from npdeq.solver.failure import warn_failure, warn_if_failed, warn_location

NONFINITE, NOT_CONVERGED = "met non-finite values", "did not converge"


def record(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        returned = call()
    return returned, [str(w.message) for w in caught if w.category is ConvergenceWarning]


def stats(to_xp, converged, nonfinite):
    return {"converged": to_xp(converged, dtype=bool), "nonfinite": to_xp(nonfinite, dtype=bool)}


@pytest.mark.parametrize("converged, nonfinite, check, expected", [
    ([True, True], [False, False], True, None),
    ([True, False], [False, False], True, NOT_CONVERGED),
    ([True, False], [False, True], True, NONFINITE),
    ([False, False], [False, True], False, NONFINITE),
    ([True, False], [False, False], False, None),  # convergence not asked about
])
def test_the_message_follows_the_statistics(converged, nonfinite, check, expected, to_xp):
    info = stats(to_xp, converged, nonfinite)
    warned, messages = record(lambda: warn_if_failed(
        info, NONFINITE, NOT_CONVERGED if check else None, who="solve"))
    assert warned is (expected is not None)
    assert messages == ([] if expected is None else [f"solve: {expected}"])


@pytest.mark.parametrize("check", [True, False])
def test_a_successful_solve_costs_one_host_read(check, to_xp, sync_calls):
    info = stats(to_xp, [True, True], [False, False])
    assert not warn_if_failed(info, NONFINITE, NOT_CONVERGED if check else None)
    assert len(sync_calls) == 1


def test_the_warning_points_at_the_first_frame_outside_the_skipped_packages():
    _, messages = record(lambda: warn_failure("plain"))
    assert messages == ["plain"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_failure("here")
    assert caught[0].filename == __file__ and caught[0].category is ConvergenceWarning
    # This test module's own package counts as skipped: the level walks past its frame.
    assert warn_location(skip=(__name__.split(".")[0],)) > warn_location()
