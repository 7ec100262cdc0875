"""The README runs as written: every python and bash block, from the repository root on a fresh clone
(no `make demo` outputs needed). A block right after ``<!-- readme-test: skip (reason) -->`` is skipped
with that reason (the set-up itself, blocks that need the official weights)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(?:<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]*)\)\s*-->\s*)?```(?P<lang>python|bash)\n(?P<code>.*?)```",
                    re.S)


def _blocks():
    text = (ROOT / "README.md").read_text()
    return [(m.group("lang"), m.group("code"), m.group("why")) for m in _BLOCK.finditer(text)]


BLOCKS = _blocks()


def test_the_readme_has_runnable_blocks():
    runnable = [b for b in BLOCKS if b[2] is None]
    assert {lang for lang, _, _ in runnable} == {"python", "bash"}, BLOCKS


@pytest.mark.parametrize("lang, code, why", BLOCKS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BLOCKS)])
def test_readme_block_runs(lang, code, why):
    if why is not None:
        pytest.skip(why)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        if not (ROOT / ".venv" / "bin" / "activate").is_file():  # tests run from another environment
            code = code.replace(". .venv/bin/activate", ":")
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"README {lang} block failed:\n{code}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
