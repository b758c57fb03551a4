"""core is headless and light: every core module imports without textual, the TUI or an ML library, and
the CLI and the wizard start without one. Checked in a fresh interpreter (sys.modules), the way
harlequin does it. (tests/test_layers.py checks the same arrows statically with import-linter.)"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap

import ftwizard.core

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes")
UI = ("textual", "ftwizard.tui")


def core_modules() -> list[str]:
    """Every module of ftwizard.core, subpackages included (walked, not listed: a new one is covered)."""
    return sorted(m.name for m in pkgutil.walk_packages(ftwizard.core.__path__, "ftwizard.core."))


def loaded_after(code: str) -> set[str]:
    """Names in sys.modules after running `code` in a fresh interpreter: every module, plus each one's
    top-level package ("torch" for "torch.nn")."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json, sys
        names = set(sys.modules) | {m.split(".")[0] for m in sys.modules}
        print("MODULES=" + json.dumps(sorted(names)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("MODULES="))
    return set(json.loads(line[len("MODULES="):]))


def test_the_walk_finds_every_core_module():
    mods = core_modules()
    # a few from each level: the walk really goes into the subpackages
    for name in ("ftwizard.core.cli", "ftwizard.core.trainer", "ftwizard.core.commands.train",
                 "ftwizard.core.commands.attach", "ftwizard.core.data.stats", "ftwizard.core.guidance"):
        assert name in mods
    assert len(mods) > 40


def test_every_core_module_imports_no_textual_no_tui_and_no_ml_library():
    mods = core_modules()
    loaded = loaded_after("".join(f"import {m}\n" for m in mods))
    assert set(mods) <= loaded  # the check really imported them all
    assert not loaded & set(HEAVY + UI), sorted(loaded & set(HEAVY + UI))


def test_cli_parser_imports_no_textual_and_no_ml():
    """`ftwizard --help`: the console script's module and every command's arguments, nothing heavy."""
    mods = loaded_after("import ftwizard.tui.cli as cli; cli.build_parser()")
    assert "ftwizard.tui.commands.attach" in mods  # the UI commands' arguments were built too
    assert not mods & set(HEAVY + ("textual",)), mods & set(HEAVY + ("textual",))


def test_headless_cli_imports_no_tui():
    mods = loaded_after("import ftwizard.core.cli as cli; cli.build_parser()")
    assert not mods & set(HEAVY + UI), mods & set(HEAVY + UI)


def test_wizard_first_screen_imports_no_ml_library(tmp_path):
    """Start the real App headless, wait until the Welcome screen is mounted and hardware detected."""
    mods = loaded_after(f"""
        import asyncio, os
        os.chdir({str(tmp_path)!r})
        from ftwizard.tui.app import WizardApp

        async def main():
            app = WizardApp(runs_dir={str(tmp_path / "runs")!r})
            async with app.run_test(size=(80, 24)) as pilot:
                for _ in range(100):  # detection starts after the first paint
                    await app.workers.wait_for_complete()
                    await pilot.pause()
                    if app.state.hardware is not None:
                        break
                assert type(app.screen).__name__ == "WelcomeScreen", app.screen
                assert app.state.hardware is not None

        asyncio.run(main())
    """)
    assert "textual" in mods  # the check really ran the App
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_wizard_resumes_the_garbage_collector_after_its_first_paint():
    """`ftwizard` pauses GC while starting (tui.cli.pause_gc_for_startup); the App must resume it."""
    code = (
        "import gc, asyncio\n"
        "import ftwizard.tui.cli as cli\n"
        "cli.pause_gc_for_startup()\n"
        "from ftwizard.tui.app import WizardApp\n"
        "async def main():\n"
        "    app = WizardApp(detect_hardware=False)\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause()\n"
        "        print('ENABLED', gc.isenabled())\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "ENABLED True" in out.stdout, out.stdout + out.stderr
