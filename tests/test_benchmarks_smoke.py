"""The side-by-side conv classifier benchmark runs in its quick setting: npdeq's half always,
TorchDEQ's beside it where torch and torchdeq are installed (they are not test
dependencies). No timings are checked."""

import importlib.util
import math
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "conv_classifier.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_conv_classifier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_trained(result):
    assert len(result["seconds"]) == 1
    # Ten classes, small random head: the first loss is close to log(10).
    assert abs(result["first_loss"] - math.log(10)) < 0.5
    assert math.isfinite(result["last_loss"])
    assert 0.0 <= result["accuracy"] <= 1.0
    assert all(1 <= n <= 30 for n in result["iters"])


def test_conv_classifier_npdeq_half(capsys):
    results = load_script().main(["--quick", "--libraries", "npdeq"])
    assert sorted(results) == [("ift", "npdeq"), ("phantom", "npdeq")]
    for result in results.values():
        check_trained(result)
    assert "phantom   npdeq" in capsys.readouterr().out


def test_conv_classifier_side_by_side():
    pytest.importorskip("torch")
    pytest.importorskip("torchdeq")
    results = load_script().main(["--quick", "--gradients", "ift"])
    ours, theirs = results["ift", "npdeq"], results["ift", "torchdeq"]
    check_trained(ours)
    check_trained(theirs)
    # Same weights and batch: the first losses differ only by the forward solvers' tolerance.
    assert abs(ours["first_loss"] - theirs["first_loss"]) < 1e-3
