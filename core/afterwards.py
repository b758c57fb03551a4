"""After training: chat with the tuned model, compare it with the base, evaluate both, merge an adapter.

Everything starts from the run directory: its `config.yaml` names the base model, `output/` holds the
adapter (LoRA/QLoRA) or the whole model (full), with the tokenizer and the chat template it was
trained with (so generation stops at the right end-of-turn token).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def load_tuned(run_dir: str | Path, *, device: str | None = None) -> Tuned:
    """The tuned model of a run (base + adapter, or the full model) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    out = output_dir(run_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    remote = cfg.model.trust_remote_code
    tok = AutoTokenizer.from_pretrained(str(out), trust_remote_code=remote)
    if (out / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base(cfg, dtype), str(out))
        is_adapter = True
    else:
        model = AutoModelForCausalLM.from_pretrained(str(out), dtype=dtype, trust_remote_code=remote)
        is_adapter = False
    model.to(device).eval()
    return Tuned(model, tok, is_adapter, cfg)


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


def evaluate(run_dir: str | Path, data: str | None = None, *, max_rows: int | None = 200) -> dict:
    """Mean loss per trained token of the tuned model and of the base, on the run's validation split
    (or on `data`), tokenized exactly as in training. Lower is better; perplexity = exp(loss)."""
    import math

    import torch

    from .data.prepare import prepare_training_data
    from .templates import choose_template

    run_dir = Path(run_dir)
    tuned = load_tuned(run_dir)
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
