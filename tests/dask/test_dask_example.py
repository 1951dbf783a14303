"""The Dask sites example runs in a small setting and fits its parameters."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="the dask extra is not installed")
pytest.importorskip("scipy", reason="the example uses SciPy's L-BFGS-B")

from npdeq.cli import main  # noqa: E402
from npdeq.examples import dask_sites  # noqa: E402


def test_fit_on_few_sites(capsys):
    result = dask_sites.run(sites=150, chunk=50, steps=10, noise=0.01, seed=0)
    assert result["losses"][-1] < 0.01 * result["losses"][0]
    assert result["converged"] == 1.0
    np.testing.assert_allclose(np.exp(result["log_k"]), np.exp(dask_sites.TRUE_LOG_K),
                               rtol=0.05)
    assert "150 sites in chunks of 50" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [
    ({"sites": 0}, "sites must be an int >= 1, got 0"),
    ({"chunk": 2.0}, "chunk must be an int >= 1, got 2.0"),
    ({"steps": True}, "steps must be an int >= 1, got True"),
    ({"seed": -1}, "seed must be an int >= 0, got -1"),
    ({"noise": float("nan")}, "noise must be a finite number >= 0, got nan"),
])
def test_run_refuses_bad_arguments_before_any_work(bad, message):
    with pytest.raises(ValueError, match=message):
        dask_sites.run(**{"sites": 20, "chunk": 10, "steps": 1, **bad})


def test_the_command_runs_and_bad_options_stop_with_a_message(capsys):
    assert main(["example", "dask-sites", "--sites", "60", "--chunk", "30", "--steps", "2"]) == 0
    assert "60 sites in chunks of 30" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(["example", "dask-sites", "--chunk", "0"])
    assert err.value.code == 2
    assert "--chunk: expected an integer >= 1, got '0'" in capsys.readouterr().err
