"""ftwizard's terminal UI (Textual). Nothing here is imported by `ftwizard.core`."""

from pathlib import Path

STYLES = Path(__file__).parent / "styles"
AFTER_CSS = STYLES / "after.tcss"  # the after-training screens (chat, compare, evaluate, export, push)
MONITOR_CSS = STYLES / "monitor.tcss"  # the monitor, finished and runs screens (loaded when first shown)
