"""README.md's code runs as written.

Every ```python block runs on its own (a fresh namespace, in an empty working directory) and
writes no file there unless a comment of the block says so with ``writes NAME``: then exactly
the named files must appear. Every ```bash command names something that exists (the
``npdeq`` command and options that parse, a pip extra of pyproject.toml, pytest markers); pip
is never run. Options written inline (```npdeq demo --model conv``, ```--grad phantom```) are
options of ``npdeq demo`` with valid values.
"""

from __future__ import annotations

import argparse
import re
import shlex
import warnings
from pathlib import Path

import pytest

from npdeq import cli

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
WRITES = re.compile(r"#.*\bwrites ([\w./-]+\w)")


def _blocks(language):
    """``(line number, code)`` of every fenced block in ``language``."""
    return [(TEXT.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(TEXT)
            if m.group(1) == language]


PYTHON = _blocks("python")
BASH = _blocks("bash")


def test_the_readme_has_code_blocks_of_known_languages():
    assert len(PYTHON) >= 5 and len(BASH) >= 1
    assert {m.group(1) for m in FENCE.finditer(TEXT)} <= {"python", "bash"}


def _files(root):
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("line, code", PYTHON, ids=[f"line{n}" for n, _ in PYTHON])
def test_python_block_runs_on_its_own_and_writes_only_what_it_says(line, code, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():  # a block may set warning filters: they stay in it
        exec(compile(code, f"README.md, block at line {line}", "exec"), {"__name__": "__main__"})
    assert _files(tmp_path) == set(WRITES.findall(code)), \
        "a README block writes files into the current directory without saying so " \
        "('# writes NAME')"


def _pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _commands():
    """Every command of every bash block, as argument lists (comments dropped)."""
    found = []
    for line, code in BASH:
        for text in code.splitlines():
            words = shlex.split(text, comments=True)
            while words:  # "a && b"
                cut = words.index("&&") if "&&" in words else len(words)
                found.append((line, words[:cut]))
                words = words[cut + 1:]
    return found


def _check_npdeq(argv, tmp_path, monkeypatch):
    from npdeq.examples import digits

    monkeypatch.chdir(tmp_path)  # --out's check creates and removes its directory
    if argv[:1] == ["demo"]:
        digits.parser().parse_args(argv[1:])
    else:
        cli._parser().parse_args(argv)


def _check_pytest(argv):
    markers = {m.split(":")[0] for m in _pyproject()["tool"]["pytest"]["ini_options"]["markers"]}
    for flag, value in zip(argv, argv[1:]):
        if flag == "-m":
            named = set(re.findall(r"\w+", value)) - {"not", "and", "or"}
            assert named <= markers, (value, markers)


def test_every_shell_command_names_what_exists(tmp_path, monkeypatch):
    project = _pyproject()["project"]
    commands = _commands()
    assert commands
    for line, words in commands:
        if words[:3] == ["python", "-m", "pip"]:
            for extra in re.findall(r"\.\[([\w,-]+)\]", " ".join(words)):
                assert set(extra.split(",")) <= set(project["optional-dependencies"]), line
        elif words[:1] == ["npdeq"]:
            assert "npdeq" in project["scripts"]
            _check_npdeq(words[1:], tmp_path, monkeypatch)
        elif words[:3] == ["python", "-m", "pytest"]:
            _check_pytest(words[3:])
        else:
            pytest.fail(f"README.md line {line}: a command this test does not know: {words}")
    assert list(tmp_path.iterdir()) == []


def _inline_demo_options():
    """Inline code spans that are ``npdeq demo ...`` or start with a demo option."""
    prose = FENCE.sub("", TEXT)
    spans = [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose)]  # across lines too
    return [s.split()[2:] if s.startswith("npdeq demo") else s.split() for s in spans
            if s.startswith("npdeq demo") or re.match(r"--[a-z]", s)]


def test_every_demo_option_the_text_names_exists_with_a_valid_value():
    from npdeq.examples import digits

    actions = {o: a for a in digits.parser()._actions for o in a.option_strings}
    spans = _inline_demo_options()
    assert len(spans) >= 10
    for words in spans:
        for option, value in zip(words, [*words[1:], None]):
            if not option.startswith("--"):
                continue
            assert option in actions, (option, words)
            action = actions[option]
            if value is None or value.startswith("--") or value.isupper():
                continue  # no value given, or a placeholder (WEIGHT, DIR, S)
            if action.choices is not None:
                assert value in action.choices, (option, value)
            elif action.type is not None and action.nargs != 0:
                try:
                    action.type(value)
                except argparse.ArgumentTypeError as exc:
                    pytest.fail(f"{option} {value}: {exc}")
