"""What every ``nphmkit`` command shares: flags, input and output checks, threads, provenance.

Conventions (docs/contracts.md "Command line"): errors are one line ``nphmkit <command>: error: ...``
naming the input; exit status 2 for bad input or usage, 1 for a runtime failure; no traceback
unless ``--debug``; everything a command needs is checked before its expensive work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


class CliError(Exception):
    """Bad input or usage, reported in one line (exit status 2)."""


class CliFailure(Exception):
    """A runtime failure, reported in one line (exit status 1)."""


def common_flags() -> argparse.ArgumentParser:
    """The flags every command takes (a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    parent.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parent.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: all cores torch sees; see docs 'Performance tips')")
    return parent


def set_threads(threads: int | None) -> int:
    """Apply ``--threads`` (None: torch's default); returns the thread count in use."""
    import torch

    if threads is not None:
        if threads < 1:
            raise CliError(f"--threads: expected at least 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def say(args: argparse.Namespace, message: str) -> None:
    """A stage message on stderr (silent with ``--quiet``)."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def progress(args: argparse.Namespace) -> bool | None:
    """The ``progress=`` of library calls: off with ``--quiet``, else on an interactive terminal."""
    return False if getattr(args, "quiet", False) else None


def input_file(flag: str, path: str | os.PathLike) -> Path:
    """An existing, readable file (else :class:`CliError` naming ``flag``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"{flag}: no such file: {p}")
    if not p.is_file():
        raise CliError(f"{flag}: expected a file, got a folder: {p}")
    if not os.access(p, os.R_OK):
        raise CliError(f"{flag}: not readable: {p}")
    return p


def input_path(flag: str, path: str | os.PathLike) -> Path:
    """An existing, readable file or folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"{flag}: no such file or folder: {p}")
    if not os.access(p, os.R_OK):
        raise CliError(f"{flag}: not readable: {p}")
    return p


def output_folder(args: argparse.Namespace, flag: str, path: str | os.PathLike) -> Path:
    """A folder to write into: created (and said so) if missing; refused if a file or not writable."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag}: {p} exists and is not a folder")
    if not p.exists():
        existing = next(a for a in [p, *p.parents] if a.exists())
        if not existing.is_dir():
            raise CliError(f"{flag}: cannot create {p}: {existing} is a file")
        if not os.access(existing, os.W_OK):
            raise CliError(f"{flag}: cannot create {p}: {existing} is not writable")
        p.mkdir(parents=True)
        say(args, f"created folder {p}")
    if not os.access(p, os.W_OK):
        raise CliError(f"{flag}: folder {p} is not writable")
    return p


def output_file(args: argparse.Namespace, flag: str, path: str | os.PathLike, suffixes: tuple[str, ...]) -> Path:
    """A file to write: its suffix one of ``suffixes``, its folder writable (created if missing)."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in suffixes:
        raise CliError(f"{flag}: expected a file name ending in {', '.join(suffixes)}, got {p.name!r}")
    if p.is_dir():
        raise CliError(f"{flag}: {p} is a folder; expected a file name")
    output_folder(args, flag, p.parent if str(p.parent) else Path("."))
    if p.exists() and not os.access(p, os.W_OK):
        raise CliError(f"{flag}: {p} exists and is not writable")
    return p


def int_in_range(flag: str, value: int, low: int, high: int, why: str = "") -> int:
    if not low <= value <= high:
        raise CliError(f"{flag}: expected {low} to {high}{why}, got {value}")
    return value


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_provenance(path: str | os.PathLike, args: argparse.Namespace, weights: dict, extra: dict | None = None) -> Path:
    """Write ``path`` (JSON, atomically): nphmkit version, command, arguments, weights and their sha256."""
    import torch

    from nphmkit import __version__
    from nphmkit._io import write_text

    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("run",)}
    record = {
        "nphmkit": __version__,
        "torch": torch.__version__,
        "command": args.command,
        "arguments": arguments,
        "weights": weights,
        "threads": torch.get_num_threads(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    write_text(path, json.dumps(record, indent=1) + "\n")
    return Path(path)
