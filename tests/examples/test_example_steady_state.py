"""Smoke test of the steady-state calibration example on a small grid with few steps."""

from __future__ import annotations

import numpy as np
import pytest

from npdeq import backend
from npdeq.examples import steady_state


def test_main_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "fit.png"
    assert steady_state.main(["--grid", "12", "--steps", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Gradient check" in text and "finite diff" in text
    assert "fitted" in text and "loss curve" in text
    for name in ("D", "k", "a"):
        assert f"\n{name} " in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text and not out.exists()
    else:
        assert out.exists() and out.stat().st_size > 0


def test_run_decreases_the_loss_and_checks_gradients():
    result = steady_state.run(grid=10, steps=4, log=lambda *a: None)
    assert result.report.passed and len(result.report.params) == 3
    assert len(result.losses) == 5 and result.losses[-1] < result.losses[0]
    assert result.observed.shape == result.fitted_field.shape == (2, 10, 10)
    assert set(result.fitted) == {"D", "k", "a"} and all(v > 0 for v in result.fitted.values())


def test_gpu_without_cupy_exits_with_one_line(capsys, monkeypatch):
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    assert steady_state.main(["--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CuPy" in err and "\n" not in err


def test_bad_arguments():
    with pytest.raises(ValueError, match="grid"):
        steady_state.run(grid=2)
    with pytest.raises(ValueError, match="steps"):
        steady_state.run(steps=-1)
    assert steady_state._sparkline([1.0, 0.1, 0.01]) == "█▅▁"
    assert np.isfinite(steady_state.TRUE_PARAMS["k"])
