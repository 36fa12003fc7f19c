"""The test command keeps the code clean: ruff, mypy and import-linter on the package, like CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = _run("mypy", "chorus", "plugins/chorus-mathematician/src", "plugins/chorus-music-store/src",
                   "plugins/chorus-builder/src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layers_point_one_way() -> None:
    """import-linter's contracts (.importlinter): web and CLI > turn > teams > services > plugin
    API > core, and no import cycle inside a package."""
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
