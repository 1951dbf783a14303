"""``npdeq demo``: the digits classifier end to end, its outputs and its bad-input handling."""

from __future__ import annotations

import json
import os
import re

import pytest

pytest.importorskip("sklearn")

import npdeq  # noqa: E402
from npdeq import backend, cli  # noqa: E402

# No --no-progress: under pytest stdout and stderr are not terminals, so no bar is drawn.
TINY = ["--epochs", "1", "--train-size", "120", "--batch-size", "40"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): loss \d+\.\d{4}, train accuracy [01]\.\d{4}, "
                        r"test accuracy [01]\.\d{4}, forward iterations \d+\.\d, "
                        r"residual \d\.\de[-+]\d\d, \d+\.\d\d s$")
BAR_MARKS = ("\r", "it/s", "s/it", "█", "|")


def _assert_plain_lines(out, err, epochs=1):
    """One result line per epoch on stdout, no progress bar anywhere."""
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [EPOCH_LINE.match(line).group(1, 2) for line in lines] == \
        [(str(e), str(epochs)) for e in range(1, epochs + 1)], out
    for mark in BAR_MARKS:
        assert mark not in out + err, (mark, out, err)


def _assert_last_line_names_the_files(out, out_dir):
    last = out.rstrip("\n").splitlines()[-1]
    assert last.startswith("wrote "), last
    written = last[len("wrote "):].split(", ")
    assert sorted(os.path.basename(p) for p in written) == \
        ["metrics.json", "model.npz", "training.png"]
    for path in written:
        assert os.path.dirname(path) == str(out_dir) and os.path.isfile(path), path
KEYS = {"test_accuracy", "seconds_per_epoch", "mean_forward_iterations",
        "mean_backward_iterations", "convergence_rate", "test_convergence_rate", "history",
        "settings"}


def _metrics(out_dir):
    with open(out_dir / "metrics.json", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("options", [
    [],
    ["--model", "conv"],
    ["--model", "multiscale"],
    ["--grad", "phantom", "--k", "3", "--tau", "0.8"],
    ["--norm", "spectral_norm", "--float32"],
], ids=["mlp-ift", "conv", "multiscale", "phantom", "spectral-float32"])
def test_a_short_run_writes_metrics_and_figure(tmp_path, capsys, options):
    assert cli.main(["demo", *TINY, *options, "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "test accuracy (final epoch)" in out and "mean forward iterations" in out
    _assert_plain_lines(out, err)
    _assert_last_line_names_the_files(out, tmp_path)
    metrics = _metrics(tmp_path)
    assert KEYS <= set(metrics)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(metrics["history"]["test_accuracy"]) == 1
    assert metrics["mean_forward_iterations"] >= 1
    phantom = "phantom" in options
    assert (metrics["mean_backward_iterations"] is None) == phantom  # IFT reports its solve
    with open(tmp_path / "training.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    weights = npdeq.nn.load(tmp_path / "model.npz")
    assert weights and all(name.startswith(("injection", "head", "deq", "conv", "mixing",
                                            "norm")) for name in weights)


def test_gpu_without_cupy_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    assert cli.main(["demo", "--device", "gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "CuPy" in err and "Traceback" not in err
    assert not (tmp_path / "metrics.json").exists()


# Every bad option of the demo is in tests/test_cli.py's table (one line, status 2, no work).


def test_the_training_set_size_the_options_allow_is_the_split_s():
    from npdeq.examples.digits import data

    assert data.load().y_train.shape[0] == data.TRAIN_IMAGES
    assert data.load(train_size=data.TRAIN_IMAGES).y_train.shape[0] == data.TRAIN_IMAGES
    for bad in (0, data.TRAIN_IMAGES + 1, 10.0, True):  # more would silently give fewer
        with pytest.raises(ValueError, match=f"train_size must be an int from 1 to "
                                             f"{data.TRAIN_IMAGES}"):
            data.load(train_size=bad)


def test_phantom_settings_default_only_with_phantom(tmp_path):
    from npdeq.examples import digits

    p = digits.parser()
    args = p.parse_args(["--grad", "phantom", "--out", str(tmp_path)])
    digits._check(p, args)
    assert (args.k, args.tau) == (5, 0.8)
    assert digits.deq_config(args)["grad"] == 5


@pytest.mark.slow
def test_the_default_run_learns_the_digits(tmp_path):
    # The README's figure is >= 97 % for the default 20 epochs; CI asks for a margin.
    assert cli.main(["demo", "--no-progress", "--out", str(tmp_path)]) == 0
    metrics = _metrics(tmp_path)
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["test_convergence_rate"] >= 0.9
