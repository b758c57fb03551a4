"""The wizard's steps in one table: name, title, screen, in order. The title bar's "step k of n", the
guided flow (Next goes to the step below), the screen each name opens and the help's title all come
from here; a screen says only its `NAME`. Nothing here imports textual: screens are imported when
first shown, so start-up stays light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str     # what `app.go(name)` takes
    title: str    # the title bar's and the help's
    screen: str   # "module:Class" under ftwizard.tui.screens
    kinds: tuple[str, ...] | None = None  # the training kinds whose flow has this step (None: every kind)

    def in_flow(self, training: str | None) -> bool:
        return self.kinds is None or training in self.kinds


STEPS: tuple[Step, ...] = (
    Step("welcome", "fine-tune an LLM, step by step", "welcome:WelcomeScreen"),
    Step("questionnaire", "Should you fine-tune?", "questionnaire:QuestionnaireScreen"),
    Step("hardware", "Hardware", "hardware:HardwareScreen"),
    Step("model", "Model", "model:ModelScreen"),
    Step("method", "Method", "method:MethodScreen"),
    Step("dataset", "Dataset", "dataset:DatasetScreen"),
    Step("rewards", "Rewards", "rewards:RewardsScreen", kinds=("grpo",)),
    Step("hyperparams", "Hyperparameters", "hyperparams:HyperparamsScreen"),
    Step("review", "Review and launch", "review:ReviewScreen"),
    # The last step follows a run: opened with its run directory (WizardApp.open_monitor), not by name.
    Step("training", "Training", "monitor:MonitorScreen"),
)

_INDEX = {s.name: i for i, s in enumerate(STEPS)}


def step(name: str) -> Step:
    return STEPS[_INDEX[name]]


def flow(training: str | None = "sft") -> tuple[Step, ...]:
    """The steps of the guided flow for training kind `training`, in order."""
    return tuple(s for s in STEPS if s.in_flow(training))


def number(name: str, training: str | None = "sft") -> int:
    """The 1-based position of step `name` in the flow of `training`."""
    return next(i for i, s in enumerate(flow(training), 1) if s.name == name)


def step_title(name: str, training: str | None = "sft") -> str:
    """'step k of n' for step `name` in the flow of `training`."""
    return f"step {number(name, training)} of {len(flow(training))}"


def next_step(name: str, training: str | None = "sft") -> str:
    """The step after `name` in the guided flow of `training`."""
    return next(s.name for s in STEPS[_INDEX[name] + 1:] if s.in_flow(training))


def screen_class(name: str):
    """The Screen class of step `name`, imported on first use."""
    module, cls = step(name).screen.split(":")
    return getattr(importlib.import_module(f"ftwizard.tui.screens.{module}"), cls)
