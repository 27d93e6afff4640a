# PYTHON_ARGCOMPLETE_OK (the marker argcomplete looks for: `ofakd` answers tab completion)
"""The ``ofakd`` command: one subcommand per module in ``ofakd.commands``.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (a module of ``ofakd.commands`` without ``NAME``, such as ``cli_args``, is the commands' own). Bad input (:class:`ofakd.errors.OfakdError`, usage errors too) prints one
line and exits with status 2 (other statuses for stopped runs: see :mod:`ofakd.errors`);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands
from .commands.cli_args import TIMM_WITHOUT_EQUIVALENT, canonical_argv, suggest_flag
from .errors import EXIT_BAD_INPUT, EXIT_KILLED_BY_CTRL_C, OfakdError


class UsageError(OfakdError):
    """A command line argparse cannot parse (unknown option, missing value, bad choice)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``ofakd train: error: ...; see ofakd train --help``)
    raised as :class:`UsageError` instead of a usage block and ``SystemExit``. It never expands an
    abbreviated flag, and reads hyphens and underscores alike (:func:`canonical_argv`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(canonical_argv(self, args), namespace)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ofakd",
        description="Distil any image classifier into any other (CNN <-> ViT <-> MLP) with OFA-KD and baselines.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"ofakd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if not hasattr(module, "NAME"):
            continue
        command = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``ofakd ARGV``; returns the exit status (see :mod:`ofakd.errors`): bad input is one line on
    stderr and 2, a run stopped by a signal 75, a failed write 74, a non-finite loss 3."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()  # the commands' flags only: torch and timm load when a command runs
        _complete(parser)
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise UsageError(_unknown_options(parser, args, extra))
    except OfakdError as err:  # a usage error, or bad input found while parsing (e.g. --teacher-run)
        if "--debug" in argv:
            raise
        if isinstance(err, UsageError):
            print(one_line(err), file=sys.stderr)
        else:
            command = next((a for a in argv if not str(a).startswith("-")), "")
            print(f"ofakd {command}: {err.label}: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:  # Ctrl-C while starting: nothing was done yet
        if "--debug" in argv:
            raise
        print("ofakd: interrupted (Ctrl-C) while starting; nothing was done", file=sys.stderr)
        return EXIT_KILLED_BY_CTRL_C
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command's exit status; its errors as one line (``--debug``: the traceback)."""
    try:
        return int(args.run(args) or 0)
    except (OfakdError, OSError, KeyboardInterrupt) as err:
        if getattr(args, "debug", False):
            raise
        if isinstance(err, KeyboardInterrupt):
            line, code = "interrupted at once (a second Ctrl-C); nothing more was saved", EXIT_KILLED_BY_CTRL_C
        elif isinstance(err, OSError):  # a file error no command turned into a message of its own
            err = _file_error(err)
            line, code = f"{err.label}: {one_line(err)}", err.exit_code
        else:
            line, code = f"{err.label}: {one_line(err)}", err.exit_code
        print(f"ofakd {args.command}: {line}", file=sys.stderr)
        return code


def _file_error(err: OSError) -> OfakdError:
    """A disk that cannot take a file: the write error (74); any other file error: bad input (2)."""
    from .run_folder import WRITE_ERRNOS, write_error

    if err.errno in WRITE_ERRNOS:
        return write_error(err, err.filename or "a file")
    return OfakdError(f"{err.filename or 'a file'}: {err.strerror or err}")


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's tab completion and exit, when the shell asked (argcomplete, an optional extra:
    ``pip install -e '.[completion]'`` from a checkout, then ``eval "$(register-python-argcomplete ofakd)"``)."""
    import os

    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def one_line(err: BaseException) -> str:
    """The error's message on one line. An error re-raised from a DataLoader worker carries the worker's
    traceback in its text: its last line is the original message."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last
    return " ".join(text.split()) if "\n" in text else text


def _unknown_options(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> str:
    """``ofakd train: error: unknown option '--trian.lr' — did you mean '--train.lr'?; see ...``."""
    command = getattr(args, "command", None)
    sub = _subparser(parser, command)
    target = sub or parser
    flags = [f for f in extra if f.startswith("-")]
    if not flags:
        return f"{target.prog}: error: unexpected argument {extra[0]!r}; see `{target.prog} --help`"
    flag = flags[0].split("=", 1)[0]
    close = suggest_flag(flag, list(target._option_string_actions))
    hint = f" — did you mean {close!r}?" if close else ""
    if flag in TIMM_WITHOUT_EQUIVALENT:
        hint = " (a flag of timm's train.py that has no equivalent here)"
    return f"{target.prog}: error: unknown option {flag!r}{hint}; see `{target.prog} --help`"


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


if __name__ == "__main__":
    sys.exit(main())
