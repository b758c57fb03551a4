"""Snapshot tests of every wizard step (pytest-textual-snapshot), at 80x24. Deterministic: hardware
from the fake NVML with RAM/CPU pinned, presets and runs from fixed folders in tmp, paths relative to
a tmp working directory, no clock, no cursor blink.

The method and questionnaire snapshots show core's estimator and recommendation text: when those
change on purpose, review the diff and update with `pytest tests/tui/test_snapshots_wizard.py
--snapshot-update`.
"""

from __future__ import annotations

import shutil

import pytest

from test_wizard_questionnaire import FINE_TUNE, QUESTIONS
from pilot import settle

SIZE = (80, 24)

PRESET = """\
# Snapshot demo: LoRA on a tiny model, for the wizard's snapshot tests.
#
# Who it is for: the test suite.
model:
  name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct
method: lora
dataset:
  path: data/chat.jsonl
"""


@pytest.fixture
def snap_env(tmp_path, monkeypatch, tiny_work):
    """cwd = a tmp folder holding tiny-model/ and data/ (relative paths on screen); presets fixed."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_work / "tiny-model", work / "tiny-model")
    shutil.copytree(tiny_work / "data", work / "data")
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "snapshot-demo.yaml").write_text(PRESET)
    import ftwizard.core.presets as core_presets

    monkeypatch.setattr(core_presets, "presets_dir", lambda: presets)
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def snap_app(make_app, snap_env):
    from ftwizard.tui.state import WizardState

    def make(scenario="24gb", **state):
        return make_app(scenario, pinned=True, state=WizardState(**state), config_dir=snap_env)

    return make


def _go(name):
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        if name:
            pilot.app.go(name)
        await settle(pilot.app, pilot)
    return run_before


def test_snapshot_welcome(snap_compare, snap_app):
    assert snap_compare(snap_app("24gb"), terminal_size=SIZE, run_before=_go(None))


def test_snapshot_questionnaire_answered(snap_compare, snap_app):
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        await pilot.press("g")
        await pilot.pause()
        for q in QUESTIONS[:5]:
            options = pilot.app.screen.query_one("#choices")
            options.highlighted = next(i for i in range(options.option_count)
                                       if options.get_option_at_index(i).id == FINE_TUNE[q.key])
            await pilot.press("enter")
            await pilot.pause()
    assert snap_compare(snap_app("24gb"), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("scenario", ["two-gpus", "none"])
def test_snapshot_hardware(snap_compare, snap_app, scenario):
    assert snap_compare(snap_app(scenario), terminal_size=SIZE, run_before=_go("hardware"))


def test_snapshot_model(snap_compare, snap_app):
    async def run_before(pilot):
        await _go("model")(pilot)
        catalog = pilot.app.screen.query_one("#catalog")
        catalog.highlighted = next(i for i in range(catalog.option_count)
                                   if catalog.get_option_at_index(i).id == "llama-3.1-8b")
        await settle(pilot.app, pilot)
    assert snap_compare(snap_app("24gb"), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("scenario", ["24gb", "none"])
def test_snapshot_method(snap_compare, snap_app, scenario):
    from ftwizard.core.catalog import CATALOG

    app = snap_app(scenario, model="meta-llama/Llama-3.1-8B", arch=CATALOG["llama-3.1-8b"])
    assert snap_compare(app, terminal_size=SIZE, run_before=_go("method"))


def test_snapshot_dataset(snap_compare, snap_app):
    async def run_before(pilot):
        await _go("dataset")(pilot)
        screen = pilot.app.screen
        screen.query_one("#dataset-path").value = "data/chat.jsonl"
        for _ in range(100):  # preview, tokenizer, render and the full scan: all in workers
            await settle(pilot.app, pilot)
            if "steps/epoch" in str(screen.query_one("#stats-text").render()) and \
                    "trained" in screen.query_one("#rendered-box").border_title:
                break
        screen.query_one("#preview-table").focus()  # as after tab; no text cursor in the picture
        await pilot.pause()
    assert snap_compare(snap_app("24gb", model="tiny-model"), terminal_size=(100, 30), run_before=run_before)


def test_snapshot_hyperparams_with_warning(snap_compare, snap_app):
    async def run_before(pilot):
        await _go("hyperparams")(pilot)
        pilot.app.screen.query_one("#hp-learning_rate").value = "0.001"
        await pilot.pause()
    assert snap_compare(snap_app("24gb"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_review_from_preset(snap_compare, snap_app):
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        await pilot.press("p", "enter")
        await settle(pilot.app, pilot)
    assert snap_compare(snap_app("24gb"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_help(snap_compare, snap_app):
    async def run_before(pilot):
        await _go("hardware")(pilot)
        await pilot.press("f1")
        await pilot.pause()
    assert snap_compare(snap_app("80gb"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_method_proposes_the_setting_that_fits(snap_compare, snap_app):
    """Llama-3.1-70B on 48 GB cards with distributed.strategy: ddp (a whole copy per card): nothing fits
    at batch 4 x 1,024, QLoRA at batch 1 x accumulation 4 does (the QLoRA paper's headline); the step
    says so and preselects it. (Left to `auto`, FSDP would shard it over the two cards.)"""
    from ftwizard.core.catalog import CATALOG
    from ftwizard.core.config import RunConfig

    base = RunConfig.model_validate({"dataset": {"path": "-"}, "distributed": {"strategy": "ddp"}})
    app = snap_app("two-gpus", model="meta-llama/Llama-3.1-70B", arch=CATALOG["llama-3.1-70b"], base=base)
    assert snap_compare(app, terminal_size=SIZE, run_before=_go("method"))


# ------------------------------------------------------------------- the views of other training kinds


def test_snapshot_dataset_as_dpo(snap_compare, snap_app, snap_env):
    """A DPO dataset: the prompt as rendered, chosen and rejected side by side, their trained tokens bright."""
    from ftwizard.core.tiny import write_jsonl
    from test_preference import pair_rows

    write_jsonl(pair_rows(12), snap_env / "data" / "pairs.jsonl")

    async def run_before(pilot):
        await _go("dataset")(pilot)
        screen = pilot.app.screen
        screen.query_one("#dataset-path").value = "data/pairs.jsonl"
        for _ in range(100):  # preview, tokenizer and the kind's view: all in workers
            await settle(pilot.app, pilot)
            if screen._kind_view is not None:
                break
        screen.query_one("#preview-table").focus()
        await pilot.pause()
    assert snap_compare(snap_app("24gb", model="tiny-model", training="dpo"), terminal_size=SIZE,
                        run_before=run_before)


def test_snapshot_grpo_rewards(snap_compare, snap_app, snap_env):
    """GRPO's rewards step: two built-ins ticked, one with a weight, checked on the dataset's first row."""
    import json

    rows = [{"prompt": f"what is {a} plus {b}", "answer": str(a + b)} for a in range(3) for b in range(3)]
    (snap_env / "data" / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    async def run_before(pilot):
        await _go("rewards")(pilot)
        screen = pilot.app.screen
        screen.query_one("#rw-numeric_match").value = True
        screen.query_one("#rw-format").value = True
        screen.query_one("#rw-weight-format").value = "0.5"
        for _ in range(100):
            await settle(pilot.app, pilot)
            if screen.is_valid():
                break
        screen.query_one("#rw-numeric_match").focus()
        await pilot.pause()
    assert snap_compare(snap_app("24gb", training="grpo", dataset_path="data/prompts.jsonl"), terminal_size=SIZE,
                        run_before=run_before)


async def _dataset_kind_view(pilot, path: str) -> None:
    """Open the dataset step on `path` and wait for the rows as the kind sees them (CPT: its first block)."""
    await _go("dataset")(pilot)
    screen = pilot.app.screen
    screen.query_one("#dataset-path").value = path
    for _ in range(100):  # preview, tokenizer, the kind's view and the full scan: all in workers
        await settle(pilot.app, pilot)
        if screen._kind_view is not None or "block" in (screen.query_one("#rendered-box").border_title or ""):
            break
    screen.query_one("#preview-table").focus()  # as after tab; no text cursor in the picture
    await pilot.pause()


def test_snapshot_dataset_as_kto(snap_compare, snap_app, snap_env):
    """A KTO dataset: the row with its label, the label balance and the weight to set against it."""
    from ftwizard.core.tiny import write_jsonl
    from test_preference import kto_rows

    write_jsonl(kto_rows(12, labels=(True, True, False)), snap_env / "data" / "kto.jsonl")

    async def run_before(pilot):
        await _dataset_kind_view(pilot, "data/kto.jsonl")
    assert snap_compare(snap_app("24gb", model="tiny-model", training="kto"), terminal_size=SIZE,
                        run_before=run_before)


def test_snapshot_dataset_as_grpo(snap_compare, snap_app, snap_env):
    """A GRPO dataset: the prompt as the model gets it (generation prompt included) and the columns a reward sees."""
    from ftwizard.core.tiny import write_jsonl
    from test_wizard_kinds import prompt_rows

    write_jsonl(prompt_rows(12), snap_env / "data" / "prompts.jsonl")

    async def run_before(pilot):
        await _dataset_kind_view(pilot, "data/prompts.jsonl")
    assert snap_compare(snap_app("24gb", model="tiny-model", training="grpo"), terminal_size=SIZE,
                        run_before=run_before)


def test_snapshot_dataset_as_cpt(snap_compare, snap_app, snap_env):
    """A CPT corpus: the first packed block, every token trained, documents joined by their separator."""
    from ftwizard.core.config import TrainConfig
    from ftwizard.core.tiny import corpus, write_jsonl

    write_jsonl([{"text": t} for t in corpus(30)], snap_env / "data" / "corpus.jsonl")

    async def run_before(pilot):
        await _dataset_kind_view(pilot, "data/corpus.jsonl")
    assert snap_compare(snap_app("24gb", model="tiny-model", training="cpt", train=TrainConfig(max_length=48)),
                        terminal_size=SIZE, run_before=run_before)


def test_snapshot_hyperparams_of_grpo(snap_compare, snap_app):
    """GRPO's own settings below the shared ones, each with its explanation and usual range, and the rewards."""
    from ftwizard.core.config import GrpoConfig

    grpo = GrpoConfig(rewards=["numeric_match", "format"], reward_weights=[1.0, 0.5])

    async def run_before(pilot):
        await _go("hyperparams")(pilot)
        form = pilot.app.screen.query_one("#hp-form")
        pilot.app.screen.query_one("#hp-num_generations").focus()
        await pilot.pause()
        form.scroll_end(animate=False)
        await pilot.pause()
    assert snap_compare(snap_app("24gb", training="grpo", kind_sections=(("grpo", grpo),)), terminal_size=SIZE,
                        run_before=run_before)


def test_snapshot_questionnaire_offers_the_kind_the_data_calls_for(snap_compare, snap_app):
    """Every question answered with preference data: the kinds offered, DPO first and starred."""
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        await pilot.press("g")
        await pilot.pause()
        answers = {**FINE_TUNE, "data_kind": "preferences", "goal": "alignment"}
        for q in QUESTIONS:
            options = pilot.app.screen.query_one("#choices")
            options.highlighted = next(i for i in range(options.option_count)
                                       if options.get_option_at_index(i).id == answers[q.key])
            await pilot.press("enter")
            await pilot.pause()
    assert snap_compare(snap_app("24gb"), terminal_size=SIZE, run_before=run_before)
