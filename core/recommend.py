"""Should you fine-tune, how, and with which method: the decision framework behind the questionnaire
and `ftwizard recommend`.

The rules follow published guidance, and every reason names its source:

* OpenAI's fine-tuning guide: try prompting first; fine-tune for style, format and reliability, for
  skills easier shown than told, and to cut cost/latency by distilling into a smaller model; new
  knowledge belongs in retrieval, which combines with fine-tuning.
* Meta's Llama fine-tuning guide: prompt optimisation, few-shot and RAG first; up-to-date facts ->
  tools/RAG; 50 examples to start, 100-200 as a goal; LoRA first, QLoRA when resources are tight,
  full fine-tuning only with the compute and a need for major change.
* The fine-tuning reference note: RAG for dynamic knowledge and explainable sources; poor candidates
  are recent facts, one-off tasks and fewer than 100 good examples; minimum examples per goal
  (classification 100-500, instruction following 500-1,000, complex reasoning 1,000-5,000, domain
  adaptation 5,000-10,000).
* Axolotl's decision tree: reward function -> GRPO, preference pairs -> DPO, good/bad labels -> KTO,
  input/output examples -> SFT, nothing -> create data first; then QLoRA / LoRA / full by hardware.
* Unsloth's FAQ: fine-tuning can add knowledge and combines with RAG; newcomers start with a small
  instruct model and QLoRA.

The tree, in order: (1) knowledge that changes or needs citations -> RAG (plus fine-tuning when the
output format is also inconsistent); (2) not tried prompting -> prompting; (3) prompting works ->
prompting, unless cost/latency matters (distil); (4) too few examples -> prompting while collecting
data; (5) static knowledge without raw text -> RAG; (6) fine-tune: the data kind picks the training
kind, the examples are checked against the minimum for the goal, and the estimator picks the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import Problem, UserError

Goal = Literal["knowledge", "behavior", "task", "domain", "alignment"]
Prompting = Literal["not-yet", "works", "inconsistent"]
DataKind = Literal["pairs", "preferences", "binary-feedback", "reward-function", "raw-text"]

OPENAI = "OpenAI fine-tuning guide"
LLAMA = "Llama fine-tuning guide"
NOTE = "fine-tuning reference note"
AXOLOTL = "Axolotl decision tree"
UNSLOTH = "Unsloth FAQ"
ESTIMATOR = "ftwizard estimator"

# data kind -> training kind (Axolotl's tree)
TRAINING_FOR_DATA = {"pairs": "sft", "preferences": "dpo", "binary-feedback": "kto",
                     "reward-function": "grpo", "raw-text": "cpt"}
# goal -> (reference note's task category, minimum good examples, typical upper end)
MIN_EXAMPLES = {
    "task": ("classification", 100, 500),
    "behavior": ("instruction following", 500, 1000),
    "alignment": ("instruction following", 500, 1000),
    "knowledge": ("domain adaptation", 5000, 10000),
    "domain": ("domain adaptation", 5000, 10000),
}
REASONING_MIN = ("complex reasoning", 1000, 5000)  # GRPO prompts with a reward function
START_MIN = 50     # Llama guide: 50 examples to start
POOR_BELOW = 100   # reference note: fewer than 100 good examples is a poor candidate


ALLOWED = {
    "goal": "knowledge, behavior, task, domain, alignment", "facts_change_often": "true, false",
    "needs_citations": "true, false", "prompting_tried": "not-yet, works, inconsistent",
    "examples": "a whole number >= 0", "data_kind": "pairs, preferences, binary-feedback, reward-function, raw-text",
    "latency_or_cost_critical": "true, false",
}


class Answers(BaseModel):
    """The questionnaire's answers; the same keys as the YAML file `ftwizard recommend --answers` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: Goal = Field(description="what fine-tuning should change: knowledge | behavior | task | domain | alignment")
    facts_change_often: bool = Field(description="do the facts the model needs change often?")
    needs_citations: bool = Field(description="must answers cite their sources?")
    prompting_tried: Prompting = Field(description="not-yet | works | inconsistent")
    examples: int = Field(ge=0, description="good examples available")
    data_kind: DataKind = Field(description="pairs | preferences | binary-feedback | reward-function | raw-text")
    latency_or_cost_critical: bool = Field(description="is per-request latency or cost critical?")

    @classmethod
    def with_defaults(cls, **known) -> "Answers":
        """Answers so far, the rest filled with neutral defaults (for a live preview while answering)."""
        base = dict(goal="behavior", facts_change_often=False, needs_citations=False,
                    prompting_tried="inconsistent", examples=1000, data_kind="pairs",
                    latency_or_cost_critical=False)
        base.update({k: v for k, v in known.items() if v is not None})
        return cls(**base)


@dataclass
class Recommendation:
    approach: Literal["prompting", "rag", "fine-tune", "rag+fine-tune"]
    training: str | None            # sft | dpo | kto | orpo | grpo | cpt | None
    method: str | None              # full | lora | qlora | None
    reasons: list[str] = field(default_factory=list)   # each ends with its source in parentheses
    instead: str | None = None      # what to do instead (or first) when not fine-tuning now
    method_choice: object | None = field(default=None, repr=False)  # estimate.MethodChoice when computed
    settings: dict | None = None    # what the asked settings had to change (keys of `ftwizard estimate`'s flags)
    proposal: object | None = field(default=None, repr=False)  # estimate.Proposal behind `settings`

    def to_json(self) -> dict:
        out = {"approach": self.approach, "training": self.training, "method": self.method,
               "reasons": list(self.reasons), "instead": self.instead}
        if self.settings:
            out["settings"] = dict(self.settings)
            out["proposal"] = self.proposal.to_json()
        return out


def _r(text: str, *sources: str) -> str:
    return f"{text} ({'; '.join(sources)})"


def recommend(answers: Answers, *, model: str | None = None, vram_gb: float | None = None, gpus: int = 1,
              settings=None) -> Recommendation:
    """Prompting, RAG, fine-tuning or both; the training kind; and, with a model and GPU memory, the method.

    `settings` (an `estimate.Settings`) sets the sequence length and batch size the method is checked
    with; default: ftwizard's config defaults.
    """
    a = answers
    reasons: list[str] = []

    # 1. knowledge that changes or must be cited: retrieval
    if a.goal == "knowledge" and (a.facts_change_often or a.needs_citations):
        why = []
        if a.facts_change_often:
            why.append(_r("facts that change often belong in retrieval, not in the weights", OPENAI, LLAMA))
        if a.needs_citations:
            why.append(_r("answers that cite their sources need retrieval (explainable sources)", NOTE))
        if a.prompting_tried == "inconsistent" and a.data_kind == "pairs" and a.examples >= POOR_BELOW:
            why.append(_r(f"the output is still inconsistent after prompting and you have {a.examples} "
                          "examples: fine-tune the format and let retrieval bring the facts; retrieval "
                          "combines with fine-tuning", OPENAI, UNSLOTH))
            return _with_method(Recommendation("rag+fine-tune", "sft", None, why), a, model, vram_gb, gpus, settings)
        return Recommendation("rag", None, None, why, instead=(
            "Put the documents in a retrieval index (RAG) and pass the retrieved passages to the model; "
            "fine-tune later only if the answer format stays inconsistent."))

    # 2. prompting not tried yet
    if a.prompting_tried == "not-yet":
        reasons.append(_r("try prompting first: a clear instruction and a few examples often suffice, and "
                          "they give the baseline a fine-tuned model must beat", OPENAI, LLAMA))
        return Recommendation("prompting", None, None, reasons, instead=(
            "Write a system prompt with 3-5 worked examples and test it on 20-50 real inputs; come back "
            "if the output stays inconsistent."))

    # 3. prompting works
    if a.prompting_tried == "works":
        if not a.latency_or_cost_critical:
            reasons.append(_r("prompting already works and cost/latency is not critical: fine-tuning adds "
                              "a model to maintain for no gain", OPENAI, NOTE))
            return Recommendation("prompting", None, None, reasons, instead=(
                "Keep the prompt; version it and test it on a fixed set of inputs."))
        reasons.append(_r("prompting works but cost/latency is critical: fine-tune a smaller model on the "
                          "big model's good outputs (distillation), which also saves prompt tokens",
                          OPENAI, LLAMA))

    # 4. enough data?
    if a.examples < START_MIN:
        reasons.append(_r(f"{a.examples} good examples are too few to fine-tune (50 to start, 100-200 as a "
                          f"goal; fewer than {POOR_BELOW} is a poor candidate)", LLAMA, NOTE))
        reasons.append(_r("no usable training data yet: create data first", AXOLOTL))
        return Recommendation("prompting", None, None, reasons, instead=(
            f"Keep prompting and collect at least {POOR_BELOW} good examples (the real inputs with the "
            "answers you want); your prompt's best outputs are a good start."))

    # 5. static knowledge: fine-tuning can add it, but only from documents; otherwise retrieval
    if a.goal == "knowledge" and a.data_kind != "raw-text":
        reasons.append(_r("new knowledge is best served by retrieval, which is cheaper to update",
                          OPENAI, NOTE))
        return Recommendation("rag", None, None, reasons, instead=(
            "Index the knowledge for retrieval (RAG). Fine-tuning can add static knowledge from a large "
            "body of raw text (continued pretraining) if retrieval is not an option."))

    # 6. fine-tune: the data kind decides the training kind
    if a.prompting_tried == "inconsistent":
        why = {"behavior": "style, tone or format stays inconsistent after prompting: fine-tuning fixes "
                           "behaviour that is easier shown than told",
               "task": "a task prompting does not do reliably: fine-tuning improves task quality beyond "
                       "prompting",
               "domain": "the domain is far from the model's training data: fine-tuning adds domain "
                         "expertise",
               "alignment": "the model's answers are not the ones you prefer: preference tuning aligns it",
               "knowledge": "static knowledge from documents: fine-tuning can add knowledge"}[a.goal]
        src = (OPENAI, LLAMA) if a.goal in ("behavior", "task") else (LLAMA, NOTE) if a.goal == "domain" else \
              (UNSLOTH,) if a.goal == "knowledge" else (AXOLOTL,)
        reasons.append(_r(why, *src))
    if a.latency_or_cost_critical and a.prompting_tried == "inconsistent":
        reasons.append(_r("cost/latency is critical: a fine-tuned model needs shorter prompts and can be "
                          "smaller", OPENAI, LLAMA))
    training = TRAINING_FOR_DATA[a.data_kind]
    data_reason = {
        "pairs": "input -> output examples -> SFT",
        "preferences": "preferred vs rejected answers -> DPO",
        "binary-feedback": "only good/bad labels -> KTO",
        "reward-function": "a program that scores answers -> GRPO",
        "raw-text": "raw documents -> continued pretraining (CPT)",
    }[a.data_kind]
    reasons.append(_r(data_reason, AXOLOTL))
    if a.data_kind == "raw-text" and a.goal not in ("domain", "knowledge"):
        reasons.append(_r("raw text teaches the domain, not a behaviour: follow CPT with SFT on a few "
                          "hundred examples of the behaviour you want", NOTE))

    cat, lo, hi = REASONING_MIN if a.data_kind == "reward-function" else MIN_EXAMPLES[a.goal]
    if a.examples < POOR_BELOW:
        reasons.append(_r(f"{a.examples} examples is enough to start but below {POOR_BELOW}, a poor "
                          "candidate: aim for 100-200", LLAMA, NOTE))
    elif a.examples < lo:
        reasons.append(_r(f"{a.examples} examples is below the {lo:,}-{hi:,} typical for {cat}: expect a "
                          "weaker result, and add data if the evaluation says so", NOTE))
    else:
        reasons.append(_r(f"{a.examples:,} examples meets the {lo:,}-{hi:,} typical for {cat}", NOTE))
    rec = Recommendation("fine-tune", training, None, reasons)
    return _with_method(rec, a, model, vram_gb, gpus, settings)


def _with_method(rec: Recommendation, a: Answers, model, vram_gb, gpus, settings) -> Recommendation:
    """Choose full / LoRA / QLoRA with the estimator when a model and GPU memory are known."""
    if not model or not vram_gb:
        missing = " and ".join(x for x, v in (("a model", model), ("GPU memory", vram_gb)) if not v)
        rec.reasons.append(_r(f"method not chosen: give {missing} (LoRA first, QLoRA when resources are "
                              "tight)", LLAMA))
        return rec
    from dataclasses import replace

    from .catalog import display_name, resolve_arch
    from .estimate import Settings, compare_methods, find_fitting

    arch = resolve_arch(model)
    large_shift = a.goal == "domain" and a.examples >= MIN_EXAMPLES["domain"][1]
    choice = compare_methods(arch, vram_gb, gpus, settings, prefer_full=large_shift)
    rec.method_choice = choice
    rec.method = choice.recommended
    if choice.recommended is None:
        # nothing fits as asked: pull the levers (checkpointing, 8-bit states, batch x accumulation,
        # max_length, rank, then QLoRA) before giving up on the model
        prop = find_fitting(arch, vram_gb, replace(settings or Settings(), gpus=gpus))
        if prop.fits:
            rec.method, rec.settings, rec.proposal = prop.method, prop.changes, prop
            rec.reasons.append(_r(f"not at the asked settings ({choice.reason.split(' (')[0]}), but "
                                  f"{prop.describe()} ({'; '.join(prop.steps)})", LLAMA, ESTIMATOR))
            return rec
        smaller = _largest_fitting(arch, vram_gb, gpus, settings)
        tip = (f"; {display_name(smaller)} fits" + (f" ({smaller_how})" if (smaller_how := _how(smaller, vram_gb, gpus, settings)) else "")
               + f" ({ESTIMATOR})" if smaller else "")
        text = choice.reason + f"; no setting fits either (tried: {'; '.join(prop.steps)})"
        if prop.more_cards:
            text += f"; it would take {prop.more_cards}"
        rec.reasons.append(text + tip if smaller else _r(text, ESTIMATOR))
        rec.instead = (f"Use a smaller model{f' such as {display_name(smaller)}' if smaller else ''}"
                       " or a GPU with more memory.")
    else:
        rec.reasons.append(choice.reason)
        if large_shift and choice.recommended != "full":
            full = choice.row("full")
            rec.reasons.append(_r(f"a large domain shift could use full fine-tuning, but it needs "
                                  f"{full[1].total_gib:.0f} GiB", LLAMA, ESTIMATOR))
    return rec


def _largest_fitting(arch, vram_gb: float, gpus: int, settings):
    """The largest smaller current model (catalog.CURRENT) that fits with some setting, same family first."""
    from .catalog import CATALOG, CURRENT, lineage

    fam = lineage(arch)
    pool = sorted((CATALOG[n] for n in CURRENT if CATALOG[n].params < arch.params),
                  key=lambda c: (lineage(c) != fam, -c.params))
    for c in pool:
        if _how(c, vram_gb, gpus, settings) is not None:
            return c
    return None


def _how(arch, vram_gb: float, gpus: int, settings) -> str | None:
    """The method and setting with which `arch` fits, in words, or None."""
    from dataclasses import replace

    from .estimate import Settings, find_fitting

    if arch is None:
        return None
    p = find_fitting(arch, vram_gb, replace(settings or Settings(), gpus=gpus))
    return p.describe() if p.fits else None


# ----------------------------------------------------------------------------------------- loading


def load_answers(path: str | Path) -> Answers:
    """Read a YAML answers file. Bad input raises UserError naming file:line: key and the allowed values."""
    from .config import _line_index, read_yaml_file

    path = Path(path)
    data, text = read_yaml_file(path, "answers")
    if not isinstance(data, dict):
        raise UserError("the answers must be a YAML mapping of keys to values", file=str(path), line=1)
    try:
        return Answers.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(text)
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "(top level)"
            allowed = f" (allowed: {ALLOWED[key]})" if key in ALLOWED else ""
            if err["type"] == "extra_forbidden":
                msg = f"unknown key (allowed: {', '.join(Answers.model_fields)})"
            elif err["type"] == "missing":
                msg = "required key is missing" + allowed
            else:
                msg = f"got {err.get('input')!r}" + allowed
            problems.append(Problem(msg, file=str(path), line=lines.get((key,)), field=key))
        raise UserError(problems) from None
