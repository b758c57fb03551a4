"""After training: chat with the tuned model, compare it with the base, evaluate both, merge an adapter.

Everything starts from the run directory: its `config.yaml` names the base model, `output/` holds the
adapter (LoRA/QLoRA) or the whole model (full), with the tokenizer and the chat template it was
trained with (so generation stops at the right end-of-turn token).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .config import RunConfig, load_config
from .errors import UserError
from .runs import CONFIG


@dataclass
class Tuned:
    model: object
    tokenizer: object
    is_adapter: bool
    cfg: RunConfig

    def base_context(self):
        """A context in which the model answers as the base model (adapters off)."""
        import contextlib

        if self.is_adapter:
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    def load_base(self):
        """The base model as a separate model, on the tuned model's device and dtype (full fine-tunes)."""
        return load_base(self.cfg, self.model.dtype).to(self.model.device).eval()


def output_dir(run_dir: Path) -> Path:
    out = Path(run_dir) / "output"
    if not out.is_dir() or not any(out.iterdir()):
        raise UserError("this run has no trained output yet (it saves into output/ when it ends or stops)",
                        file=str(out), field="RUN")
    return out


def base_model_path(cfg: RunConfig) -> str:
    from .models import check_model_source, gguf_checkpoint

    path = check_model_source(cfg.model.name_or_path, cfg.model.gguf_file)
    if cfg.model.gguf_file:
        path = gguf_checkpoint(path, cfg.model.gguf_file)
    return path


def load_base(cfg: RunConfig, dtype):
    """The base model a run trained on: the same model.name_or_path / gguf_file, at the same
    model.revision, with the same model.trust_remote_code, so an adapter lands on the right base."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base_model_path(cfg), dtype=dtype, revision=cfg.model.revision,
                                                trust_remote_code=cfg.model.trust_remote_code)


LOAD_STEPS = ("libraries", "tokenizer", "model", "adapter", "ready")


def load_tuned(run_dir: str | Path, *, device: str | None = None,
               progress: Callable[[str, float], None] = lambda what, frac: None) -> Tuned:
    """The tuned model of a run (base + adapter, or the full model) and its tokenizer. `progress(what,
    fraction)` is called as each part starts (libraries, tokenizer, model, adapter) and at the end."""
    progress("importing torch and transformers", 0.0)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    out = output_dir(run_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    remote = cfg.model.trust_remote_code
    progress("loading the tokenizer", 0.25)
    tok = AutoTokenizer.from_pretrained(str(out), trust_remote_code=remote)
    if (out / "adapter_config.json").exists():
        from peft import PeftModel

        progress(f"loading the base model {Path(cfg.model.name_or_path).name}", 0.35)
        base = load_base(cfg, dtype)
        progress("loading the adapter", 0.85)
        model = PeftModel.from_pretrained(base, str(out))
        is_adapter = True
    else:
        progress("loading the model", 0.35)
        model = AutoModelForCausalLM.from_pretrained(str(out), dtype=dtype, trust_remote_code=remote)
        is_adapter = False
    model.to(device).eval()
    progress("ready", 1.0)
    return Tuned(model, tok, is_adapter, cfg)


@dataclass
class GenSettings:
    """Generation settings, shown on the chat screen: greedy when temperature is 0."""
    max_new_tokens: int = 200
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def describe(self) -> str:
        how = "greedy" if self.temperature <= 0 else f"temperature {self.temperature:g} · top-p {self.top_p:g}"
        return f"{how} · max {self.max_new_tokens} new tokens"


def stream_generate(tuned: Tuned, messages: list[dict], settings: GenSettings | None = None, *,
                    base: bool = False) -> Iterator[str]:
    """The assistant's answer to `messages` as text pieces, in order, while it is generated
    (transformers' TextIteratorStreamer; generate() runs in a thread of its own)."""
    import threading

    import torch
    from transformers import TextIteratorStreamer

    s = settings or GenSettings()
    tok, model = tuned.tokenizer, tuned.model
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=600)
    kwargs = dict(**enc, streamer=streamer, max_new_tokens=s.max_new_tokens, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    if s.temperature > 0:
        torch.manual_seed(s.seed)
        kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
    else:
        kwargs.update(do_sample=False)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad(), (tuned.base_context() if base else _null()):
                model.generate(**kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True, name="ftwizard-generate")
    thread.start()
    for piece in streamer:
        if piece:
            yield piece
    thread.join()
    if errors:
        raise errors[0]


def generate(tuned: Tuned, messages: list[dict], *, max_new_tokens: int = 200, base: bool = False,
             temperature: float = 0.0, seed: int = 0) -> str:
    """One assistant answer to `messages` (greedy unless temperature > 0)."""
    import torch

    tok, model = tuned.tokenizer, tuned.model
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    if temperature > 0:
        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=temperature)
    else:
        kwargs.update(do_sample=False)
    with torch.no_grad(), (tuned.base_context() if base else _null()):
        out = model.generate(**enc, **kwargs)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def _null():
    import contextlib

    return contextlib.nullcontext()


def evaluate(run_dir: str | Path, data: str | None = None, *, max_rows: int | None = 200,
             generations: int = 20, max_new_tokens: int = 64, forgetting: bool = True,
             lm_eval_spec: str | None = None, lm_eval_limit: int | None = None,
             progress=lambda msg: None) -> dict:
    """Base vs tuned on held-out data: (1) mean loss per trained token on the run's validation split (or
    `data`), tokenized exactly as in training (lower is better; perplexity = exp(loss)); (2) a generation
    report on the first `generations` validation prompts; (3) the forgetting check on general text;
    (4) lm-evaluation-harness tasks when `lm_eval_spec` names some. Saved as evaluation.json in the run."""
    import json

    run_dir = Path(run_dir)
    if lm_eval_spec:
        require_lm_eval()
        lm_eval_tasks(lm_eval_spec)  # bad task files refused before any model loads
    progress("loading the model")
    tuned = load_tuned(run_dir)
    progress("loss on held-out data")
    res = loss_report(tuned, data, max_rows=max_rows)
    if generations:
        progress(f"answering {generations} validation prompts")
        rows = validation_rows(tuned.cfg, data, max_rows=generations)
        res["generation"] = generation_report(tuned, rows, max_new_tokens=max_new_tokens)
    if forgetting:
        from .forgetting import check

        progress("forgetting check on general text")
        res["forgetting"] = check(tuned, run_dir).to_json()
    if lm_eval_spec:
        progress(f"lm-eval {lm_eval_spec}")
        res["lm_eval"] = lm_eval(tuned, lm_eval_spec, limit=lm_eval_limit)
    (run_dir / EVALUATION).write_text(json.dumps(res, indent=1, ensure_ascii=False), encoding="utf-8")
    return res


def require_lm_eval() -> None:
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise UserError(f"--lm-eval needs lm-evaluation-harness: pip install 'ftwizard[{LM_EVAL_EXTRA}]'",
                        field="--lm-eval")


def loss_report(tuned: Tuned, data: str | None = None, *, max_rows: int | None = 200) -> dict:
    """Mean loss per trained token of the tuned model and of the base (see `evaluate`)."""
    import math

    import torch

    from .data.prepare import prepare_training_data
    from .templates import choose_template

    cfg = tuned.cfg.model_copy(deep=True)
    if data:
        cfg.dataset.path, cfg.dataset.validation_path, cfg.dataset.validation = data, None, 0.0
    template, _ = choose_template(tuned.tokenizer.chat_template, cfg.model.chat_template,
                                  cfg.dataset.assistant_only_loss)
    train_ds, eval_ds, _ = prepare_training_data(cfg, tuned.tokenizer, template, lambda *a, **k: None)
    ds = train_ds if data else eval_ds
    if ds is None or len(ds) == 0:
        raise UserError("no validation rows in this run: pass --data FILE", field="--data")
    if max_rows:
        ds = ds.select(range(min(max_rows, len(ds))))

    def mean_loss(base: bool) -> float:
        total, count = 0.0, 0
        with torch.no_grad(), (tuned.base_context() if base else _null()):
            for row in ds:
                ids = torch.tensor([row["input_ids"]], device=tuned.model.device)
                labels = torch.tensor([row["labels"]], device=tuned.model.device)
                n = int((labels[:, 1:] != -100).sum())
                if n == 0:
                    continue
                loss = tuned.model(input_ids=ids, labels=labels).loss
                total += float(loss) * n
                count += n
        return total / max(count, 1)

    tuned_loss = mean_loss(base=False)
    base_loss = mean_loss(base=True) if tuned.is_adapter else None
    return {"rows": len(ds), "tuned_loss": round(tuned_loss, 4), "tuned_ppl": round(math.exp(tuned_loss), 3),
            "base_loss": None if base_loss is None else round(base_loss, 4),
            "base_ppl": None if base_loss is None else round(math.exp(base_loss), 3),
            "data": data or "the run's validation split"}


# ------------------------------------------------------------------------------ generation report

EVALUATION = "evaluation.json"  # the last `evaluate` of a run, in its directory


def validation_rows(cfg: RunConfig, data: str | None = None, max_rows: int | None = None) -> list[dict]:
    """Canonical rows of the run's validation split (the same split training made: dataset.validation_path,
    or dataset.validation of the rows with train.seed), or of `data` when given."""
    from .data.formats import detect_source
    from .data.prepare import read_canonical
    from .data.split import split_indices

    d = cfg.dataset
    source = data or d.validation_path
    if source:
        det, _, _ = detect_source(source, columns=d.columns, format=d.format, split=d.split)
        rows = read_canonical(source, det, split=d.split, max_rows=max_rows)[0]
        return rows
    det, _, _ = detect_source(d.path, columns=d.columns, format=d.format, split=d.split)
    rows, labels, _, _ = read_canonical(d.path, det, split=d.split, max_rows=d.max_rows)
    _, va = split_indices(len(rows), d.validation, cfg.train.seed, labels)
    return [rows[i] for i in va][:max_rows]


def prompt_and_reference(row: dict) -> tuple[list[dict], str] | None:
    """(messages to answer, the reference answer) of a canonical row: the conversation up to its last
    assistant turn; prompt/completion rows as one user turn. None for raw text (nothing to answer)."""
    if "messages" in row:
        msgs = row["messages"]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if not last:
            return None
        return [dict(role=m["role"], content=m["content"]) for m in msgs[:last]], msgs[last]["content"]
    if "prompt" in row:
        return [{"role": "user", "content": row["prompt"]}], row["completion"]
    return None


def _norm(s: str) -> str:
    return " ".join(s.lower().strip().rstrip(".!").split())


def label_like(references: list[str]) -> bool:
    """Answers that are labels (a class, a yes/no, a number) rather than prose: every reference is short
    (at most 4 words) and they repeat (fewer distinct answers than half the rows, or at most 20)."""
    if not references:
        return False
    distinct = {_norm(r) for r in references}
    return all(len(r.split()) <= 4 for r in references) and         (len(distinct) <= 20 or len(distinct) <= len(references) // 2)


def generation_report(tuned: Tuned, rows: list[dict], *, max_new_tokens: int = 64) -> dict:
    """Base and tuned answers to the validation prompts beside the reference; where the data is
    label-like, exact-match accuracy of both (normalised: case, spaces, a final full stop)."""
    items = [pr for pr in (prompt_and_reference(r) for r in rows) if pr is not None]
    exact = label_like([ref for _, ref in items])
    out = []
    for msgs, ref in items:
        rec = {"prompt": msgs[-1]["content"], "reference": ref,
               "tuned": generate(tuned, msgs, max_new_tokens=max_new_tokens)}
        if tuned.is_adapter:
            rec["base"] = generate(tuned, msgs, max_new_tokens=max_new_tokens, base=True)
        out.append(rec)
    rep: dict = {"mode": "exact_match" if exact else "side_by_side", "rows": out}
    if exact and out:
        for who in ("tuned", "base"):
            if who in out[0]:
                rep[f"{who}_exact_match"] = round(sum(_norm(r[who]) == _norm(r["reference"]) for r in out)
                                                  / len(out), 4)
    return rep


# ------------------------------------------------------------------------------ lm-evaluation-harness

LM_EVAL_EXTRA = "lm-eval"


def lm_eval_tasks(spec: str) -> tuple[list[str], list[str]]:
    """(task names, include paths) from --lm-eval: comma-separated task names, or paths to local task
    YAML files / folders of them (their folder is added to the task search path; the task name is the
    file's `task:`). Local tasks with local data files run offline."""
    import yaml

    names, include = [], []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        p = Path(item).expanduser()
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            try:
                task = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("task")
            except yaml.YAMLError as e:
                raise UserError(f"not a task file: {e}", file=str(p), field="--lm-eval")
            if not task:
                raise UserError("a task file needs a `task:` name", file=str(p), field="--lm-eval")
            names.append(task if isinstance(task, str) else task[0])
            include.append(str(p.parent.resolve()))
        elif p.is_dir():
            include.append(str(p.resolve()))
        else:
            names.append(item)
    return names, sorted(set(include))


def lm_eval(tuned: Tuned, spec: str, *, limit: int | None = None, batch_size: int = 4) -> dict:
    """lm-evaluation-harness tasks on the base and the tuned model: {task: {metric: {base, tuned}}}.
    Needs the optional extra (`pip install 'ftwizard[lm-eval]'`); refused with that line otherwise."""
    require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names, include = lm_eval_tasks(spec)
    tm = TaskManager(include_path=include or None)
    unknown = [n for n in names if n not in tm.all_tasks]
    if unknown:
        raise UserError(f"unknown lm-eval task {unknown[0]} (a task name, or a local task .yaml file)",
                        field="--lm-eval")
    if not names and include:
        raise UserError("no task named: give task names or task .yaml files", field="--lm-eval")

    def run(model, base: bool = False) -> dict:
        lm = HFLM(pretrained=model, tokenizer=tuned.tokenizer, batch_size=batch_size,
                  max_length=tuned.cfg.train.max_length)
        with tuned.base_context() if base else _null():
            try:
                res = simple_evaluate(model=lm, tasks=names, task_manager=tm, limit=limit, log_samples=False,
                                      bootstrap_iters=0, verbosity="ERROR")
            except FileNotFoundError as e:  # a local task's data_files (relative ones: to the current dir)
                raise UserError(f"lm-eval task data not found: {e} (give data_files as absolute paths)",
                                field="--lm-eval") from None
        return res["results"]

    tuned_res = run(tuned.model)
    if tuned.is_adapter:
        base_res = run(tuned.model, base=True)
    else:  # a full fine-tune keeps no base in memory: load it for this
        base_res = run(tuned.load_base())
    table: dict = {}
    for task, metrics in tuned_res.items():
        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or "stderr" in key or key == "sample_len":
                continue
            table.setdefault(task, {})[key.split(",")[0]] = {
                "tuned": _num(value), "base": _num(base_res.get(task, {}).get(key))}
    return table


def _num(v):
    return round(float(v), 4) if isinstance(v, (int, float)) else None


def merge(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Merge a LoRA adapter into its base model and save a standalone model (never over an existing dir).
    QLoRA adapters are merged into the 16-bit base (the 4-bit weights are not what one ships)."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    src = output_dir(run_dir)
    if not (src / "adapter_config.json").exists():
        raise UserError("this run trained the full model: output/ is already a standalone model",
                        file=str(src), field="RUN")
    dest = Path(out) if out else run_dir / "merged"
    if dest.exists():
        raise UserError("already exists; choose another --out (nothing is overwritten)", file=str(dest),
                        field="--out")
    model = PeftModel.from_pretrained(load_base(cfg, torch.bfloat16), str(src)).merge_and_unload()
    tmp = dest.with_name(dest.name + ".partial")
    model.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(src), trust_remote_code=cfg.model.trust_remote_code).save_pretrained(str(tmp))
    tmp.rename(dest)
    return dest
