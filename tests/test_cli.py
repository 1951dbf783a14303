"""The ``npdeq`` command line: ``info``, ``example NAME`` and its errors.

The promise of every command (``demo``, ``info``, ``example NAME``): bad input exits with
status 2 and exactly one line on stderr, no traceback, nothing on stdout, before any work
starts. ``BAD`` holds at least one bad value of every option of every command, and
``test_every_option_of_every_command_has_a_bad_value`` makes a new option without one fail.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

import pytest

from npdeq import cli
from npdeq.examples import digits, steady_state


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


# (command, option or positional it exercises ("(parser)": unknown or abbreviated options),
# arguments after the command, what the error line must say). Paths: {file} an existing file, {dir} an existing directory, {blocked} a
# directory whose metrics.json is a directory, {new} a path that does not exist yet.
DEMO, STEADY, SITES = ("demo",), ("example", "steady-state"), ("example", "dask-sites")
BAD = [
    ((), "COMMAND", ["bogus"], "choose from 'demo', 'info', 'example'"),
    ((), "--help", ["--help=x"], "ignored explicit argument 'x'"),
    (("info",), "--help", ["--help=x"], "ignored explicit argument 'x'"),
    (("info",), "(parser)", ["extra"], "unrecognized arguments: extra"),
    (("example",), "NAME", [], "required: NAME"),
    (("example",), "NAME", ["nope"], "choose from 'dask-sites', 'steady-state'"),
    (("example",), "--help", ["--help=x"], "ignored explicit argument 'x'"),
    # npdeq demo
    (DEMO, "--help", ["--help=x"], "ignored explicit argument 'x'"),
    (DEMO, "--distributed", ["--distributed=yes"], "ignored explicit argument 'yes'"),
    (DEMO, "(parser)", ["--bogus"], "valid options: --batch-size"),
    (DEMO, "(parser)", ["--epoch", "3"], "unrecognized arguments: --epoch"),  # no abbreviations
    (DEMO, "--model", ["--model", "resnet"], "choose from 'mlp', 'conv', 'multiscale'"),
    (DEMO, "--grad", ["--grad", "jfb"], "choose from 'ift', 'phantom'"),
    (DEMO, "--k", ["--grad", "phantom", "--k", "0"], "--k: expected an integer >= 1, got '0'"),
    (DEMO, "--k", ["--grad", "phantom", "--k", "2.5"], "--k: expected an integer >= 1"),
    (DEMO, "--k", ["--k", "3"], "--k applies only with --grad phantom"),
    (DEMO, "--tau", ["--grad", "phantom", "--tau", "1.5"], "--tau: expected a finite number in "
                                                          "(0, 1], got '1.5'"),
    (DEMO, "--tau", ["--grad", "phantom", "--tau", "0"], "(0, 1], got '0'"),
    (DEMO, "--tau", ["--grad", "phantom", "--tau", "nan"], "(0, 1], got 'nan'"),
    (DEMO, "--tau", ["--k", "3", "--tau", "0.5"], "--k and --tau apply only with --grad phantom"),
    (DEMO, "--f-solver", ["--f-solver", "newton"], "invalid choice: 'newton'"),
    (DEMO, "--f-solver", ["--f-solver", "gmres"], "invalid choice: 'gmres'"),  # affine only
    (DEMO, "--norm", ["--norm", "batch"], "invalid choice: 'batch'"),
    (DEMO, "--jac-reg", ["--jac-reg", "-1"], "--jac-reg: expected a finite number >= 0"),
    (DEMO, "--jac-reg", ["--jac-reg", "nan"], "got 'nan'"),
    (DEMO, "--jac-reg", ["--jac-reg", "inf"], "got 'inf'"),
    (DEMO, "--device", ["--device", "tpu"], "choose from 'cpu', 'gpu'"),
    (DEMO, "--epochs", ["--epochs", "0"], "--epochs: expected an integer >= 1, got '0'"),
    (DEMO, "--epochs", ["--epochs", "1.5"], "got '1.5'"),
    (DEMO, "--batch-size", ["--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (DEMO, "--batch-size", ["--batch-size", "-64"], "got '-64'"),
    (DEMO, "--lr", ["--lr", "0"], "--lr: expected a finite number > 0, got '0'"),
    (DEMO, "--lr", ["--lr", "-0.001"], "got '-0.001'"),
    (DEMO, "--lr", ["--lr=-1e-3"], "got '-1e-3'"),
    (DEMO, "--lr", ["--lr", "nan"], "got 'nan'"),
    (DEMO, "--lr", ["--lr", "inf"], "got 'inf'"),
    (DEMO, "--lr", ["--lr", "fast"], "got 'fast'"),
    (DEMO, "--seed", ["--seed", "-5"], "--seed: expected an integer in [0, 4294967295]"),
    (DEMO, "--seed", ["--seed", "4294967296"], "got '4294967296'"),
    (DEMO, "--seed", ["--seed", "1.5"], "got '1.5'"),
    (DEMO, "--seed", ["--out", "{new}", "--seed", "-1"], "got '-1'"),  # --out's check: no trace
    (DEMO, "--train-size", ["--train-size", "9"], "--train-size: expected an integer in "
                                                  "[10, 1437], got '9'"),
    (DEMO, "--train-size", ["--train-size", "1438"], "got '1438'"),  # would silently be 1437
    (DEMO, "--float32", ["--float32=yes"], "ignored explicit argument 'yes'"),
    (DEMO, "--out", ["--out", "{file}"], "--out: expected a directory, got"),
    (DEMO, "--out", ["--out", "{file}/sub"], "expected a directory that can be created"),
    (DEMO, "--out", ["--out", ""], "expected a directory path, got ''"),
    (DEMO, "--out", ["--out", "{blocked}"], "metrics.json exists and is not a file"),
    (DEMO, "--no-progress", ["--no-progress=1"], "ignored explicit argument '1'"),
    # npdeq example steady-state
    (SITES, "--help", ["--help=x"], "ignored explicit argument 'x'"),
    (SITES, "--sites", ["--sites", "0"], "--sites: expected an integer >= 1, got '0'"),
    (SITES, "--chunk", ["--chunk", "-3"], "--chunk: expected an integer >= 1, got '-3'"),
    (SITES, "--steps", ["--steps", "x"], "--steps: expected an integer >= 1, got 'x'"),
    (SITES, "--noise", ["--noise", "nan"], "--noise"),
    (SITES, "--seed", ["--seed", "-1"], "--seed"),
    (SITES, "--scheduler", ["--scheduler", "mpi"], "choose from 'threads', 'cluster'"),
    (STEADY, "--help", ["--help=x"], "ignored explicit argument 'x'"),
    (STEADY, "--sensitivities", ["--sensitivities=1"], "ignored explicit argument '1'"),
    (STEADY, "--newton-cg", ["--newton-cg=yes"], "ignored explicit argument 'yes'"),
    (STEADY, "--gd-steps", ["--gd-steps", "-1"], "--gd-steps: expected an integer >= 0, got '-1'"),
    (STEADY, "(parser)", ["--bogus"], "unrecognized arguments: --bogus"),
    (STEADY, "--grid", ["--grid", "0"], "--grid: expected an integer in [4, 2048], got '0'"),
    (STEADY, "--grid", ["--grid", "3"], "got '3'"),
    (STEADY, "--grid", ["--grid", "2049"], "got '2049'"),
    (STEADY, "--grid", ["--grid", "8.5"], "got '8.5'"),
    (STEADY, "--steps", ["--steps", "-1"], "--steps: expected an integer >= 0, got '-1'"),
    (STEADY, "--steps", ["--steps", "x"], "got 'x'"),
    (STEADY, "--noise", ["--noise", "-0.1"], "--noise: expected a finite number >= 0"),
    (STEADY, "--noise", ["--noise", "nan"], "got 'nan'"),
    (STEADY, "--noise", ["--noise", "inf"], "got 'inf'"),
    (STEADY, "--seed", ["--seed", "-1"], "--seed: expected an integer in [0, 4294967295]"),
    (STEADY, "--seed", ["--seed", "0.5"], "got '0.5'"),
    (STEADY, "--device", ["--device", "tpu"], "choose from 'cpu', 'gpu'"),
    (STEADY, "--out", ["--out", "fig.pdf"], "--out: expected a file path ending in .png"),
    (STEADY, "--out", ["--out", ""], "ending in .png, got ''"),
    (STEADY, "--out", ["--out", "{dir}.png"], "an existing directory"),
    (STEADY, "--out", ["--out", "{file}/fig.png"], "expected a file path that can be written"),
    (STEADY, "--out", ["--no-plot", "--out", "fig.png"], "--out has no effect with --no-plot"),
    (STEADY, "--no-plot", ["--no-plot=1"], "ignored explicit argument '1'"),
]


def _status(argv):
    try:
        return cli.main(argv)
    except SystemExit as done:
        return done.code


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Refuse any work (the demo's training, the example's fit), run in an empty directory
    with the path placeholders of ``BAD`` made, and yield a function that fills them in."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the bad input was rejected")

    monkeypatch.setattr(digits, "run", refuse)
    monkeypatch.setattr(steady_state, "run", refuse)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir.png").mkdir()
    (tmp_path / "blocked" / "metrics.json").mkdir(parents=True)
    paths = {"file": str(tmp_path / "a-file"), "dir": str(tmp_path / "a-dir"),
             "blocked": str(tmp_path / "blocked"), "new": str(tmp_path / "new" / "deeper")}
    return lambda argv: [a.format(**paths) for a in argv]


def _tree(root):
    return sorted((d, tuple(sorted(f))) for d, _, f in os.walk(root))


def _assert_one_line_error(status, out, err, expected=""):
    assert status == 2, (status, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err  # exactly one line
    assert ": error: " in err and expected in err, err


@pytest.mark.parametrize("command, option, argv, expected", BAD,
                         ids=[" ".join((*c, *a)) or "nothing" for c, _, a, _ in BAD])
def test_bad_input_is_one_line_and_status_2_before_any_work(no_work, capsys, tmp_path,
                                                            command, option, argv, expected):
    before = _tree(tmp_path)
    status = _status([*command, *no_work(argv)])
    out, err = capsys.readouterr()
    _assert_one_line_error(status, out, err, expected)
    assert _tree(tmp_path) == before  # no output directory or probe file left behind


def _parsers():
    """Every command's parser, keyed by the words that select it."""
    top = cli._parser()
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {(): top, **{(name,): p for name, p in commands.choices.items()}}
    parsers[DEMO] = digits.parser()  # cli's 'demo' entry only routes to the demo's parser
    for name, module in cli.EXAMPLES.items():
        parsers[("example", name)] = importlib.import_module(module).parser()
    return parsers


def test_every_option_of_every_command_has_a_bad_value():
    covered = {(command, option) for command, option, _, _ in BAD}
    for command, option, argv, _ in BAD:  # each entry exercises what it says it does
        if option.startswith("-"):
            assert any(a.split("=")[0] == option for a in argv), (command, option, argv)
    missing = []
    for command, parser in _parsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = action.metavar
            elif action.option_strings:
                name = max(action.option_strings, key=len)
            else:
                name = action.metavar or action.dest
            if (command, name) not in covered:
                missing.append(" ".join((*command, name)))
    assert not missing, f"options without a bad value in BAD: {missing}"


def test_no_command_prints_help_and_one_error_line(capsys):
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert "COMMAND" in out
    _assert_one_line_error(2, "", err, "a command is required")


@pytest.mark.parametrize("argv", [
    ["demo", "--seed", "-5"],
    ["example", "steady-state", "--grid", "0"],
])
def test_bad_input_from_the_shell_is_one_line(tmp_path, argv):
    done = subprocess.run([sys.executable, "-m", "npdeq", *argv], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    _assert_one_line_error(done.returncode, done.stdout, done.stderr, argv[-2])
    assert list(tmp_path.iterdir()) == []


def test_good_boundary_values_are_accepted(tmp_path):
    new = tmp_path / "new" / "deeper"
    args = digits.parser().parse_args([
        "--grad", "phantom", "--k", "1", "--tau", "1", "--jac-reg", "0", "--epochs", "1",
        "--batch-size", "1", "--lr", "1e-9", "--seed", "4294967295", "--train-size", "1437",
        "--f-solver", "broyden", "--out", str(new)])
    assert (args.k, args.tau, args.jac_reg, args.seed, args.train_size) == \
        (1, 1.0, 0.0, 4294967295, 1437)
    assert not (tmp_path / "new").exists()  # checked, not created: the demo writes it at the end
    assert digits.parser().parse_args(["--train-size", "10", "--seed", "0"]).train_size == 10
    args = steady_state.parser().parse_args(["--grid", "4", "--steps", "0", "--noise", "0",
                                             "--seed", "0", "--out", str(new / "f.PNG")])
    assert (args.grid, args.steps, args.noise, args.seed) == (4, 0, 0.0, 0)
    assert not (tmp_path / "new").exists()


def test_python_dash_m_npdeq():
    done = subprocess.run([sys.executable, "-m", "npdeq", "info"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("npdeq ")
