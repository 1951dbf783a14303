"""What ``npdeq demo`` shows: progress bars only on a real terminal, one line per epoch
always, the running accuracy of the bar, ``--help`` with every default and choice, and a
figure with whole-epoch ticks and a readable loss axis."""

from __future__ import annotations

import argparse
import importlib
import io
import math
import os
import sys

import pytest

pytest.importorskip("sklearn")
termios = pytest.importorskip("termios")  # pseudo-terminals: POSIX only

import fcntl  # noqa: E402
import pty  # noqa: E402
import struct  # noqa: E402

from npdeq import cli  # noqa: E402
from npdeq.examples import digits  # noqa: E402
from npdeq.examples.digits import report, training  # noqa: E402

from test_demo import BAR_MARKS, EPOCH_LINE, _assert_last_line_names_the_files, \
    _assert_plain_lines  # noqa: E402

SMALL = ["--epochs", "1", "--train-size", "40", "--batch-size", "10"]


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal: ``fileno()`` is a pseudo-terminal's, whose
    size the test sets (a new one reports 0 columns), and the text is kept for the test."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd


@pytest.fixture
def no_figure(monkeypatch):
    """The figure is not what these tests look at, and drawing it takes seconds: an empty
    file stands in for it."""
    def write(history, path, title=""):
        open(path, "wb").close()
        return True

    monkeypatch.setattr(report, "write_figure", write)


@pytest.fixture
def terminal(monkeypatch):
    """Make stdout and stderr terminals of the given width; return ``(stdout, stderr)``."""
    opened = []

    def make(columns: int):
        master, slave = pty.openpty()
        opened.extend((master, slave))
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        out, err = _Terminal(slave), _Terminal(slave)
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        return out, err

    yield make
    for fd in opened:
        os.close(fd)


def test_the_width_of_streams_that_are_not_terminals_is_zero(terminal, tmp_path):
    with open(tmp_path / "log", "w") as handle:
        assert training.terminal_width(handle) == 0
    assert training.terminal_width(io.StringIO()) == 0
    out, _ = terminal(0)
    assert training.terminal_width(out) == 0
    out, _ = terminal(93)
    assert training.terminal_width(out) == 93


def test_a_terminal_of_zero_columns_gets_lines_not_bars(terminal, tmp_path, no_figure):
    out, err = terminal(0)
    assert digits.main([*SMALL, "--out", str(tmp_path)]) == 0
    _assert_plain_lines(out.getvalue(), err.getvalue())
    _assert_last_line_names_the_files(out.getvalue(), tmp_path)


def test_a_terminal_gets_a_bar_with_the_running_accuracy_and_the_lines(terminal, tmp_path,
                                                                       monkeypatch, no_figure):
    tqdm = pytest.importorskip("tqdm")
    postfixes = []

    class Recording(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            # Redraw at every update: a fast run would otherwise never show a postfix.
            super().__init__(*args, **{**kwargs, "mininterval": 0})

        def set_postfix(self, *args, **kwargs):
            postfixes.append((self.n, kwargs))  # self.n: batches done before this one
            super().set_postfix(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    out, err = terminal(80)
    assert digits.main([*SMALL, "--out", str(tmp_path)]) == 0
    assert "epoch 1/1" in err.getvalue() and "acc=" in err.getvalue()  # the bar, on stderr
    lines = [line for line in out.getvalue().splitlines() if line.startswith("epoch ")]
    assert len(lines) == 1 and EPOCH_LINE.match(lines[0]), lines  # the line, on stdout
    assert not any(mark in out.getvalue() for mark in BAR_MARKS)
    # The bar's accuracy is over the samples seen so far (10 per batch), not over the epoch.
    assert len(postfixes) == 4
    for done, postfix in postfixes:
        correct = float(postfix["acc"]) * 10 * (done + 1)
        assert abs(correct - round(correct)) < 0.01, postfixes
    final = float(lines[0].split("train accuracy ")[1].split(",")[0])
    assert float(postfixes[-1][1]["acc"]) == pytest.approx(final, abs=1e-3)


def test_no_progress_means_no_bar_even_on_a_terminal(terminal, monkeypatch):
    terminal(80)
    assert training._progress(True, 3, "x") is not None or \
        importlib.util.find_spec("tqdm") is None
    assert training._progress(False, 3, "x") is None


def _parsers():
    top = cli._parser()
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    found = {"npdeq": top, **{f"npdeq {name}": p for name, p in commands.choices.items()}}
    found["npdeq demo"] = digits.parser()
    for name, module in cli.EXAMPLES.items():
        found[f"npdeq example {name}"] = importlib.import_module(module).parser()
    return found


def _help(argv, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["npdeq", "npdeq demo", "npdeq info", "npdeq example",
                                     "npdeq example steady-state"])
def test_help_gives_every_default_and_every_choice(command, capsys):
    parser = _parsers()[command]
    text = "".join(_help(command.split()[1:], capsys).split())  # wrapping aside
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):  # a line per command
            assert all(name in text for name in action.choices), (command, text)
            continue
        described = formatter._expand_help(action) if action.help else ""
        assert "".join(described.split()) in text, (command, described)
        for choice in action.choices or ():
            assert str(choice) in described, (command, action.dest, choice)
        if action.option_strings:
            assert "default" in described, (command, action.dest, described)
        if action.option_strings and action.default not in (None, False):
            assert f"default: {action.default}" in described, (command, described)


def test_the_forward_solver_help_lists_the_solvers(capsys):
    text = " ".join(_help(["demo"], capsys).split())
    choices = next(a for a in digits.parser()._actions if a.dest == "f_solver").choices
    assert "anderson" in choices and "broyden" in choices
    assert f"forward solver (one of: {', '.join(choices)}; default: anderson)" in text


def test_the_loss_axis_is_log_only_across_a_decade():
    assert report.loss_scale([2.3, 0.9, 0.5]) == "linear"
    assert report.loss_scale([2.3, 0.2]) == "log"
    assert report.loss_scale([0.5]) == "linear"
    assert report.loss_scale([math.nan, 1.0, 0.0]) == "linear"


def test_the_figure_has_whole_epochs_and_labelled_axes():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    history = training.History(train_loss=[2.0, 0.7, 0.5], train_accuracy=[0.3, 0.8, 0.9],
                                test_accuracy=[0.4, 0.8, 0.85])
    fig = report.figure(history, "title")
    try:
        loss, accuracy, residual = fig.axes
        assert loss.get_yscale() == "linear" and loss.get_ylim()[0] == 0
        for axis in (loss, accuracy):
            ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            assert axis.get_xlabel() == "epoch" and axis.get_ylabel()
        assert residual.get_xlabel() and residual.get_ylabel()
        assert accuracy.get_ylim()[0] <= 0.3 and accuracy.get_ylim()[1] >= 1
    finally:
        plt.close(fig)
    history = training.History(train_loss=[2.0, 0.1, 0.01], train_accuracy=[0.8, 0.99, 1.0],
                               test_accuracy=[0.85, 0.97, 0.98])
    fig = report.figure(history)
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[1].get_ylim()[0] == pytest.approx(0.7)  # not from 0: the curves are apart
    plt.close(fig)
