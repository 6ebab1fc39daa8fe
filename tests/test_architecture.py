"""The layers are code: import-linter's contracts in pyproject.toml, checked on every test run; and the
package is whole: a wheel install carries the files the console and the browser page load."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "lint-imports is missing: install the test extras (./start.sh test does)"
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_wheel_install_has_the_console_themes_stylesheet_and_browser_page(tmp_path):
    """Built from a copy of what the wheel is made of, installed alone into a folder of its own, and
    imported from there (not from the repository): the files the console and the page load are in it."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("core", "vectra_tui", "vectra_cli", "themes"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("vectra-*.whl"))
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr[-3000:]
    found = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import core, themes, vectra_tui; from pathlib import Path\n"
         "files = [*themes.stylesheets(), Path(vectra_tui.__file__).parent / 'console.tcss',"
         " Path(core.__file__).parent / 'web' / 'index.html']\n"
         "assert all(f.is_file() and f.is_relative_to(sys.argv[1]) for f in files), files\n"
         "print(sorted(f.name for f in files))",
         str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert found.stdout.split() == ["['console.tcss',", "'dark.tcss',", "'index.html',", "'light.tcss']"]
