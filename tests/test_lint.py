"""The checkout passes its linters: ruff (lint and import order), lint-imports (the layers of
``edgevad/``, no import cycles, no torch under the Detector) and mypy (types of ``edgevad/``).

Each tool reads its settings from ``pyproject.toml`` and runs as a subprocess on the repository,
as a developer would run it (docs/development.md); a finding fails the test with the tool's own
report. The tools come with the ``test`` extra; a test skips, naming the tool, only where it is
not installed. Caches go to a temporary folder, so the checkout stays clean.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(module: str, code: str, tmp_path: Path, *args: str, timeout: int = 600) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == 0, f"{module} found problems:\n{proc.stdout}\n{proc.stderr}"


def test_ruff(tmp_path):
    _run("ruff", "import sys; from ruff.__main__ import find_ruff_bin; import subprocess; "
         "sys.exit(subprocess.call([find_ruff_bin(), *sys.argv[1:]]))", tmp_path,
         "check", "--no-cache", ".")


def test_mypy(tmp_path):
    _run("mypy", "import sys; from mypy.main import main; main(args=sys.argv[1:])", tmp_path,
         "--cache-dir", str(tmp_path / "mypy"))


def test_import_contracts(tmp_path):
    _run("importlinter", "from importlinter.cli import lint_imports_command as c; "
         "c(prog_name='lint-imports')", tmp_path, "--no-cache")
