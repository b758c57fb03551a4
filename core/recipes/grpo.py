"""GRPO with verifiable rewards (training: grpo): setup -> train -> save, on the shared set-up of
common.py and TRL's GRPOTrainer (stable API, `trl.GRPOTrainer`).

Feature -> config key:
    model, full / LoRA / QLoRA      model.*, method, lora.*, quantization.* (as SFT)
    prompts                         dataset.path: prompt-only rows, `prompt` a string or a list of
                                    messages (dataset.columns renames); every other column is passed
                                    to the reward functions by name; dataset.max_rows, validation,
                                    validation_path as SFT
    prompt budget                   train.max_length - grpo.max_completion_length tokens: longer
                                    prompts are left out (a warning event says how many)
    group size, completion length   grpo.num_generations, grpo.max_completion_length, grpo.temperature
    KL penalty                      grpo.beta (0: no reference model, TRL's default loss "dapo")
    rewards                         grpo.rewards, grpo.reward_weights (core/rewards.py: built-ins, your
                                    FILE.py:FUNCTION, the sandboxed code reward)
    generation engine               grpo.use_vllm (written at run creation: a GPU with vLLM installed);
                                    else the model's own generate
    schedule, memory, telemetry     train.* as SFT; train events also carry reward_mean, reward_std,
                                    rewards, completion_length_mean, clipped_ratio, zero_std_ratio;
                                    `sample` events carry the latest completions with their rewards
    resume                          --resume: from the newest whole, finite checkpoint
"""

from __future__ import annotations

from ..config import RunConfig
from ..errors import UserError
from . import common
from .common import Outcome, Run

SAMPLES_PER_LOG = 4  # `sample` events written at each log step (the latest completions)


def recipe(cfg: RunConfig, run: Run, resume: bool) -> Outcome:
    # ---- setup
    ckpt = common.resume_checkpoint(run.dir, resume, run)
    common.skip_unneeded_imports(cfg)
    dev = common.device_for(cfg)
    run.events.emit("info", key="device", value=dev.event())
    model, tok, _template = common.setup_model(cfg, dev, run)
    train_ds, eval_ds = setup_prompts(cfg, tok, run)
    trainer = build_trainer(cfg, run, dev, model, tok, train_ds, eval_ds)
    # ---- train
    trainer.train(resume_from_checkpoint=ckpt)
    # ---- save
    return common.save(trainer, tok, cfg, run)


# ------------------------------------------------------------------------------------------- data


def read_prompt_rows(cfg: RunConfig, path: str | None = None, limit: int | None = None) -> list[dict]:
    """Prompt-only rows of `path` (default dataset.path), columns renamed by dataset.columns; an unreadable
    row or one without a usable prompt is a UserError naming its file and line (data/kinds.py)."""
    from ..data.kinds import iter_prompt_rows

    d = cfg.dataset
    source = path or d.path
    rows = [row for _, _, row in iter_prompt_rows(source, columns=d.columns, split=d.split,
                                                  limit=limit if limit is not None else d.max_rows)]
    if not rows:
        raise UserError("no rows", file=source, field="dataset.path")
    return rows


def setup_prompts(cfg: RunConfig, tok, run: Run):
    """(train, validation or None) as datasets.Dataset of prompt rows with their extra columns."""
    from datasets import Dataset

    from ..data.split import split_indices

    d, g = cfg.dataset, cfg.grpo
    run.phase("loading_data", d.path)
    rows = read_prompt_rows(cfg)
    budget = prompt_budget(cfg.train.max_length, g.max_completion_length)
    if budget < 1:
        raise UserError(f"{cfg.train.max_length} leaves no room for prompts after grpo.max_completion_length "
                        f"({g.max_completion_length}): raise it", field="train.max_length")
    keep = [r for r in rows if prompt_tokens(tok, r["prompt"]) <= budget]
    if len(keep) < len(rows):
        run.events.emit("warning", code="prompt-too-long",
                        message=f"{len(rows) - len(keep)} of {len(rows)} prompts are longer than the prompt budget "
                                f"({budget} tokens = train.max_length - grpo.max_completion_length) and were left out",
                        evidence={"left_out": len(rows) - len(keep), "budget": budget})
    if not keep:
        raise UserError(f"every prompt is longer than {budget} tokens (train.max_length - grpo.max_completion_length)",
                        field="train.max_length")
    if d.validation_path:
        train_rows, eval_rows = keep, read_prompt_rows(cfg, d.validation_path)
    else:
        ti, vi = split_indices(len(keep), d.validation, cfg.train.seed)
        train_rows, eval_rows = [keep[i] for i in ti], [keep[i] for i in vi]
    run.events.emit("info", key="dataset", value={"format": "prompt-only", "train_rows": len(train_rows),
                                                  "validation_rows": len(eval_rows),
                                                  "columns": sorted(train_rows[0])})
    run.facts = {"rows": len(train_rows), "max_length": cfg.train.max_length}
    eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
    if cfg.train.early_stopping_patience and eval_ds is None:
        raise UserError("needs validation rows, but the validation split of this dataset is empty: raise "
                        "dataset.validation or set dataset.validation_path", field="train.early_stopping_patience")
    return Dataset.from_list(train_rows), eval_ds


def prompt_budget(max_length: int, max_completion_length: int) -> int:
    """The tokens a GRPO prompt may take: train.max_length less grpo.max_completion_length (longer prompts
    are left out of training)."""
    return max_length - max_completion_length


def prompt_tokens(tok, prompt) -> int:
    from ..data.kinds import grpo_prompt_tokens

    return grpo_prompt_tokens(tok, prompt)


# ---------------------------------------------------------------------------------------- trainer


def build_trainer(cfg: RunConfig, run: Run, dev: common.Device, model, tok, train_ds, eval_ds):
    """TRL's GRPOTrainer with the rewards of grpo.rewards and the GRPO events."""
    from trl import GRPOConfig, GRPOTrainer

    from ..rewards import reward_functions

    g = cfg.grpo
    steps = common.planned_steps(cfg, len(train_ds) * g.num_generations)  # a step takes batch completions
    base = common.trainer_arguments(cfg, dev, run, steps, eval_ds is not None)
    base["remove_unused_columns"] = False  # the extra columns are the rewards' inputs
    args = GRPOConfig(**base, num_generations=g.num_generations, max_completion_length=g.max_completion_length,
                      beta=g.beta, temperature=g.temperature, reward_weights=g.reward_weights,
                      use_vllm=g.use_vllm, log_completions=False, shuffle_dataset=True,
                      # the model is loaded with use_cache off (training): generation needs its KV cache
                      generation_kwargs={"use_cache": True})
    funcs = reward_functions(g)
    # Not speed_trainer: its loss and longest-first sampler are SFT's; GRPO's step is generation-bound.
    trainer = GRPOTrainer(model=model, args=args, reward_funcs=funcs, train_dataset=train_ds,
                          eval_dataset=eval_ds, processing_class=tok)
    run.train_metrics = train_metrics
    common.add_callbacks(trainer, cfg, run, dev, SeenTokens(trainer))
    trainer.add_callback(samples_callback(run, trainer))
    return trainer


class SeenTokens:
    """The events callback's token counter for GRPO: prompt + completion tokens so far, as TRL counts
    them (state.num_input_tokens_seen), so tokens_per_s is the generation-and-training throughput."""

    def __init__(self, trainer):
        self.trainer = trainer

    @property
    def tokens(self) -> int:
        return int(self.trainer.state.num_input_tokens_seen or 0)


def train_metrics(logs: dict) -> dict:
    """The GRPO numbers of a TRL log, under the names of the `train` event (core/events.py)."""
    names = {"reward": "reward_mean", "reward_std": "reward_std", "completions/mean_length": "completion_length_mean",
             "completions/clipped_ratio": "clipped_ratio", "frac_reward_zero_std": "zero_std_ratio"}
    ev = {ours: logs[theirs] for theirs, ours in names.items() if theirs in logs}
    per = {k[len("rewards/"):-len("/mean")]: v for k, v in logs.items()
           if k.startswith("rewards/") and k.endswith("/mean")}
    if per:
        ev["rewards"] = per
    return ev


def samples_callback(run: Run, trainer):
    """`sample` events at each log step: the latest SAMPLES_PER_LOG completions of the trainer's own
    completion log (GRPOTrainer._logs, kept by TRL for log_completions whether or not it prints them)."""
    from transformers import TrainerCallback

    class Samples(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            book = getattr(trainer, "_logs", None)
            if not book or not book.get("prompt"):
                return
            prompts, completions = list(book["prompt"]), list(book["completion"])
            rewards = {name: list(v) for name, v in book["rewards"].items()}
            adv = list(book.get("advantages") or [])
            n = len(prompts)
            for i in range(max(0, n - SAMPLES_PER_LOG), n):
                run.events.emit("sample", step=state.global_step, prompt=prompts[i], completion=completions[i],
                                rewards={k: _num(v[i]) for k, v in rewards.items() if i < len(v)},
                                advantage=_num(adv[i]) if i < len(adv) else None)

    return Samples()


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else round(f, 6)
