"""Fixtures shared by the solver tests."""

from __future__ import annotations

import pytest

from npdeq import backend


@pytest.fixture
def sync_calls(monkeypatch):
    """Patch ``backend.to_scalar`` with a counting wrapper; the list of its calls."""
    real = backend.to_scalar
    calls = []

    def counting(x):
        calls.append(1)
        return real(x)

    monkeypatch.setattr(backend, "to_scalar", counting)
    return calls
