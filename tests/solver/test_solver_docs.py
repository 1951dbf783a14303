"""The solvers' shared docstring entries: filled in at import, indented as their marker."""

from __future__ import annotations

import pytest

from npdeq.solver import get_solver, registered_solvers
from npdeq.solver.docs import SHARED_ARGS, shared_docs


def test_a_marker_becomes_its_entry_at_the_marker_indentation():
    def solve():
        """Args:
            %(per_sample)s
        """

    lines = shared_docs(solve).__doc__.splitlines()
    assert lines[1] == "            " + SHARED_ARGS["per_sample"].splitlines()[0]
    assert lines[2] == "                ``False``: TorchDEQ's batch-wise loop: every finite " \
                       "sample keeps iterating until"


def test_an_unknown_marker_fails_at_import():
    def solve():
        """%(per_samples)s"""

    with pytest.raises(KeyError, match="per_samples"):
        shared_docs(solve)


@pytest.mark.parametrize("name", registered_solvers())
def test_every_solver_docstring_is_filled_in(name):
    doc = get_solver(name).__doc__
    assert "%(" not in doc
    assert "per_sample" not in doc or SHARED_ARGS["per_sample"].splitlines()[1].strip() in doc
