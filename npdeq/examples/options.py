"""Command-line option types shared by ``npdeq`` and its examples.

Every option is checked while it is parsed, before any work starts: a bad value ends the
command with **one line** on stderr (``PROG: error: argument --OPT: what was expected, got
what``) and exit status 2, never a traceback and never after a long run. The type functions
below are argparse ``type=`` callables: they return the converted value or raise
:class:`argparse.ArgumentTypeError` with a message that states the rule and the value.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from typing import Callable, NoReturn, Sequence

from npdeq.backend.checks import describe_range

__all__ = ["Parser", "HelpFormatter", "integer", "real", "SEED", "POSITIVE_INT",
           "NON_NEGATIVE_INT", "add_seed", "add_noise_and_seed", "output_dir", "output_file",
           "one_line_error"]

SEED_MAX = 2 ** 32 - 1  # scikit-learn's and NumPy's legacy seeding accept [0, 2**32 - 1]


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` that gives every option's default and every fixed set of values.

    An option's help gets ``(one of: a, b, c; default: a)`` appended: the choices unless its
    text already names them all, the default unless its text already mentions one (an option
    whose default is ``None`` must say in words what happens without it). A flag's default
    reads ``off``.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if text == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            return text
        notes = []
        choices = [str(c) for c in action.choices or ()]
        if choices and not all(c in text for c in choices):
            notes.append("one of: " + ", ".join(c.replace("%", "%%") for c in choices))
        if action.option_strings and "default" not in text and action.nargs != 0:
            if action.default not in (None, argparse.SUPPRESS):
                notes.append("default: %(default)s")
        elif action.option_strings and "default" not in text and \
                isinstance(action, argparse._StoreTrueAction):
            notes.append("default: off")
        return text + (f" ({'; '.join(notes)})" if notes else "")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2.

    argparse's own error prints the (multi-line) usage first; this one prints only
    ``PROG: error: MESSAGE (see PROG --help)``, and for an unknown option lists the valid
    ones. ``--help`` states every option's default and choices (:class:`HelpFormatter`).
    Abbreviated options are refused (``--epoch`` is not ``--epochs``), so a later
    option cannot silently change what an old command line means. Sub-command parsers
    made with ``add_subparsers`` are of this class too.

    Example:
        >>> p = Parser(prog="tool")
        >>> _ = p.add_argument("--n", type=POSITIVE_INT, default=1)
        >>> p.parse_args(["--n", "3"]).n
        3
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        """Print ``PROG: error: MESSAGE`` as one line on stderr and exit with status 2."""
        if message.startswith("unrecognized arguments"):
            options = sorted(o for action in self._actions for o in action.option_strings
                             if o.startswith("--"))
            message += f" (valid options: {', '.join(options)})"
        line = f"{self.prog}: error: {message} (see {self.prog} --help)"
        self.exit(2, _one_line(line) + "\n")


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _type(name: str, check: Callable[[str], object]) -> Callable[[str], object]:
    check.__name__ = name  # argparse names the type in some of its messages
    return check


def _fail(expected: str, text: str, detail: str = "") -> NoReturn:
    raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}"
                                     + (f" ({detail})" if detail else ""))


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a decimal integer in ``[low, high]`` (either bound may be open).

    Example:
        >>> integer(1)("3")
        3
        >>> integer(1)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected an integer >= 1, got '0'
    """
    expected = describe_range("an integer", low, high, fmt="d")

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            _fail(expected, text)
        if (low is not None and value < low) or (high is not None and value > high):
            _fail(expected, text)
        return value

    return _type("int", convert)  # type: ignore[return-value]


def real(low: float | None = None, high: float | None = None, *, low_open: bool = False,
         high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval from ``low`` to ``high``.

    NaN and infinities are refused whatever the bounds. ``low_open``/``high_open`` exclude
    the bound itself.

    Example:
        >>> real(0, 1, low_open=True)("0.8")
        0.8
        >>> real(0, 1, low_open=True)("nan")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a finite number in (0, 1], got 'nan'
    """
    expected = describe_range("a finite number", low, high, low_open, high_open)

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            _fail(expected, text)
        ok = math.isfinite(value)
        if low is not None:
            ok = ok and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and (value < high if high_open else value <= high)
        if not ok:
            _fail(expected, text)
        return value

    return _type("float", convert)  # type: ignore[return-value]


POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
SEED = integer(0, SEED_MAX)


def add_seed(parser: argparse.ArgumentParser, drawn: str) -> None:
    """Add ``--seed``: an integer in ``[0, SEED_MAX]``, default 0.

    Args:
        parser: the command's parser.
        drawn: what the seed draws, for the help (``'the sources and the noise'``).
    """
    parser.add_argument("--seed", type=SEED, default=0,
                        help=f"seed of {drawn}, in [0, {SEED_MAX}]")


def add_noise_and_seed(parser: argparse.ArgumentParser, noise: str, drawn: str) -> None:
    """Add the options of an example that fits a model to observations it simulates:
    ``--noise`` (a finite number >= 0, default 0.01) and ``--seed`` (:func:`add_seed`).

    Args:
        parser: the example's parser.
        noise: what ``--noise`` is, for the help (``'observation noise'``).
        drawn: what the seed draws, for the help.

    Example:
        >>> p = Parser(prog="fit")
        >>> add_noise_and_seed(p, "observation noise", "the data")
        >>> args = p.parse_args(["--seed", "3"])
        >>> args.noise, args.seed
        (0.01, 3)
    """
    parser.add_argument("--noise", type=real(0), default=0.01, help=f"{noise}, >= 0")
    add_seed(parser, drawn)


def _missing_parents(path: str) -> list[str]:
    """The components of ``path`` that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _probe(directory: str, file: str | None = None) -> None:
    """Create ``directory`` (and its missing parents), write a file in it, then remove all
    that was created. Raises what creating or writing raises (``OSError``, ``ValueError``)."""
    created = _missing_parents(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        if file is None:
            with tempfile.TemporaryFile(dir=directory):
                pass
        else:
            with open(file, "xb"):
                created.insert(0, file)
    finally:
        for path in created:  # deepest first
            try:
                (os.remove if path == file else os.rmdir)(path)
            except OSError:
                pass


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def output_dir(files: Sequence[str] = ()) -> Callable[[str], str]:
    """An argparse type: a directory that exists and is writable, or can be created.

    Checked by creating it (and its missing parents) and writing a file in it, then removing
    everything created, so a failed check leaves nothing behind. ``files`` are the names the
    command will write there: an existing one that is not a regular file (a directory) is
    refused too.

    Example:
        >>> output_dir()("")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a directory path, got ''
    """

    def convert(text: str) -> str:
        if not text or "\0" in text:
            _fail("a directory path", text)
        path = os.path.abspath(text)
        if os.path.lexists(path) and not os.path.isdir(path):
            _fail("a directory", text, "an existing file")
        for name in files:
            target = os.path.join(path, name)
            if os.path.lexists(target) and not os.path.isfile(target):
                _fail(f"a directory where {name} can be written", text,
                      f"{target} exists and is not a file")
        try:
            _probe(path)
        except (OSError, ValueError) as exc:
            _fail("a directory that can be created or written", text, _reason(exc))
        return text

    return _type("directory", convert)  # type: ignore[return-value]


def output_file(suffix: str) -> Callable[[str], str]:
    """An argparse type: a file path ending in ``suffix`` that can be written.

    Its directory must exist and be writable or be creatable (checked as in
    :func:`output_dir`); an existing file there is overwritten, an existing directory refused.

    Example:
        >>> output_file(".png")("figure.pdf")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a file path ending in .png, got 'figure.pdf'
    """

    def convert(text: str) -> str:
        if not text.lower().endswith(suffix) or "\0" in text or \
                os.path.basename(text).lower() == suffix:
            _fail(f"a file path ending in {suffix}", text)
        path = os.path.abspath(text)
        if os.path.lexists(path):
            if not os.path.isfile(path):
                _fail("a file path", text, "an existing directory or special file")
            if not os.access(path, os.W_OK):
                _fail("a writable file", text, "permission denied")
            return text
        try:
            _probe(os.path.dirname(path), path)
        except (OSError, ValueError) as exc:
            _fail("a file path that can be written", text, _reason(exc))
        return text

    return _type("file", convert)  # type: ignore[return-value]


def one_line_error(prog: str, message: str) -> int:
    """Print ``PROG: error: MESSAGE`` as one line on stderr; return the exit status 2.

    For failures found after parsing but before any work (a missing GPU or library).
    """
    print(_one_line(f"{prog}: error: {message}"), file=sys.stderr)
    return 2
