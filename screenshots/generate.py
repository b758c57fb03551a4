"""Regenerate the SVG screenshots in this folder by driving the real app (run by hand):

    /work/venv/bin/python screenshots/generate.py [--only NAME]

Hardware comes from the same fake NVML cards the tests use (no GPU here), with RAM and CPU pinned, so
the pictures do not depend on the machine. The model and data are the tiny offline ones the tests
build; the training monitor and the finished view show a real (tiny) run trained by this script
through the normal detached launch path. The per-kind monitors (09-monitor-dpo, 09-monitor-grpo*)
show recorded runs (tests/recorded_runs.py: the events a DPO or GRPO run writes, with smooth made-up
curves), since the tiny model's rewards are noise. Takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # fakes.py

from fakes import fake  # noqa: E402


def pinned(scenario: str):
    from ftwizard.core.hardware import detect

    return dataclasses.replace(detect(fake(scenario)), ram_total_gib=64.0, ram_available_gib=58.2,
                               cpu_count=16, cpu_name="AMD Ryzen 9 7950X 16-Core Processor")


def make_app(scenario: str = "24gb", **state):
    from ftwizard.tui.app import WizardApp
    from ftwizard.tui.state import WizardState

    st = WizardState(hardware=pinned(scenario), **state)
    return WizardApp(nvml_source=fake(scenario), runs_dir="runs", config_dir=Path.cwd(), state=st,
                     detect_hardware=False)


async def settle(pilot, until=None, tries: int = 100):
    for _ in range(tries):
        if not any(w.group.startswith(("mon", "follow")) or "Monitor" in type(w.node).__name__
                   for w in pilot.app.workers):  # the monitor follows its run until it is closed
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if until is None or until(pilot.app):
            return
        await pilot.pause(0.1)


async def shot(name: str, app, size, steps) -> None:
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await steps(pilot)
        await settle(pilot)
        app.save_screenshot(str(HERE / f"{name}.svg"))
    print(f"screenshots/{name}.svg")


async def pick(pilot, selector: str, option_id: str) -> None:
    ol = pilot.app.screen.query_one(selector)
    ol.highlighted = next(i for i in range(ol.option_count) if ol.get_option_at_index(i).id == option_id)
    await pilot.pause()


ANSWERS = ("behavior", "no", "no", "inconsistent", "1000", "pairs", "no")


async def answer_all(pilot, n: int = len(ANSWERS), answers: tuple[str, ...] = ANSWERS) -> None:
    await pilot.press("g")
    await pilot.pause()
    for choice in answers[:n]:
        await pick(pilot, "#choices", choice)
        await pilot.press("enter")
        await pilot.pause()


def train_tiny_run(work: Path) -> Path:
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import make_tiny_setup, wait_for_end

    cfg = make_tiny_setup(work, steps=40, eval_steps=5)
    cfg.runs_dir = str(work / "runs")
    run_dir = create_run(cfg).resolve()
    start(run_dir)
    wait_for_end(run_dir, timeout=300)
    return run_dir


def chat(run_dir: Path):
    async def steps(pilot):
        from ftwizard.tui.screens.chat import ChatScreen

        screen = ChatScreen(run_dir)
        pilot.app.push_screen(screen)
        await settle(pilot, lambda app: screen.tuned is not None)
        for text in ("What is two plus three?", "And four plus one?"):
            screen.query_one("#chat-input").value = text
            await pilot.press("enter")
            await settle(pilot, lambda app: not screen.generating, tries=600)
    return steps


def base_vs_tuned(run_dir: Path):
    async def steps(pilot):
        from ftwizard.tui.screens.compare import CompareScreen

        screen = CompareScreen(run_dir, prompts=2, max_new_tokens=16)
        pilot.app.push_screen(screen)
        await settle(pilot, lambda app: len(screen.rows) == 2, tries=600)
    return steps


def export(run_dir: Path):
    async def steps(pilot):
        from ftwizard.tui.screens.export import ExportScreen

        screen = ExportScreen(run_dir)
        pilot.app.push_screen(screen)
        await settle(pilot)
        await pilot.press("ctrl+e")
        await settle(pilot, lambda app: screen.result is not None, tries=600)
    return steps


def evaluate(run_dir: Path):
    async def steps(pilot):
        from ftwizard.tui.screens.evaluate import EvaluateScreen

        screen = EvaluateScreen(run_dir, generations=2)
        pilot.app.push_screen(screen)
        await settle(pilot)
        await pilot.press("ctrl+e")
        await settle(pilot, lambda app: screen.result is not None and "done" in str(
            screen.query_one("#eval-status").render()), tries=900)
    return steps


def compare_runs(work: Path):
    """Two recorded runs (tests/recorded_runs.py): their curves overlaid, their configs' differences."""
    async def steps(pilot):
        from recorded_runs import make_run

        from ftwizard.tui.screens.compare_runs import CompareRunsScreen

        root = work / "recorded"
        a = make_run(root, "20261124-0900-llama8b-lora", steps=300, max_steps=300, eval_every=50)
        b = make_run(root, "20261124-1000-llama8b-qlora", steps=200, max_steps=300, method="qlora",
                     state="stopped", eval_every=50)
        screen = CompareRunsScreen([a, b], runs_dir=root)
        pilot.app.push_screen(screen)
        await settle(pilot, lambda app: screen.result is not None)
    return steps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append",
                    help="only the screenshots with these names (repeatable, or comma-separated)")
    ap.add_argument("--no-run", action="store_true", help="skip the screens that need a trained run")
    args = ap.parse_args()
    only = {n for o in (args.only or []) for n in o.split(",")}
    from test_preference import kto_rows

    from ftwizard.core.catalog import CATALOG
    from ftwizard.core.config import GrpoConfig, TrainConfig
    from ftwizard.core.selftest import make_tiny_setup
    from ftwizard.core.tiny import corpus

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_tiny_setup(work)
        os.chdir(work)  # relative paths on screen
        llama = dict(model="meta-llama/Llama-3.1-8B", arch=CATALOG["llama-3.1-8b"])

        async def nothing(pilot):
            pass

        def go(name, then=None):
            async def steps(pilot):
                pilot.app.go(name)
                await settle(pilot)
                if then:
                    await then(pilot)
            return steps

        async def questionnaire(pilot):
            await answer_all(pilot, 5)

        async def questionnaire_kinds(pilot):  # preference data: the kinds offered, DPO first
            await answer_all(pilot, answers=("alignment", "no", "no", "inconsistent", "1000", "preferences", "no"))

        async def model(pilot):
            await pick(pilot, "#catalog", "llama-3.1-8b")

        async def dataset(pilot):
            screen = pilot.app.screen
            screen.query_one("#dataset-path").value = "data/chat.jsonl"
            await settle(pilot, lambda app: "steps/epoch" in str(app.screen.query_one("#stats-text").render()))
            screen.query_one("#preview-table").focus()
            await pilot.press("down")
            await settle(pilot, lambda app: "line 2" in app.screen.query_one("#rendered-box").border_title)

        async def dataset_dpo(pilot):
            from ftwizard.core.tiny import _NUM, arith_question, write_jsonl

            rows = []
            for a, b in ((6, 6), (4, 8), (6, 4), (5, 9), (8, 2), (2, 1)):
                q, good = arith_question(a, b)
                rows.append({"prompt": [{"role": "user", "content": q}],
                             "chosen": [{"role": "assistant", "content": good}],
                             "rejected": [{"role": "assistant", "content":
                                           f"{_NUM[a]} plus {_NUM[b]} equals {_NUM[(a + b + 1) % 19]}."}]})
            write_jsonl(rows, "data/pairs.jsonl")
            screen = pilot.app.screen
            screen.query_one("#dataset-path").value = "data/pairs.jsonl"
            await settle(pilot, lambda app: app.screen._kind_view is not None)
            screen.query_one("#preview-table").focus()

        def dataset_kind(path: str, rows):
            async def steps(pilot):
                from ftwizard.core.tiny import write_jsonl

                write_jsonl(rows, path)
                screen = pilot.app.screen
                screen.query_one("#dataset-path").value = path
                await settle(pilot, lambda app: app.screen._kind_view is not None
                             or "block" in (app.screen.query_one("#rendered-box").border_title or ""))
                screen.query_one("#preview-table").focus()
            return steps

        async def hyper_grpo(pilot):
            pilot.app.screen.query_one("#hp-num_generations").focus()
            await pilot.pause()
            pilot.app.screen.query_one("#hp-form").scroll_end(animate=False)

        async def rewards_grpo(pilot):
            import json

            Path("data/prompts.jsonl").write_text("".join(
                json.dumps({"prompt": f"what is {a} plus {b}", "answer": str(a + b)}) + "\n" for a in range(4)
                for b in range(4)))
            pilot.app.go("rewards")
            await settle(pilot)
            screen = pilot.app.screen
            screen.query_one("#rw-numeric_match").value = True
            screen.query_one("#rw-format").value = True
            screen.query_one("#rw-weight-format").value = "0.5"
            await settle(pilot, lambda app: app.screen.is_valid())
            screen.query_one("#rw-numeric_match").focus()

        async def hyper(pilot):
            pilot.app.screen.query_one("#hp-learning_rate").value = "0.001"
            await pilot.pause()

        async def review(pilot):
            await pilot.press("p")
            await pick(pilot, "#presets", "cpu-demo")
            await pilot.press("enter")

        async def help_(pilot):
            await pilot.press("f1")

        def recorded_monitor(kind: str, model: str, then=None):
            async def steps(pilot):
                from recorded_runs import make_run

                from ftwizard.tui.screens.monitor import MonitorScreen

                run = make_run(Path("runs"), f"20261124-1412-{kind}", state="running", steps=300, max_steps=1200,
                               kind=kind, model=model)
                screen = MonitorScreen(run, nvml_source=fake("24gb"), show_finished=False, nvml_s=3600)
                pilot.app.push_screen(screen)
                await settle(pilot, lambda app: screen.up_to_date and screen.kind is not None)
                await pilot.pause(1.0)
                if then:
                    await pilot.press(then)
                    await pilot.pause(0.5)
            return steps

        shots = [
            ("01-welcome", make_app("24gb"), (80, 24), nothing),
            ("02-questionnaire", make_app("24gb"), (80, 24), questionnaire),
            ("02-questionnaire-kinds", make_app("24gb"), (80, 24), questionnaire_kinds),
            ("03-hardware-two-gpus", make_app("two-gpus"), (80, 24), go("hardware")),
            ("03-hardware-cpu-only", make_app("none"), (80, 24), go("hardware")),
            ("04-model", make_app("24gb"), (80, 24), go("model", model)),
            ("05-method-24gb", make_app("24gb", **llama), (80, 24), go("method")),
            ("05-method-8gb", make_app("8gb", **llama), (80, 24), go("method")),
            ("06-dataset", make_app("24gb", model="tiny-model"), (100, 30), go("dataset", dataset)),
            ("06-dataset-dpo", make_app("24gb", model="tiny-model", training="dpo"), (80, 24),
             go("dataset", dataset_dpo)),
            ("06-dataset-kto", make_app("24gb", model="tiny-model", training="kto"), (80, 24),
             go("dataset", dataset_kind("data/kto.jsonl", kto_rows(12, labels=(True, True, False))))),
            ("06-dataset-grpo", make_app("24gb", model="tiny-model", training="grpo"), (80, 24),
             go("dataset", dataset_kind("data/prompts.jsonl", [
                {"prompt": f"what is {a} plus {b}", "answer": str(a + b)} for a in range(4) for b in range(3)]))),
            ("06-dataset-cpt", make_app("24gb", model="tiny-model", training="cpt", train=TrainConfig(max_length=48)),
             (80, 24), go("dataset", dataset_kind("data/corpus.jsonl", [{"text": t} for t in corpus(30)]))),
            ("06b-rewards-grpo", make_app("24gb", training="grpo", dataset_path="data/prompts.jsonl"), (80, 24),
             rewards_grpo),
            ("07-hyperparameters", make_app("24gb"), (80, 24), go("hyperparams", hyper)),
            ("07-hyperparameters-grpo", make_app("24gb", training="grpo", kind_sections=(("grpo", GrpoConfig(
                rewards=["numeric_match", "format"], reward_weights=[1.0, 0.5])),)), (80, 24),
             go("hyperparams", hyper_grpo)),
            ("08-review-preset", make_app("none"), (80, 24), review),
            ("help", make_app("24gb", **llama), (80, 24), go("method", help_)),
            ("01-welcome-120x40", make_app("80gb"), (120, 40), nothing),
            ("05-method-120x40", make_app("80gb", **llama), (120, 40), go("method")),
            ("09-monitor-dpo", make_app("24gb"), (80, 24), recorded_monitor("dpo", "HuggingFaceTB/SmolLM2-1.7B-Instruct")),
            ("09-monitor-grpo", make_app("24gb"), (80, 24), recorded_monitor("grpo", "Qwen/Qwen2.5-1.5B-Instruct")),
            ("09-monitor-grpo-completions", make_app("24gb"), (80, 24),
             recorded_monitor("grpo", "Qwen/Qwen2.5-1.5B-Instruct", then="c")),
        ]
        for name, app, size, steps in shots:
            if not args.only or name in only:
                asyncio.run(shot(name, app, size, steps))

        after_recorded = ("14-compare-runs",)
        if not args.only or only & set(after_recorded):
            asyncio.run(shot("14-compare-runs", make_app("24gb"), (80, 24), compare_runs(work)))
        with_run = {"09-monitor", "10-finished", "runs", "11-chat", "12-base-vs-tuned", "13-export", "15-evaluate"}
        if args.no_run or (args.only and not only & with_run):
            return 0
        print("training a tiny run for the monitor screenshots…")
        run_dir = train_tiny_run(work)

        def monitor_steps(then=None):
            async def steps(pilot):
                from ftwizard.tui.screens.monitor import MonitorScreen

                pilot.app.push_screen(MonitorScreen(run_dir, nvml_source=fake("24gb"), show_finished=False))
                await settle(pilot, lambda app: getattr(app.screen, "loaded", False))
                await pilot.pause(1.0)
                if then:
                    await then(pilot)
            return steps

        async def finished(pilot):
            await pilot.press("f")

        async def runs(pilot):
            pilot.app.open_runs()

        more = [
            ("09-monitor", make_app("24gb"), (100, 30), monitor_steps()),
            ("10-finished", make_app("24gb"), (100, 30), monitor_steps(finished)),
            ("runs", make_app("24gb"), (100, 30), runs),
            ("11-chat", make_app("24gb"), (80, 24), chat(run_dir)),
            ("12-base-vs-tuned", make_app("24gb"), (80, 24), base_vs_tuned(run_dir)),
            ("13-export", make_app("24gb"), (80, 24), export(run_dir)),
            ("15-evaluate", make_app("24gb"), (80, 24), evaluate(run_dir)),
        ]
        for name, app, size, steps in more:
            if not args.only or name in only:
                asyncio.run(shot(name, app, size, steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
