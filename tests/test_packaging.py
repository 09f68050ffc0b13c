"""The wheel carries every package under its clash-free import name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _declared_packages() -> list[str]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_source_folder_is_a_declared_package():
    mapping = {"edgevad": REPO / "edgevad", "edgevad_export": REPO / "export",
               "edgevad_calibration": REPO / "calibration"}
    found = set()
    for name, root in mapping.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            found.add(".".join((name, *rel)))
    assert found == set(_declared_packages())


def test_built_wheel_contains_every_package(tmp_path):
    pytest.importorskip("setuptools")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("edgevad-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for package in _declared_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert not any(n.startswith(("export/", "calibration/")) for n in names)
