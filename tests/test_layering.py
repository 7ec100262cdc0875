"""Imports point down (DESIGN.md section 2): checked on the source, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports anywhere in its body (relative imports resolved against ``package``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from nphmkit import nphm`
    return found


def _package_imports(folder: Path, package: str) -> dict[str, set[str]]:
    out = {}
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        module_pkg = ".".join([package, *parts[:-1]]) if path.name != "__init__.py" else ".".join([package, *parts])
        out[str(path.relative_to(ROOT))] = _imports(path, module_pkg)
    return out


def _offenders(table: dict[str, set[str]], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{f}: {m}" for f, mods in table.items() for m in sorted(mods)
            if any(m == x or m.startswith(x + ".") for x in forbidden)]


def test_kernels_never_import_the_decoder():
    table = _package_imports(ROOT / "kernels", "nphmkit.kernels")
    assert len(table) >= 10
    assert not _offenders(table, ("nphmkit.nphm",)), _offenders(table, ("nphmkit.nphm",))


@pytest.mark.parametrize("part", ["render", "mesh", "losses"])
def test_render_mesh_and_losses_import_neither_the_decoder_nor_fitting(part):
    table = _package_imports(ROOT / "nphmkit" / part, f"nphmkit.{part}")
    bad = _offenders(table, ("nphmkit.nphm", "nphmkit.fitting"))
    assert not bad, bad


def test_fitting_is_written_against_the_protocols():
    table = _package_imports(ROOT / "nphmkit" / "fitting", "nphmkit.fitting")
    bad = _offenders(table, ("nphmkit.nphm", "nphmkit.data"))
    assert not bad, bad


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    (tmp_path / "mod.py").write_text("def f():\n    from ..nphm import model\n    from nphmkit import nphm\n")
    found = _imports(tmp_path / "mod.py", "nphmkit.kernels")
    assert {"nphmkit.nphm", "nphmkit.nphm.model"} <= found
