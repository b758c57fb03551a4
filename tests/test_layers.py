"""The layers in pyproject.toml ([tool.importlinter]) hold, and the contracts really catch a crossing.

`lint-imports` reads every import statement of ftwizard.core and ftwizard.tui, those inside functions
included. The second half runs the same config on a copy of the code with one wrong import added, so
a contract that no longer matched anything (a renamed package, a typo) would fail here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(cwd: Path, *args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:  # ahead of the installed (editable) ftwizard
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([LINT, "--no-cache", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_lint_imports_passes_on_the_code():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout


def copy_of_the_code(tmp_path: Path) -> Path:
    """core/ and tui/ laid out as the installed `ftwizard.core` / `ftwizard.tui`, plus pyproject.toml."""
    (tmp_path / "ftwizard").mkdir()
    for part in ("core", "tui"):
        shutil.copytree(ROOT / part, tmp_path / "ftwizard" / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_a_core_module_importing_textual_breaks_the_headless_contract(tmp_path):
    code = copy_of_the_code(tmp_path)
    clean = lint(code, "--contract", "core-headless", pythonpath=code)
    assert clean.returncode == 0, clean.stdout[-3000:]  # the copy itself is fine: the line below breaks it
    add_line(code / "ftwizard" / "core" / "guidance.py", "import textual")
    out = lint(code, "--contract", "core-headless", pythonpath=code)
    assert out.returncode != 0
    assert "ftwizard.core.guidance -> textual" in out.stdout, out.stdout[-3000:]


def test_a_core_module_importing_the_tui_breaks_the_headless_contract(tmp_path):
    code = copy_of_the_code(tmp_path)
    add_line(code / "ftwizard" / "core" / "commands" / "attach.py",
             "def _ui():\n    from ftwizard.tui.screens.monitor import run_monitor_app")  # lazy: still caught
    out = lint(code, "--contract", "core-headless", pythonpath=code)
    assert out.returncode != 0
    assert "ftwizard.core.commands.attach -> ftwizard.tui.screens.monitor" in out.stdout, out.stdout[-3000:]


def test_an_upward_import_in_core_data_breaks_its_layers(tmp_path):
    code = copy_of_the_code(tmp_path)
    add_line(code / "ftwizard" / "core" / "data" / "formats.py", "from . import prepare")
    out = lint(code, "--contract", "data-layers", pythonpath=code)
    assert out.returncode != 0
    assert "ftwizard.core.data.formats is not allowed to import ftwizard.core.data.prepare" in out.stdout, \
        out.stdout[-3000:]


def test_a_screen_importing_the_entry_point_breaks_the_tui_layers(tmp_path):
    code = copy_of_the_code(tmp_path)
    add_line(code / "ftwizard" / "tui" / "screens" / "hardware.py", "from ftwizard.tui import cli")
    out = lint(code, "--contract", "tui-layers", pythonpath=code)
    assert out.returncode != 0
    assert "ftwizard.tui.screens is not allowed to import ftwizard.tui.cli" in out.stdout, out.stdout[-3000:]
