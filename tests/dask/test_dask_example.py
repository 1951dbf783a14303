"""The Dask sites example runs in a small setting and fits its parameters."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="the dask extra is not installed")
pytest.importorskip("scipy", reason="the example uses SciPy's L-BFGS-B")

from npdeq.examples import dask_sites  # noqa: E402


def test_fit_on_few_sites(capsys):
    result = dask_sites.main(["--sites", "150", "--chunk", "50", "--steps", "10"])
    assert result["losses"][-1] < 0.01 * result["losses"][0]
    assert result["converged"] == 1.0
    np.testing.assert_allclose(np.exp(result["log_k"]), np.exp(dask_sites.TRUE_LOG_K),
                               rtol=0.05)
    assert "150 sites in chunks of 50" in capsys.readouterr().out


def test_bad_options_stop_with_a_message():
    with pytest.raises(SystemExit) as err:
        dask_sites.main(["--chunk", "0"])
    assert err.value.code == 2
