"""Progress bars of long-running public functions: one rule for ``progress=`` everywhere.

``progress=None`` (the default everywhere): a bar when stderr is an interactive terminal, none
in logs, pipes and tests; the environment variable ``NPHMKIT_PROGRESS=1`` / ``0`` overrides
that. ``True`` / ``False`` force it. A bar appears only once the work has taken a second, so
quick calls stay quiet.
"""

from __future__ import annotations

import os
import sys


def show_progress(progress: bool | None) -> bool:
    """Resolve a ``progress=`` argument (see the module notes)."""
    if progress is not None:
        return bool(progress)
    env = os.environ.get("NPHMKIT_PROGRESS")
    if env is not None and env.strip():
        return env.strip().lower() not in ("0", "false", "no", "off")
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable=None, *, progress: bool | None, desc: str, total: int | None = None, unit: str = "it", **kwargs):
    """A tqdm bar over ``iterable`` (or a manual one with ``total``), shown per :func:`show_progress`."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not show_progress(progress), delay=1.0, **kwargs)
