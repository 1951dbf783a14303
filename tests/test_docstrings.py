"""Every docstring example of the package runs and prints what it says.

The Google-style docstrings' ``Example:`` sections are executable documentation: a stale one
is a defect like a failing test. One test per module, found by walking the package.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import npdeq

MODULES = sorted(info.name for info in pkgutil.walk_packages(npdeq.__path__, "npdeq.")
                 if not info.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (above)"


def test_the_walk_sees_the_documented_modules():
    assert {"npdeq.nn.module", "npdeq.solver.anderson", "npdeq.core.cores",
            "npdeq.norm.weight_norm", "npdeq.loss"} <= set(MODULES)
