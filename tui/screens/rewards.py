"""GRPO's rewards step (only in the GRPO flow, tui/steps.py): tick the built-in rewards (core/rewards.py:
exact match against a column, a numeric answer within a tolerance, a format such as think/answer,
JSON-valid, a length penalty), name your own `FILE.py:FUNCTION`, give each a weight. The code reward
runs completions as programs, so it is never offered as a tick box: it is used only when you type
`code` among your own.

Before Next, every reward is loaded and called on a real row of the dataset with two sample completions
(core.preflight.check_prompt_rows, the same check `ftwizard train` makes before a run exists): an
import error, a wrong signature, a missing column or a wrong-length result shows here, and Next stays
blocked until it passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Static
from textual.worker import get_current_worker

from ftwizard.core.rewards import BUILTINS, DESCRIPTIONS

from ..state import WizardState
from .step import WizardStep

HELP = """
# Rewards (GRPO)

GRPO samples several answers to each prompt, scores each with the reward functions ticked here, and
moves the model towards the answers that scored above their group's average. The score of an answer
is the sum of the rewards, each times its weight.

- `exact_match`: 1.0 when the answer (the text inside `<answer>...</answer>`, else the whole text)
  equals the row's answer column.
- `numeric_match`: 1.0 when the answer's last number is within the tolerance of the column's.
- `format`: 1.0 when the whole completion matches the format pattern (default: a `<think>` block then
  an `<answer>` block).
- `json_valid`: 1.0 when the answer parses as JSON.
- `length_penalty`: minus the completion's length over the longest allowed: shorter is better.
- Your own: `FILE.py:FUNCTION` with TRL's signature `f(prompts, completions, **columns)` returning one
  float per completion; the dataset's other columns arrive as keyword arguments. Several are
  separated by commas and share the weight beside them.
- `code` (typed among your own, never ticked by default): runs the completion's Python against the
  row's tests column in a separate, limited process (time, memory, no new processes, no network
  where the OS allows) and scores 1.0 when the tests pass.

Every reward is loaded and called on the dataset's first row before Next: errors show below.
`tab` moves between the fields, `space` ticks a box.
"""

# The built-ins offered as tick boxes: `code` only when typed (it runs completions as programs).
TICKABLE = tuple(b for b in BUILTINS if b != "code")


@dataclass
class RewardsChecked(Message):
    """The result of checking `grpo` (a GrpoConfig) on a real row: `error` empty when it passed."""
    grpo: Any
    columns: tuple[str, ...] = ()
    error: str = ""


def _absolute(ref: str) -> str:
    """A user's FILE.py:FUNCTION with FILE made absolute (relative to where the wizard runs); built-ins
    as they are. The saved config then works from any folder."""
    from ftwizard.core.config import _resolve_reward

    return _resolve_reward(ref, Path.cwd())


def _weight(text: str) -> float:
    return float(text.strip())


class RewardRow(Horizontal):
    """[x] name · weight · what it scores."""

    def __init__(self, name: str, ticked: bool, weight: float):
        super().__init__(classes="rw-row", id=f"rw-row-{name}")
        self.reward, self._ticked, self._weight = name, ticked, weight

    def compose(self) -> ComposeResult:
        yield Checkbox(self.reward, self._ticked, id=f"rw-{self.reward}", compact=True, classes="rw-check")
        yield Label("weight", classes="rw-label")
        yield Input(f"{self._weight:g}", id=f"rw-weight-{self.reward}", compact=True, type="number",
                    classes="rw-weight")
        yield Static(DESCRIPTIONS[self.reward], classes="rw-help")


class RewardsScreen(WizardStep):
    NAME = "rewards"
    HELP = HELP

    def compose_body(self) -> ComposeResult:
        g = self.state.kind_section("grpo")
        weights = dict(zip(g.rewards, g.reward_weights or [1.0] * len(g.rewards)))
        own = [r for r in g.rewards if r not in TICKABLE]
        with VerticalScroll(id="rw-form", classes="box") as box:
            box.border_title = "Reward functions: the ticked ones are summed, each times its weight"
            for name in TICKABLE:
                yield RewardRow(name, name in g.rewards, weights.get(name, 1.0))
            with Horizontal(classes="rw-row"):
                yield Label("your own", classes="rw-own-label")
                yield Input(", ".join(own), id="rw-own", compact=True,
                            placeholder="FILE.py:FUNCTION (or code)", classes="rw-own")
                yield Label("weight", classes="rw-label")
                yield Input(f"{weights.get(own[0], 1.0) if own else 1.0:g}", id="rw-weight-own", compact=True,
                            type="number", classes="rw-weight")
            with Horizontal(classes="rw-row"):
                yield Label("answer column", classes="rw-own-label")
                yield Input(g.answer_column, id="rw-answer_column", compact=True, classes="rw-param")
                yield Label("tolerance", classes="rw-label")
                yield Input(f"{g.tolerance:g}", id="rw-tolerance", compact=True, type="number", classes="rw-weight")
            with Horizontal(classes="rw-row"):
                yield Label("format pattern", classes="rw-own-label")
                yield Input(g.format_pattern, id="rw-format_pattern", compact=True, classes="rw-own")
            with Horizontal(classes="rw-row"):
                yield Label("tests column", classes="rw-own-label")
                yield Input(g.tests_column, id="rw-tests_column", compact=True, classes="rw-param")
                yield Static("code only: the tests its code must pass", classes="rw-help")
        with Vertical(id="rw-check-box", classes="box") as box:
            box.border_title = "checked on a real row"
            yield Static("", id="rw-check")

    def on_mount(self) -> None:
        self._grpo = None          # the GrpoConfig the form describes, when it is valid
        self._problem = ""         # why the form is not valid (before any check)
        self._checked = None       # the GrpoConfig that passed the check on a row
        self._check_error = ""
        self._read()
        self.query_one(Checkbox).focus()

    def on_state(self, state: WizardState) -> None:
        pass

    # ------------------------------------------------------------------------------ the form

    @on(Checkbox.Changed)
    @on(Input.Changed)
    def _changed(self, event) -> None:
        self._read()

    def form(self):
        """The GrpoConfig the form describes (raises ValueError with a plain reason when it cannot)."""
        from pydantic import ValidationError

        rewards, weights = [], []
        for row in self.query(RewardRow):
            if row.query_one(Checkbox).value:
                rewards.append(row.reward)
                try:
                    weights.append(_weight(row.query_one(Input).value))
                except ValueError:
                    raise ValueError(f"the weight of {row.reward} is not a number") from None
        own = [r.strip() for r in self.query_one("#rw-own", Input).value.split(",") if r.strip()]
        if own:
            try:
                w = _weight(self.query_one("#rw-weight-own", Input).value)
            except ValueError:
                raise ValueError("the weight of your own rewards is not a number") from None
            for ref in own:
                if ref not in BUILTINS and not (ref.rpartition(":")[0].endswith(".py") and ref.rpartition(":")[2]):
                    raise ValueError(f"'{ref}': name your reward as FILE.py:FUNCTION (or code)")
                rewards.append(_absolute(ref))
                weights.append(w)
        if not rewards:
            raise ValueError("tick at least one reward, or name your own")
        if len(set(rewards)) < len(rewards):
            raise ValueError("a reward is named twice")
        base = self.state.kind_section("grpo")
        values = base.model_dump()
        values.update(rewards=rewards, reward_weights=None if all(w == 1.0 for w in weights) else weights,
                      answer_column=self.query_one("#rw-answer_column", Input).value.strip(),
                      tests_column=self.query_one("#rw-tests_column", Input).value.strip(),
                      format_pattern=self.query_one("#rw-format_pattern", Input).value)
        try:
            values["tolerance"] = float(self.query_one("#rw-tolerance", Input).value)
        except ValueError:
            raise ValueError("the tolerance is not a number") from None
        try:
            return type(base).model_validate(values)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ValueError(f"{e['loc'][0] if e['loc'] else 'grpo'}: {e['msg']}") from None

    def _read(self) -> None:
        try:
            grpo = self.form()
        except ValueError as exc:
            self._grpo, self._problem = None, str(exc)
            self._show()
            return
        self._grpo, self._problem = grpo, ""
        if grpo != self._checked:
            self._checked, self._check_error = None, ""
            self.check(grpo)
        self._show()

    # ------------------------------------------------------------------------------ the check

    @work(thread=True, exclusive=True, group="rewards-check", exit_on_error=False)
    def check(self, grpo) -> None:
        from ftwizard.core.errors import UserError
        from ftwizard.core.preflight import Report, check_prompt_rows
        from ftwizard.core.recipes.grpo import read_prompt_rows

        def report(msg: Message) -> None:
            if not get_current_worker().is_cancelled:
                self.post_message(msg)

        from ftwizard.core.data.read import local_files

        try:
            cfg = self.state.with_kind_section(grpo, "grpo").replace(training="grpo").to_config()
            if local_files(cfg.dataset.path) is None:  # a hub dataset: the training process reads and checks it
                report(RewardsChecked(grpo, ("(a hub dataset: its rows are checked when the run starts)",)))
                return
            columns = tuple(k for k in read_prompt_rows(cfg, limit=1)[0] if k != "prompt")
            check_prompt_rows(cfg, Report())
        except UserError as exc:
            report(RewardsChecked(grpo, error="; ".join(p.message for p in exc.problems)))
            return
        except Exception as exc:  # a reward that breaks in a way core did not foresee: shown, never a traceback
            report(RewardsChecked(grpo, error=f"{type(exc).__name__}: {exc}"))
            return
        report(RewardsChecked(grpo, columns))

    @on(RewardsChecked)
    def _checked_msg(self, message: RewardsChecked) -> None:
        if message.grpo != self._grpo:
            return  # the form changed since: a newer check is on its way
        self._checked = message.grpo if not message.error else None
        self._check_error = message.error
        self._columns = message.columns
        self._show()

    def _show(self) -> None:
        out = self.query_one("#rw-check", Static)
        source = self.state.dataset_path or "the dataset"
        if self._problem:
            out.update(f"✗ {self._problem}")
            out.set_classes("error-text")
        elif self._check_error:
            out.update(f"✗ {self._check_error}")
            out.set_classes("error-text")
        elif self._checked is None:
            out.update(f"checking each reward on the first row of {source}…")
            out.set_classes("dim")
        else:
            names = ", ".join(Path(r.rpartition(":")[0]).name + ":" + r.rpartition(":")[2] if ":" in r else r
                              for r in self._checked.rewards)
            cols = ", ".join(getattr(self, "_columns", ())) or "none"
            out.update(f"✓ {names}: loaded and scored the first row of {source}\n"
                       f"columns a reward sees: {cols}")
            out.set_classes("ok-text")
        self.validity_changed()

    # ------------------------------------------------------------------------------ validity

    def is_valid(self) -> bool:
        return getattr(self, "_checked", None) is not None and self._checked == self._grpo

    def why_invalid(self) -> str:
        if getattr(self, "_problem", ""):
            return self._problem
        if getattr(self, "_check_error", ""):
            return "a reward fails on the first row (below)"
        return "checking the rewards on a real row…"

    def commit(self) -> None:
        self.wizard.set_state(self.state.with_kind_section(self._checked, "grpo"))
