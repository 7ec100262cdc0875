"""Package-level promises: light import, packaging layout, docs that name real things."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["triton", "xformers", "trimesh", "pytorch3d", "PIL", "timm", "torchvision", "hypothesis", "skimage"]


def test_import_loads_no_optional_dependency():
    code = (
        "import sys, nphmkit, nphmkit.nphm, nphmkit.kernels; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout


def test_every_subpackage_is_packaged():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(meta["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nphmkit").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    assert "nphmkit.kernels" in listed
    assert meta["tool"]["setuptools"]["package-dir"]["nphmkit.kernels"] == "kernels"


def test_required_dependencies_are_only_the_core():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = {d.split(">")[0].split("=")[0].split("[")[0] for d in meta["project"]["dependencies"]}
    # scipy (k-d trees for nphmkit.eval) is named because nphmkit imports it; scikit-image already requires it
    assert names == {"torch", "numpy", "scikit-image", "scipy", "safetensors", "einops", "tqdm"}
    assert {"triton", "xformers", "mesh", "docs", "dev"} <= set(meta["project"]["optional-dependencies"])


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make demo" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
