"""One browser tab of `ftwizard serve`: the process textual-serve starts for each websocket.

It runs the very App the terminal gets (`run_app`, or `run_monitor_app` with --attach), under
Textual's web driver (textual-serve sets TEXTUAL_DRIVER in its environment). Runs it launches are
started by core.launch like any other: detached, in a session of their own, so this process ending
(tab closed, idle, `serve` stopped or killed) never ends training.

If `serve` dies without saying quit (killed, crashed), this process's stdin ends: Textual's web driver
would then sit on, orphaned, with no one to talk to. `ServedDriver` quits the App instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textual import constants, messages
from textual.drivers.web_driver import WebDriver

WEB_DRIVER = "textual.drivers.web_driver:WebDriver"  # what textual-serve asks for


class ServedDriver(WebDriver):
    """Textual's web driver, quitting the App when its input ends before the App does."""

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # end of input, no quit message: the server is gone
            self._app.post_message(messages.ExitApp())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftwizard.tui.serve_session")
    parser.add_argument("--attach", metavar="RUN_DIR", help="show this run's monitor, not the wizard")
    parser.add_argument("--runs-dir", help="runs root (default ./runs or $FTWIZARD_RUNS_DIR)")
    args = parser.parse_args(argv)
    if args.attach:  # as run_monitor_app does
        from .screens.monitor import MonitorApp, MonitorScreen

        run_dir = Path(args.attach)
        app = MonitorApp(lambda: MonitorScreen(run_dir))
    else:  # as run_app does
        from .app import WizardApp

        app = WizardApp(runs_dir=args.runs_dir)
    if constants.DRIVER == WEB_DRIVER:  # under textual-serve (read by Textual when first imported)
        app.driver_class = ServedDriver
    return app.run() or 0


if __name__ == "__main__":
    sys.exit(main())
