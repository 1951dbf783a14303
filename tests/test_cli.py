"""The ``npdeq`` command line: ``info``, ``example NAME`` and its errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from npdeq import cli


def test_info_lists_versions_and_backends(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("npdeq ")
    for name in ("numpy", "array-api-compat", "cupy", "scikit-learn", "tqdm", "backends:",
                 "GPU:"):
        assert name in out


def test_example_runs_with_its_own_options(capsys):
    assert cli.main(["example", "steady-state", "--grid", "12", "--steps", "2",
                     "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "fitted" in out and "12x12" in out


@pytest.mark.parametrize("argv, expected", [
    (["bogus"], "choose from 'demo', 'info', 'example'"),
    (["example", "nope"], "choose from 'steady-state'"),
    (["example", "steady-state", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_exits_2_with_the_valid_choices(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_python_dash_m_npdeq():
    done = subprocess.run([sys.executable, "-m", "npdeq", "info"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("npdeq ")
