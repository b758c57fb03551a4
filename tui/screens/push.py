"""Push a run to the Hugging Face Hub from the wizard: `core.push.plan_push` for the dry run (the files
and the model card, shown here), `core.push.push` after a typed y. The token comes from the environment
or the hub login and is never shown or written."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Checkbox, Input, Select, Static
from textual.worker import Worker, WorkerState

from ftwizard.tui import AFTER_CSS
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.screens.page import PageScreen

HELP = """
**Push** uploads the adapter, the merged model or the GGUF (the last two after an export) to the Hugging
Face Hub with a model card written from the run. ctrl+d shows what would be uploaded and the card;
ctrl+p uploads after you type y. The token comes from HF_TOKEN or `hf auth login`; it is never written.
"""

WHATS = ("adapter", "merged", "gguf")


class PushScreen(PageScreen):
    CSS_PATH = AFTER_CSS
    STEP_NAME = "Push"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc", id="push.back", tooltip="back to the run"),
        Binding("ctrl+d", "dry_run", "Dry run", key_display="^d", priority=True, id="push.dry-run",
                tooltip="list the files and show the model card, upload nothing"),
        Binding("ctrl+p", "push", "Push", key_display="^p", priority=True, id="push.push", tooltip="upload (asks first)"),
    ]

    def __init__(self, run_dir: str | Path):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.plan = None

    def compose(self) -> ComposeResult:
        yield Static(f"push · {self.run_dir.name}", classes="after-title")
        yield Static("type the repository (user/name), then ctrl+d for a dry run", id="push-status",
                     classes="after-line")
        with Horizontal(classes="after-options"):
            yield Input(placeholder="user/name", id="push-repo")
            yield Select([(w, w) for w in WHATS], prompt="default", allow_blank=True, id="push-what")
            yield Checkbox("private", True, id="push-private")
        with VerticalScroll(id="push-body", classes="after-body"):
            yield Static("", id="push-plan")
        yield Footer()

    def _options(self) -> tuple[str, str | None, bool]:
        what = self.query_one("#push-what", Select)
        return (self.query_one("#push-repo", Input).value.strip(), None if what.is_blank() else str(what.value),
                self.query_one("#push-private", Checkbox).value)

    def action_dry_run(self) -> None:
        repo, what, _ = self._options()
        self.make_plan(repo, what)

    @work(thread=True, exclusive=True, group="push-plan", exit_on_error=False)
    def make_plan(self, repo: str, what: str | None):
        from ftwizard.core.push import plan_push

        return plan_push(self.run_dir, repo, what)

    def action_push(self) -> None:
        repo, what, private = self._options()
        from ftwizard.tui.dialogs.confirm import ConfirmDialog

        def answer(yes: bool | None) -> None:
            if yes:
                self.upload(repo, what, private)

        self.app.push_screen(ConfirmDialog("Push", f"Upload this run to {repo or '?'} "
                                           f"({'private' if private else 'public'})?", yes_label="upload"), answer)

    @work(thread=True, exclusive=True, group="push", exit_on_error=False)
    def upload(self, repo: str, what: str | None, private: bool) -> str:
        from ftwizard.core.push import plan_push, push

        return push(plan_push(self.run_dir, repo, what), private=private)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        w = event.worker
        status = self.query_one("#push-status", Static)
        if event.state == WorkerState.ERROR:
            event.stop()
            from ftwizard.core.errors import UserError

            text = str(w.error) if isinstance(w.error, UserError) else f"{type(w.error).__name__}: {w.error}"
            status.update(f"[b]refused:[/b] {escape(text)}")
            status.add_class("-error")
            return
        if event.state != WorkerState.SUCCESS:
            return
        status.remove_class("-error")
        if w.group == "push-plan":
            from ftwizard.core.runs import fmt_bytes

            self.plan = plan = w.result
            total = sum(src.stat().st_size for src, _ in plan.files)
            lines = [f"would upload to {plan.repo}: {plan.what}, {len(plan.files) + 1} files, {fmt_bytes(total)}"]
            lines += [f"  {dest}  ({fmt_bytes(src.stat().st_size)})" for src, dest in plan.files]
            lines += ["  README.md  (the model card, below)", "", plan.card]
            self.query_one("#push-plan", Static).update(escape("\n".join(lines)))
            status.update("dry run: nothing uploaded · ctrl+p to upload")
            self.query_one("#push-body").focus()  # read the card with the arrow keys
        elif w.group == "push":
            status.update(f"pushed: {escape(str(w.result))}")

