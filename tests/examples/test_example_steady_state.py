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
        assert text.rstrip("\n").splitlines()[-1] == f"wrote {out}"  # the last line


def test_run_decreases_the_loss_and_checks_gradients():
    result = steady_state.run(grid=10, steps=4, log=lambda *a: None)
    assert result.report.passed and len(result.report.params) == 3
    assert len(result.losses) == 5 and result.losses[-1] < result.losses[0]
    assert result.observed.shape == result.fitted_field.shape == (2, 10, 10)
    assert set(result.fitted) == {"D", "k", "a"} and all(v > 0 for v in result.fitted.values())


def test_gpu_without_cupy_exits_with_one_line(capsys, monkeypatch):
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    assert steady_state.main(["--device", "gpu", "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CuPy" in err and "\n" not in err


@pytest.mark.parametrize("kwargs, error, message", [
    ({"grid": 2}, ValueError, "grid must be an int >= 4, got 2"),
    ({"grid": 8.0}, TypeError, "grid must be an int, got 8.0"),
    ({"grid": True}, TypeError, "grid must be an int"),
    ({"steps": -1}, ValueError, "steps must be an int >= 0, got -1"),
    ({"steps": 2.5}, TypeError, "steps must be an int"),
    ({"seed": -5}, ValueError, "seed must be an int >= 0, got -5"),
    ({"noise": float("nan")}, ValueError, "noise must be a finite number >= 0, got nan"),
    ({"noise": -0.1}, ValueError, "noise must be a finite number >= 0"),
    ({"noise": "0.1"}, TypeError, "noise must be a real number"),
])
def test_bad_arguments_are_refused_before_work(kwargs, error, message):
    with pytest.raises(error, match=message.replace(".", r"\.")):
        steady_state.run(log=_no_log_expected, **kwargs)


def _no_log_expected(*args):
    raise AssertionError("work started before the bad argument was refused")


def test_sparkline_and_true_parameters():
    assert steady_state._sparkline([1.0, 0.1, 0.01]) == "█▅▁"
    assert np.isfinite(steady_state.TRUE_PARAMS["k"])
