"""``import npdeq`` is light: it loads neither CuPy nor SciPy nor autograd, and its own
import (after NumPy's, which every user pays anyway and which alone takes 0.06 to 0.15 s
depending on the machine) takes under 0.3 s (the best of three fresh interpreters, so a busy
machine does not fail it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

IMPORT_BUDGET_S = 0.3
OPTIONAL = ["cupy", "cupyx", "scipy", "autograd", "hypothesis", "array_api_strict"]

_PROBE = """
import json, sys, time
import numpy
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
print(json.dumps({{"seconds": elapsed,
                   "loaded": sorted(m for m in {optional!r} if m in sys.modules)}}))
"""


def _probe(module: str) -> dict:
    code = _PROBE.format(module=module, optional=OPTIONAL)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["npdeq", "npdeq.testing"])
def test_import_loads_no_optional_library(module):
    loaded = _probe(module)["loaded"]
    assert loaded == [], f"import {module} loaded {loaded}; import them lazily where needed"


def test_import_is_fast():
    times = [_probe("npdeq")["seconds"] for _ in range(3)]
    assert min(times) < IMPORT_BUDGET_S, (
        f"import npdeq (after numpy) took {min(times):.3f} s at best of 3 ({', '.join(f'{t:.3f}' for t in times)}"
        f"); the budget is {IMPORT_BUDGET_S} s: see `python -X importtime -c 'import npdeq'`")
