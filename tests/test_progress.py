"""One rule for ``progress=``: None follows NPHMKIT_PROGRESS, else whether stderr is a terminal."""

from __future__ import annotations

import io
import sys

import pytest

from nphmkit._progress import progress_bar, show_progress


@pytest.mark.parametrize("env, expected", [("1", True), ("yes", True), ("0", False), ("off", False)])
def test_environment_decides_the_default(monkeypatch, env, expected):
    monkeypatch.setenv("NPHMKIT_PROGRESS", env)
    assert show_progress(None) is expected
    assert show_progress(True) is True and show_progress(False) is False  # explicit always wins


def test_default_follows_the_terminal(monkeypatch):
    monkeypatch.delenv("NPHMKIT_PROGRESS", raising=False)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert show_progress(None) is False
    monkeypatch.setattr(sys, "stderr", Tty())
    assert show_progress(None) is True


def test_bar_counts_and_is_silent_when_off(capsys):
    assert list(progress_bar(range(5), progress=False, desc="x")) == list(range(5))
    assert capsys.readouterr().err == ""
