"""The CLI and the wizard start fast because they import no ML library on the way: checked in a fresh
interpreter (sys.modules), the way harlequin does it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes")


def loaded_after(code: str) -> set[str]:
    """Top-level module names in sys.modules after running `code` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json, sys
        print("MODULES=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("MODULES="))
    return set(json.loads(line[len("MODULES="):]))


def test_core_imports_no_textual_and_no_ml():
    mods = loaded_after("import ftwizard.core")
    assert not mods & set(HEAVY + ("textual",))


def test_cli_imports_no_textual_and_no_ml():
    mods = loaded_after("import ftwizard.core.cli; ftwizard.core.cli.build_parser()")
    assert not mods & set(HEAVY + ("textual",)), mods & set(HEAVY + ("textual",))


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
    """`ftwizard` pauses GC while starting (core.cli.pause_gc_for_startup); the App must resume it."""
    code = (
        "import gc, asyncio\n"
        "import ftwizard.core.cli as cli\n"
        "cli.pause_gc_for_startup()\n"
        "from ftwizard.tui.app import WizardApp\n"
        "async def main():\n"
        "    app = WizardApp(detect_hardware=False)\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause()\n"
        "        print('ENABLED', gc.isenabled())\n"
        "asyncio.run(main())\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "ENABLED True" in out.stdout, out.stdout + out.stderr
