"""Step 5, Method: full / LoRA / QLoRA, each with its estimated peak GPU memory against the detected
card (fits / tight / does not fit), the recommended one preselected with its reason (core.estimate
decides), and the breakdown of the highlighted one."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ..state import WizardState
from .step import WizardStep

HELP = """
# Method

- **full**: every weight is trained. Most capacity, most memory (weights, gradients and optimizer
  state for all parameters, ~16 bytes each); only with the compute and a large change to make.
- **LoRA**: small adapter matrices on frozen 16-bit weights. The usual starting point (Llama guide:
  start with LoRA).
- **QLoRA**: the same adapters on 4-bit (NF4) weights. About a third of LoRA's memory for a small
  quality cost; the choice when LoRA does not fit (QLoRA paper).

The bars are estimates of peak memory per GPU for ftwizard's own stack (transformers + peft +
bitsandbytes), for the run's training kind, at the current batch size and sequence length; with
several cards, per card under the strategy each method would get (DDP when it fits one card, FSDP
when it does not): **fits** is up to 75% of the card,
**tight** up to 100%, **does not fit** above. The breakdown says where the memory goes and which
settings were assumed; lowering the batch size or the max length in the Hyperparameters step
shrinks the activations and logits terms.

`↑`/`↓` choose · `enter` continues.
"""

VERDICT_TEXT = {"fits": "fits", "tight": "tight", "does-not-fit": "does not fit"}
VERDICT_STYLE = {"fits": "green", "tight": "yellow", "does-not-fit": "red"}
BAR = 28


def bar(value: float, scale: float) -> str:
    """A horizontal bar of `value` on a scale of `scale` (eighth blocks)."""
    eighths = int(round(min(value / scale, 1.0) * BAR * 8)) if scale > 0 else 0
    full, part = divmod(eighths, 8)
    return ("█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")).ljust(BAR)


class MethodScreen(WizardStep):
    NAME = "method"
    HELP = HELP

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="method-body", classes="box") as box:
            box.border_title = "Estimated peak memory per GPU"
            yield Static("Estimating…", id="method-target")
            yield OptionList(id="methods")
            yield Static("", id="method-reason")
            yield Static("", id="breakdown", classes="dim")

    def on_mount(self) -> None:
        self._choice = None
        self._strategies: dict[str, tuple[str, str]] = {}  # method -> (strategy, why) with several cards
        self._proposal = None
        self._method = self.state.method
        self.query_one("#methods", OptionList).focus()
        self.compute()

    def on_state(self, state: WizardState) -> None:
        pass

    # ------------------------------------------------------------------------------ estimate

    @work(thread=True, exclusive=True, group="method-estimate", exit_on_error=False)
    def compute(self):
        from ftwizard.core.catalog import resolve_arch
        from ftwizard.core.config import DatasetConfig, ModelConfig, RunConfig
        from ftwizard.core.estimate import compare_methods, settings_from_config

        from ftwizard.core.hardware import run_gpus, run_world_size

        s = self.state
        arch = s.arch or resolve_arch(s.model)
        dist = s.distributed  # the config's section with the cards picked in the hardware step
        used = run_gpus(s.hardware, dist)  # the cards a run started here trains on, not every card listed
        world = run_world_size(s.hardware, dist)
        train = s.train_config
        if used and not all(g.bf16 for g in used):
            train = train.model_copy(update={"precision": "fp16"})
        # the run's kind (and its grpo settings) and distributed section: the figure a run would get
        extra = {"grpo": s.kind_section("grpo"), "distributed": dist}
        cfg = RunConfig(method=s.method, train=train, lora=s.lora_config, training=s.training,
                        model=ModelConfig(name_or_path=s.model or "-"),
                        dataset=DatasetConfig(path=s.dataset_path or "-"), **extra)
        vram = min(g.free_gib for g in used) if used else None
        settings = settings_from_config(cfg, world)
        strategies: dict[str, tuple[str, str]] = {}
        if world > 1 and used:
            from ftwizard.core.defaults import fits_one_card

            for m in ("full", "lora", "qlora"):  # each method as `strategy: auto` would run it
                if cfg.distributed.strategy not in ("auto", "none"):
                    strategies[m] = (cfg.distributed.strategy, "distributed.strategy in the config")
                else:
                    fits, why = fits_one_card(cfg.model_copy(update={"method": m}), s.hardware)
                    strategies[m] = ("ddp" if fits else "fsdp", why)
        choice = compare_methods(arch, vram, world, settings,
                                 strategies={m: st for m, (st, _) in strategies.items()})
        if vram and choice.recommended is None:  # nothing fits as asked: the nearest setting that does
            from ftwizard.core.estimate import find_fitting

            choice.proposal = find_fitting(arch, vram, settings)
        return arch, vram, world, choice, strategies

    @on(Worker.StateChanged)
    def _estimated(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "method-estimate":
            return
        event.stop()
        if event.state == WorkerState.SUCCESS:
            self._show(*event.worker.result)
        elif event.state == WorkerState.ERROR:
            err = event.worker.error
            msg = "; ".join(p.message for p in getattr(err, "problems", [])) or str(err)
            self.query_one("#method-target", Static).update(
                f"Cannot estimate memory for {self.state.model or 'this model'}: {msg}\n"
                "Choose a method anyway; the training run will tell if it runs out of memory.")
            self._choice = None
            self._fill_plain()

    def _fill_plain(self) -> None:
        methods = self.query_one("#methods", OptionList)
        methods.clear_options()
        for m in ("full", "lora", "qlora"):
            methods.add_option(Option(m, id=m))
        methods.highlighted = ("full", "lora", "qlora").index(self._method)
        self.validity_changed()

    def _show(self, arch, vram, gpus, choice, strategies) -> None:
        from ftwizard.core.catalog import display_name

        self._choice = choice
        self._strategies = strategies
        hw = self.state.hardware
        target = self.query_one("#method-target", Static)
        if vram:
            card = hw.gpus[0].name.replace("NVIDIA ", "")
            unused = len(hw.gpus) - gpus
            target.update(f"{display_name(arch)} on {gpus}x {card} ({vram:.1f} GiB free"
                          + (" on the smallest card" if gpus > 1 else "") + ")"
                          + (f" · a run trains on {gpus} of the {len(hw.gpus)} cards" if unused > 0 else ""))
        else:
            ram = f"{hw.ram_available_gib:.0f} GB RAM free" if hw else "RAM unknown"
            target.update(f"{display_name(arch)} · no GPU on this machine ({ram}): the bars show what a "
                          "GPU would need. On a CPU only small models (a few hundred million parameters) "
                          "train in reasonable time.")
        scale = max([vram or 0.0] + [e.total_gib for _, e, _ in choice.rows])
        methods = self.query_one("#methods", OptionList)
        methods.clear_options()
        for m, est, verdict in choice.rows:
            line = Text(f"{m:<6}")
            line.append(bar(est.total_gib, scale), style=VERDICT_STYLE.get(verdict, ""))
            line.append(f" {est.total_gib:6.1f} GiB  ")
            if verdict:
                line.append(VERDICT_TEXT[verdict], style=VERDICT_STYLE[verdict])
            if m in self._strategies:
                line.append(f" · {self._strategies[m][0]}")
            if m == choice.recommended:
                line.append(" · recommended", style="bold")
            methods.add_option(Option(line, id=m))
        proposal = choice.proposal
        self._proposal = proposal if proposal is not None and proposal.fits else None
        if vram and choice.recommended:
            self._method = choice.recommended
        elif self._proposal is not None:
            self._method = self._proposal.method
        methods.highlighted = [m for m, _, _ in choice.rows].index(self._method)
        if vram and self._proposal is not None:
            p = self._proposal
            self.query_one("#method-reason", Static).update(
                f"Nothing fits at batch {self.state.train_config.batch_size} x "
                f"{self.state.train_config.max_length:,} tokens, but {p.describe()}. Choosing {p.method} "
                "applies these settings.")
        elif vram and proposal is not None and proposal.more_cards:
            self.query_one("#method-reason", Static).update(
                choice.reason.split(" (")[0] + f"; no setting fits one card: it would take {proposal.more_cards}.")
        elif vram:
            self.query_one("#method-reason", Static).update(
                ("Why " + choice.recommended + ": " if choice.recommended else "") + choice.reason)
        else:
            self.query_one("#method-reason", Static).update(
                f"No GPU, so no method is picked from memory: {self._method} is kept. The saved config "
                "runs unchanged on a GPU machine (ftwizard train CONFIG).")
        self._show_breakdown()
        self.validity_changed()

    def _show_breakdown(self) -> None:
        if self._choice is None:
            return
        _, est, verdict = self._choice.row(self._method)
        parts = " · ".join(f"{k} {v:.2f}" for k, v in est.breakdown.items() if v >= 0.005)
        assumed = "; ".join(est.assumptions[:3])
        per_card = ""
        if self._method in self._strategies:  # several cards: the figure is per card, under this strategy
            strategy, why = self._strategies[self._method]
            per_card = f"per card of {est.settings.gpus}, strategy {strategy}: {why}\n"
        self.query_one("#breakdown", Static).update(
            f"{per_card}{self._method} breakdown (GiB): {parts}\nassumed: {assumed}")

    @on(OptionList.OptionHighlighted, "#methods")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._method = event.option.id
        self._show_breakdown()
        self.validity_changed()

    @on(OptionList.OptionSelected, "#methods")
    def _selected(self) -> None:
        self.action_next()

    # ------------------------------------------------------------------------------ validity

    def is_valid(self) -> bool:
        return getattr(self, "_method", None) in ("full", "lora", "qlora") and not self._estimating()

    def why_invalid(self) -> str:
        return "estimating…" if self._estimating() else "choose a method"

    def _estimating(self) -> bool:
        return any(w.group == "method-estimate" and w.is_running for w in self.workers)

    def commit(self) -> None:
        p = getattr(self, "_proposal", None)
        if p is None or p.method != self._method:
            self.wizard.set_state(self.state.replace(method=self._method))
            return
        # the setting that fits, into the config the later steps show (Proposal.config_changes)
        train, lora = {}, {}
        for key, value in p.config_changes().items():
            section, name = key.split(".")
            (train if section == "train" else lora)[name] = value
        self.wizard.set_state(self.state.replace(
            method=self._method, train=self.state.train_config.model_copy(update=train),
            lora=self.state.lora_config.model_copy(update=lora)))
