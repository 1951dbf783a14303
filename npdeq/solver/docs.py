"""The argument descriptions the fixed-point solvers share, written once.

A solver's docstring names a shared entry by a marker alone on its line, ``%(name)s``, and
:func:`shared_docs` replaces it at import, indented as the marker, so ``help(solver)`` and
the doctests see the full text (as SciPy's ``doccer`` and matplotlib's ``_docstring`` do).

Example:
    >>> @shared_docs
    ... def solve(func, x0, per_sample=True):
    ...     '''Args:
    ...         %(x0)s
    ...     '''
    >>> print(solve.__doc__.strip())
    Args:
            x0: initial state, ``(B, ...)`` or a tuple/list of ``(B, ...)`` arrays.
"""

from __future__ import annotations

import re
from typing import Callable, TypeVar

__all__ = ["SHARED_ARGS", "shared_docs"]

F = TypeVar("F", bound=Callable)

# Continuation lines are indented by four spaces relative to the entry's first line.
SHARED_ARGS = {
    "func": ("func: ``func(z) -> z'`` on ``(B, ...)`` arrays, or ``func(*zs) -> tuple`` for a "
             "tuple\n    state."),
    "x0": "x0: initial state, ``(B, ...)`` or a tuple/list of ``(B, ...)`` arrays.",
    "tol": "tol: convergence tolerance on the ``stop_mode`` residual (``0``: no early stop).",
    "stop_mode": "stop_mode: ``'abs'`` or ``'rel'``.",
    "indexing": "indexing: iterations (1-based) at which to record the best state so far.",
    "return_final": "return_final: return the last evaluated iterate instead of the best one.",
    "per_sample": ("per_sample: ``True`` (default): a sample stops moving once it has "
                   "converged.\n    ``False``: TorchDEQ's batch-wise loop: every finite sample "
                   "keeps iterating until\n    all have converged (or ``max_iter``); the best "
                   "iterate is still returned per\n    sample."),
}

_MARKER = re.compile(r"^([ \t]*)%\((\w+)\)s[ \t]*$", re.MULTILINE)


def shared_docs(function: F) -> F:
    """Fill the ``%(name)s`` markers of ``function``'s docstring from :data:`SHARED_ARGS`.

    Raises:
        KeyError: a marker names no shared entry (at import, so a typo cannot ship).
    """

    def entry(match: re.Match) -> str:
        indent, name = match.group(1), match.group(2)
        return indent + SHARED_ARGS[name].replace("\n", "\n" + indent)

    if function.__doc__:
        function.__doc__ = _MARKER.sub(entry, function.__doc__)
    return function
