"""The option types shared by ``npdeq``'s commands: their rules, their messages, and the
output-path checks (which must leave nothing behind)."""

from __future__ import annotations

import argparse
import os
import tempfile

import pytest

from npdeq.examples import options, steady_state


@pytest.mark.parametrize("convert, good, bad", [
    (options.POSITIVE_INT, [("1", 1), ("+7", 7), (" 12 ", 12)], ["0", "-1", "1.0", "1e3", "x",
                                                                  "nan", ""]),
    (options.NON_NEGATIVE_INT, [("0", 0), ("5", 5)], ["-1", "0.5", "inf"]),
    (options.SEED, [("0", 0), ("4294967295", 2 ** 32 - 1)], ["-5", "4294967296", "1.5"]),
    (options.integer(4, 8), [("4", 4), ("8", 8)], ["3", "9"]),
    (options.real(0), [("0", 0.0), ("1e300", 1e300)], ["-1e-300", "nan", "inf", "-inf", "x"]),
    (options.real(0, low_open=True), [("1e-300", 1e-300)], ["0", "-0.0", "nan"]),
    (options.real(0, 1, low_open=True), [("1", 1.0), ("0.5", 0.5)], ["0", "1.0000001", "nan"]),
    (options.real(0, 1, high_open=True), [("0", 0.0)], ["1", "inf"]),
    (options.real(high=2), [("-3", -3.0)], ["2.5", "-inf", "nan"]),
])
def test_number_types_state_the_rule_and_the_value(convert, good, bad):
    for text, value in good:
        assert convert(text) == value and type(convert(text)) is type(value)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=r"^expected .+, got "
                                                             + repr(text).replace(".", r"\.")):
            convert(text)


def test_output_dir_accepts_existing_and_creatable_directories_and_leaves_no_trace(tmp_path):
    convert = options.output_dir(("metrics.json",))
    assert convert(str(tmp_path)) == str(tmp_path)
    (tmp_path / "metrics.json").write_text("{}")  # an existing output file is overwritten
    assert convert(str(tmp_path)) == str(tmp_path)
    deep = tmp_path / "a" / "b" / "c"
    assert convert(str(deep)) == str(deep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def _unwritable(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(os, "makedirs", refuse)
    real_open = open

    def no_new_files(file, mode="r", *args, **kwargs):
        if "x" in mode:
            refuse()
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_new_files)


def test_an_unwritable_place_is_refused(tmp_path, monkeypatch):
    _unwritable(monkeypatch)
    for convert, path in ((options.output_dir(), tmp_path),
                          (options.output_dir(), tmp_path / "new"),
                          (options.output_file(".png"), tmp_path / "fig.png")):
        with pytest.raises(argparse.ArgumentTypeError, match="Permission denied"):
            convert(str(path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="needs file permissions that apply (not root)")
def test_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for convert, path in ((options.output_dir(), locked), (options.output_dir(),
                                                                 locked / "sub"),
                              (options.output_file(".png"), locked / "fig.png")):
            with pytest.raises(argparse.ArgumentTypeError, match="expected"):
                convert(str(path))
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_output_file_rules(tmp_path):
    convert = options.output_file(".png")
    existing = tmp_path / "old.png"
    existing.write_bytes(b"x")
    assert convert(str(existing)) == str(existing) and existing.read_bytes() == b"x"
    assert convert(str(tmp_path / "new" / "fig.PNG")) == str(tmp_path / "new" / "fig.PNG")
    for bad in ("fig", "fig.pdf", ".png", str(tmp_path / ".png"), "a\0b.png"):
        with pytest.raises(argparse.ArgumentTypeError, match="ending in .png"):
            convert(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]


def test_the_steady_state_default_figure_path_is_checked_unless_no_plot(tmp_path, monkeypatch,
                                                                        capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(steady_state, "run", refuse)
    monkeypatch.chdir(tmp_path)
    (tmp_path / steady_state.DEFAULT_FIGURE).mkdir()  # the default path is taken
    with pytest.raises(SystemExit) as done:
        steady_state.main(["--steps", "1"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --out (default)" in err
    with pytest.raises(AssertionError, match="work started"):  # --no-plot: not needed
        steady_state.main(["--steps", "1", "--no-plot"])


def test_parser_errors_are_one_line_even_for_a_multi_line_message(capsys):
    p = options.Parser(prog="tool")
    with pytest.raises(SystemExit) as done:
        p.error("first\nsecond")
    assert done.value.code == 2
    assert capsys.readouterr().err == "tool: error: first second (see tool --help)\n"
