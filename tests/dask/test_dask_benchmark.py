"""benchmarks/dask_batch.py runs in a tiny setting (no cluster); no timings are checked."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

pytest.importorskip("dask.array", reason="the dask extra is not installed")

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "dask_batch.py"


def test_dask_batch_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_dask_batch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--batch", "40", "--chunk", "15", "--repeat", "1", "--grad",
                           "--modes", "single,sync,threads"])
    assert sorted(results) == sorted((k, m) for k in ("solve", "loss+grad")
                                     for m in ("single", "sync", "threads"))
    for (kind, _), r in results.items():
        # Per-sample solvers: chunked solves agree to the rounding of the matrix products;
        # gradients are sums in another order.
        assert r["max_diff"] < (1e-14 if kind == "solve" else 1e-10), (kind, r)
    assert "solve      threads" in capsys.readouterr().out
