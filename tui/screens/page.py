"""A page opened over the wizard (runs, the finished run, the after-training screens): `esc` goes back
while there is a screen below it, `F1` opens its help (titled by STEP_NAME, or HELP_TITLE), and quitting
is the app's (`handle_quit` False: nothing of the page's own to save or ask)."""

from __future__ import annotations

from textual.screen import Screen


class PageScreen(Screen):
    STEP_NAME = ""
    HELP_TITLE = ""   # the help's section when it is not STEP_NAME in lower case

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.dismiss()

    def action_help(self) -> None:
        from ftwizard.tui.dialogs.help import HelpDialog

        self.app.push_screen(HelpDialog.for_screen(self, self.HELP_TITLE or self.STEP_NAME.lower()))

    def handle_quit(self) -> bool:
        return False
