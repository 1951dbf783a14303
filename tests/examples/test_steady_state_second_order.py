"""The steady-state example's second-order options: forward sensitivities dz*/dp through
the fixed point against finite differences, Newton-CG against gradient descent, and the
command line."""

from __future__ import annotations

import numpy as np
import pytest

from npdeq import backend
from npdeq.examples import steady_state as ss
from npdeq.examples import steady_state_analysis as analysis

GRID = 8


@pytest.fixture(scope="module")
def problem():
    xp = backend.array_namespace(np.zeros(0))
    rng = np.random.default_rng(0)
    source = xp.asarray(ss._sources(GRID, rng))
    z0 = xp.zeros(source.shape, dtype=source.dtype)
    u, _ = ss.solve(ss._log_params(ss.TRUE_PARAMS, xp, source), source, z0, grad=None)
    observed = u.data + 0.01 * float(np.max(u.data)) * rng.standard_normal(u.data.shape)
    return source, z0, u.data, observed


def _steady(values, source, warm):
    xp = backend.array_namespace(source)
    u, _ = ss.solve(ss._log_params(values, xp, source), source, warm, grad=None)
    return u.data


def test_sensitivities_equal_finite_differences(problem):
    source, _, u, _ = problem
    result = analysis.sensitivities(ss.TRUE_PARAMS, source, u)
    assert list(result) == ["D", "k", "a"]
    for name, (field, reported) in result.items():
        assert field.shape == (2, GRID, GRID) and reported < 1e-3
        # An independent check: a larger step than the example's own.
        h = 1e-3 * ss.TRUE_PARAMS[name]
        plus = _steady(dict(ss.TRUE_PARAMS, **{name: ss.TRUE_PARAMS[name] + h}), source, u)
        minus = _steady(dict(ss.TRUE_PARAMS, **{name: ss.TRUE_PARAMS[name] - h}), source, u)
        fd = (plus - minus) / (2 * h)
        assert np.linalg.norm(field - fd) <= 1e-4 * np.linalg.norm(fd)
    # Decay lowers the field everywhere; production raises it.
    assert np.all(result["k"][0] < 0) and np.all(result["a"][0] > 0)


def test_newton_cg_needs_far_fewer_iterations_than_gradient_descent(problem):
    source, z0, _, observed = problem
    gd, newton = analysis.newton_cg_vs_gradient_descent(source, observed, z0,
                                                        ss.INITIAL_GUESS, max_gd=10)
    assert newton.converged and newton.hvps >= newton.iterations
    assert gd.iterations == 10 and not gd.converged
    assert newton.iterations <= 10 and newton.loss < gd.loss
    for name in ("D", "k"):  # the fit recovers the well-determined parameters
        assert abs(newton.fitted[name] - ss.TRUE_PARAMS[name]) < 0.05


def test_command_line_prints_both_tables(capsys, monkeypatch):
    calls = []

    def quick(source, observed, z0, initial, max_gd):  # the fits are tested above
        calls.append(max_gd)
        return [analysis.FitCount("gradient descent", 3, 5, 0, False, 1e-3, initial),
                analysis.FitCount("Newton-CG", 2, 3, 6, True, 1e-4, initial)]

    monkeypatch.setattr(analysis, "newton_cg_vs_gradient_descent", quick)
    assert ss.main(["--grid", "6", "--steps", "1", "--no-plot", "--sensitivities",
                    "--newton-cg", "--gd-steps", "3"]) == 0
    text = capsys.readouterr().out
    assert calls == [3]
    assert "Forward sensitivities" in text and "vs FD" in text
    for name in ("D", "k", "a"):
        assert f"\n{name} " in text.split("Forward sensitivities")[1]
    assert "gradient descent" in text and "Newton-CG" in text and "outer it" in text
    assert "NO (iteration limit)" in text


def test_gd_steps_is_checked(capsys):
    with pytest.raises(SystemExit) as err:
        ss.main(["--gd-steps", "-1", "--no-plot"])
    assert err.value.code == 2 and "--gd-steps" in capsys.readouterr().err
