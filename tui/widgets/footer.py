"""Textual's Footer, rebuilt only when what it shows has changed.

The stock Footer recomposes (removes and mounts every key) each time its screen signals that bindings
may have changed: on every mount, focus move and `refresh_bindings()`. Most of those signals change
nothing it shows; at start-up there were five rebuilds before the first paint (a third of the time to
the first screen). This one draws the keys on its first compose, coalesces the signals of one refresh into a single check and rebuilds only
when the shown keys, labels or enabled states differ from the last build.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer as _TextualFooter


class Footer(_TextualFooter):
    _shown: tuple | None = None
    _check_pending = False

    def _signature(self) -> tuple:
        return tuple(
            (binding.key, binding.key_display, binding.description, binding.action, enabled, tooltip)
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show
        )

    def compose(self) -> ComposeResult:
        # The stock Footer draws nothing until the first "bindings changed" signal, then rebuilds. The
        # screen's and the app's bindings are known by now: draw them at once; the signal that follows
        # the first focus rebuilds only if focus brought keys of its own.
        self.set_reactive(_TextualFooter._bindings_ready, True)
        self._shown = self._signature()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._check_pending:
            self._check_pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._check_pending = False
        if self.is_attached and self._signature() != self._shown:
            await self.recompose()
