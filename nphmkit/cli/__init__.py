"""The ``nphmkit`` command (also ``python -m nphmkit``): ``reconstruct | track | mesh | synth | train | eval | export``;
``nphmkit -h`` lists them.

Each command lives in its own module with ``add_parser(sub, parents)`` and ``run(args) -> int``;
the shared conventions (flags, checks, one-line errors, exit codes) are in :mod:`nphmkit.cli._common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nphmkit.cli import evaluate, export, mesh, reconstruct, synth, track, train
from nphmkit.cli._common import CliError, CliFailure, common_flags, set_threads

COMMANDS = (reconstruct, track, mesh, synth, train, evaluate, export)

__all__ = ["CliError", "CliFailure", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nphmkit", description="nphmkit command-line tools (python -m nphmkit works too)",
        epilog="Errors are one line; exit status 2 for bad input, 1 for a runtime failure; --debug shows tracebacks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [common_flags()]
    for command in COMMANDS:
        command.add_parser(sub, parents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input or usage, 1 runtime failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"nphmkit {args.command}: error:"
    try:
        set_threads(args.threads)
        return args.run(args)
    except KeyboardInterrupt:
        print(f"{prefix} interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        status, message = _classify(err)
        print(f"{prefix} {message}", file=sys.stderr)
        return status


def _classify(err: Exception) -> tuple[int, str]:
    """Exit status and one-line message of an exception."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, CliError):
        return 2, text
    if isinstance(err, CliFailure):
        return 1, text
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        name = f" ({err.filename})" if getattr(err, "filename", None) and str(err.filename) not in text else ""
        return 2, f"{text}{name}"
    if isinstance(err, (ValueError, TypeError, KeyError, ImportError)):
        return 2, text
    if isinstance(err, OSError):
        return 1, f"{text} ({type(err).__name__})"
    return 1, f"{type(err).__name__}: {text} (run with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
