"""reuse_freed_memory: the allocator policy is checked in a child process (it changes the
whole process), by the page faults of arrays freed and allocated again."""

from __future__ import annotations

import subprocess
import sys

import pytest

import npdeq
from npdeq.backend import memory

# Allocates eight 1 MiB arrays, frees them together and allocates them again (as a recorded
# pass and its backward do), and prints the minor page faults of the later rounds.
CHILD = """
import resource, sys
import numpy as np
import npdeq
applied = npdeq.reuse_freed_memory({enable})
def round_():
    arrays = [np.ones(2**18, dtype=np.float32) for _ in range(8)]
    del arrays
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults(enable: bool) -> tuple[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD.format(enable=enable)],
                          capture_output=True, text=True, timeout=60, check=True)
    applied, faults = done.stdout.split()
    return applied, float(faults)


@pytest.mark.skipif(memory._glibc() is None, reason="the C library is not glibc")
def test_freed_memory_is_reused_only_when_asked():
    applied, kept = _faults(True)
    assert applied == "True"
    # 8 MiB of fresh pages would be 2048 faults; reused memory faults a handful of times.
    assert kept < 100
    applied, given_back = _faults(False)
    assert applied == "True"
    assert given_back > 1000


def test_reuse_freed_memory_arguments():
    with pytest.raises(TypeError, match="enable must be True or False, got 1"):
        npdeq.reuse_freed_memory(1)
    with pytest.raises(TypeError, match="keep_bytes must be an int, got 1.5"):
        npdeq.reuse_freed_memory(keep_bytes=1.5)
    with pytest.raises(ValueError, match=r"keep_bytes must be in \[0, 2\*\*31\), got -1"):
        npdeq.reuse_freed_memory(keep_bytes=-1)


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert npdeq.reuse_freed_memory() is False
