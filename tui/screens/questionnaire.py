"""Step 2, Should you fine-tune? One plain question at a time; the answers stay visible on the left and
the recommendation (core.recommend: prompting, RAG, fine-tuning or both, and the training kind the
data calls for) builds up on the right with its reasons and their sources. When the answer is "not
fine-tuning", it says what to do instead, and the user may continue anyway."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..state import WizardState
from .step import WizardStep

HELP = """
# Should you fine-tune?

Fine-tuning is not always the answer. Prompting with a few examples is cheaper and often enough;
facts that change, or answers that must cite sources, belong in retrieval (RAG). Fine-tuning pays
off for behaviour that is easier shown than told (format, tone, a narrow task done reliably), for a
domain far from the model's training data, and to distil a big model into a small, cheap one.

Answer with `↑`/`↓` and `enter`; `esc` goes back one question. The recommendation on the right
changes as you answer; each reason names its source (OpenAI's and Meta's fine-tuning guides, the
Axolotl decision tree, the fine-tuning reference note). Whatever it says, `^n` continues.

Once every question is answered, the list offers the training kinds, the one your data calls for
first: `enter` (or `^n`) on another one trains that kind instead. The data each kind reads:
SFT input → output examples; DPO, ORPO and SimPO prompt + chosen + rejected answers; KTO prompt +
answer + a true/false label; GRPO prompts (plus the columns your reward functions read, e.g. the
right answer); CPT raw text.
"""


@dataclass(frozen=True)
class Question:
    key: str            # the field of core.recommend.Answers
    short: str          # the answer list's label
    text: str
    choices: tuple[tuple[str, str, object], ...]  # (choice id, label, value for Answers)


YES_NO = (("yes", "yes", True), ("no", "no", False))


def wizard_kinds() -> tuple[str, ...]:
    """The training kinds the wizard sets up end to end: every kind core trains (GRPO with its rewards
    step). Lazy: pydantic is not on the way to the first screen."""
    from ftwizard.core.config import IMPLEMENTED_KINDS

    return tuple(IMPLEMENTED_KINDS)


# The kind choice that ends the questionnaire: what each kind learns from, in plain words.
KIND_TEXT = {
    "sft": "SFT   input → output examples",
    "dpo": "DPO   chosen vs rejected answers",
    "orpo": "ORPO  SFT + preference, one loss",
    "simpo": "SimPO length-normalised preference",
    "kto": "KTO   answers labelled good / bad",
    "grpo": "GRPO  a program scores answers",
    "cpt": "CPT   raw documents (pretraining)",
}


def kind_choices(recommended: str | None) -> list[str]:
    """The kinds offered once every question is answered: the recommended one first."""
    first = recommended if recommended in wizard_kinds() else "sft"
    return [first] + [k for k in wizard_kinds() if k != first]

QUESTIONS = (
    Question("goal", "change", "What should fine-tuning change?", (
        ("behavior", "how it answers: format, tone, following instructions", "behavior"),
        ("task", "a narrow task: classify, extract, label", "task"),
        ("knowledge", "what it knows: facts from our documents", "knowledge"),
        ("domain", "its field: medical, legal, code… vocabulary", "domain"),
        ("alignment", "which answers it prefers (safer, more helpful)", "alignment"),
    )),
    Question("facts_change_often", "facts change", "Do the facts it needs change often (prices, docs, news)?", YES_NO),
    Question("needs_citations", "cite sources", "Must its answers cite their sources?", YES_NO),
    Question("prompting_tried", "prompting", "Have you tried prompting with a few examples?", (
        ("not-yet", "not yet", "not-yet"),
        ("works", "yes, and it works well enough", "works"),
        ("inconsistent", "yes, but the output is still inconsistent", "inconsistent"),
    )),
    Question("examples", "examples", "How many good examples do you have?", (
        ("0", "none yet", 0),
        ("10", "a handful (10-49)", 10),
        ("50", "at least 50", 50),
        ("100", "at least 100", 100),
        ("500", "at least 500", 500),
        ("1000", "at least 1,000", 1000),
        ("5000", "at least 5,000", 5000),
    )),
    Question("data_kind", "data", "What kind of data is it?", (
        ("pairs", "input → output pairs", "pairs"),
        ("preferences", "preferred vs rejected answers", "preferences"),
        ("binary-feedback", "good / bad labels on answers", "binary-feedback"),
        ("reward-function", "a program that scores answers", "reward-function"),
        ("raw-text", "raw documents", "raw-text"),
    )),
    Question("latency_or_cost_critical", "latency/cost", "Are latency or cost per request critical?", YES_NO),
)
BY_KEY = {q.key: q for q in QUESTIONS}

APPROACH_TEXT = {"prompting": "prompting (no fine-tuning)", "rag": "retrieval (RAG), not fine-tuning",
                 "fine-tune": "fine-tune", "rag+fine-tune": "RAG plus fine-tuning"}


def label_of(key: str, choice_id: str) -> str:
    return next(label for cid, label, _ in BY_KEY[key].choices if cid == choice_id)


def recommendation_for(answers: tuple[tuple[str, str], ...]):
    """core.recommend on the answers so far (unanswered questions take core's neutral defaults)."""
    from ftwizard.core.recommend import Answers, recommend

    known = {k: next(v for cid, _, v in BY_KEY[k].choices if cid == c) for k, c in answers}
    return recommend(Answers.with_defaults(**known))


class QuestionnaireScreen(WizardStep):
    NAME = "questionnaire"
    HELP = HELP

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="quiz-body"):
            with Vertical(id="quiz-left", classes="box") as box:
                box.border_title = "Questions"
                yield Static("", id="answers")
                yield Static("", id="question")
                yield OptionList(id="choices")
            with VerticalScroll(id="recommendation-box", classes="box") as box:
                box.border_title = "Recommendation"
                yield Static("", id="recommendation")

    def on_mount(self) -> None:
        self._answers: tuple[tuple[str, str], ...] = self.state.answers
        self._rec = None
        self._show()
        self.query_one("#choices", OptionList).focus()

    def on_state(self, state: WizardState) -> None:
        pass

    # ------------------------------------------------------------------------------ flow

    def current(self) -> Question | None:
        answered = {k for k, _ in self._answers}
        return next((q for q in QUESTIONS if q.key not in answered), None)

    @on(OptionList.OptionSelected, "#choices")
    def _answered(self, event: OptionList.OptionSelected) -> None:
        q = self.current()
        if q is None:  # all answered: enter on a kind continues with it
            self.action_next()
            return
        self._answers = self._answers + ((q.key, event.option.id),)
        self._show()

    def action_back(self) -> None:
        if self._answers:
            self._answers = self._answers[:-1]  # un-answer the last question
            self._show()
        else:
            super().action_back()

    def _show(self) -> None:
        lines = Text()
        for k, c in self._answers:
            label = label_of(k, c)
            lines.append(f"{BY_KEY[k].short:<13}", style="dim")
            lines.append((label if len(label) <= 22 else label[:21] + "…") + "\n", style="bold")
        self.query_one("#answers", Static).update(lines)
        q = self.current()
        choices = self.query_one("#choices", OptionList)
        choices.clear_options()
        if q is not None:
            self.query_one("#question", Static).update(
                f"{len(self._answers) + 1}/{len(QUESTIONS)} {q.text}")
            for cid, label, _ in q.choices:
                choices.add_option(Option(label, id=cid))
            choices.highlighted = 0
        self._rec = recommendation_for(self._answers)
        if q is None:
            recommended = self._rec.training in wizard_kinds()
            self.query_one("#question", Static).update(
                "Train as" + (" (★ recommended)" if recommended else "") + ": enter; esc changes the last answer")
            for i, kind in enumerate(kind_choices(self._rec.training)):
                mark = " ★" if i == 0 and recommended else ""
                choices.add_option(Option(KIND_TEXT[kind] + mark, id=f"kind-{kind}"))
            choices.highlighted = 0
        self._show_recommendation(done=q is None)
        self.validity_changed()

    def _show_recommendation(self, done: bool) -> None:
        rec = self._rec
        out = Text()
        if not self._answers:
            out.append("Answer the questions on the left; the advice builds up here.", style="dim")
        else:
            if not done:
                out.append("So far, assuming typical answers to the rest:\n", style="dim")
            out.append("Recommendation: ", style="bold")
            out.append(APPROACH_TEXT[rec.approach], style="bold")
            if rec.training:
                out.append(f" ({rec.training.upper()})", style="bold")
            out.append("\n")
            for r in rec.reasons:
                if r.startswith("method not chosen"):
                    continue  # core says so without a model and GPU memory: the Method step decides it
                out.append(f"· {r}\n")
            if rec.instead:
                out.append("\nInstead: ", style="bold")
                out.append(rec.instead + "\n")
                if done:
                    out.append("\n^n continues anyway (to learn the tool, or if you know better).", style="dim")
        self.query_one("#recommendation", Static).update(out)

    # ------------------------------------------------------------------------------ validity

    def is_valid(self) -> bool:
        return getattr(self, "_answers", None) is not None and self.current() is None

    def why_invalid(self) -> str:
        n = len(QUESTIONS) - len(self._answers)
        return f"{n} question{'s' if n != 1 else ''} left"

    def chosen_kind(self) -> str:
        """The kind highlighted in the final list (the recommended one unless the user moved)."""
        choices = self.query_one("#choices", OptionList)
        option = choices.get_option_at_index(choices.highlighted) if choices.highlighted is not None else None
        if option is not None and option.id and option.id.startswith("kind-"):
            return option.id.removeprefix("kind-")
        return kind_choices(self._rec.training)[0]

    def commit(self) -> None:
        self.wizard.set_state(self.state.replace(answers=self._answers, recommendation=self._rec,
                                                 training=self.chosen_kind()))
