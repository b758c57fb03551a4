"""The forgetting check: perplexity of the base and of the tuned model on a small general-text sample.

Fine-tuning on a narrow task can erode what a model knew before (catastrophic forgetting: the Llama
fine-tuning guide and the reference note warn of it). A rise of the perplexity on ordinary English text
between the base and the tuned model is a cheap signal of it. The sample ships with the package
(`presets/data/general-sample.jsonl`, written for ftwizard, 32 short paragraphs on everyday topics) and is
also a ready `dataset.replay` source: mixing some general text into training is the usual remedy.

The result is stored in the run directory (`forgetting.json`) so the finished screen and `evaluate`
show it without loading a model twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

RESULT = "forgetting.json"
# Perplexity on general text that rises by more than this fraction between base and tuned is reported
# as a warning. 20%: the run-to-run noise of a LoRA on unrelated data stays well below it (the tiny
# model's 40-step LoRA moved it by a few percent), while a model that lost its English moves it far more.
THRESHOLD = 0.20
GENERAL_SAMPLE = "general"  # dataset.replay.path may name the shipped sample by this word


def general_sample_path() -> Path:
    """The shipped general-text sample (JSONL, one {"text": ...} per line)."""
    import ftwizard.presets as pkg

    return Path(pkg.__file__).parent / "data" / "general-sample.jsonl"


def general_texts(path: str | Path | None = None) -> list[str]:
    p = Path(path) if path else general_sample_path()
    out = []
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line)["text"])
    return out


@dataclass
class Forgetting:
    base_ppl: float
    tuned_ppl: float
    tokens: int
    threshold: float = THRESHOLD

    @property
    def rise(self) -> float:
        """Relative change of the perplexity, tuned vs base (0.25 = 25% higher)."""
        return self.tuned_ppl / self.base_ppl - 1.0

    @property
    def warning(self) -> str | None:
        if self.rise <= self.threshold:
            return None
        return (f"General-text perplexity rose {self.rise:.0%} ({self.base_ppl:.2f} -> {self.tuned_ppl:.2f}): the "
                "model may have forgotten some of its general ability. Consider fewer steps, a lower learning "
                "rate, or mixing general text into training (dataset.replay: {path: general, fraction: 0.1}).")

    def summary(self) -> str:
        return (f"general-text perplexity: base {self.base_ppl:.2f}, tuned {self.tuned_ppl:.2f} "
                f"({self.rise:+.0%}, {self.tokens} tokens)")

    def to_json(self) -> dict:
        return {**asdict(self), "rise": round(self.rise, 4), "warning": self.warning}


def perplexity(model, tokenizer, texts: list[str], max_length: int = 512) -> tuple[float, int]:
    """(perplexity, predicted tokens) of `model` over `texts`, each text one sequence (cut at max_length)."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"]
            if ids.shape[1] < 2:
                continue
            ids = ids.to(model.device)
            n = ids.shape[1] - 1
            total += float(model(input_ids=ids, labels=ids).loss) * n
            count += n
    return math.exp(total / max(count, 1)), count


def check(tuned, run_dir: str | Path | None = None, *, texts: list[str] | None = None) -> Forgetting:
    """Base vs tuned perplexity on the general sample; saved as forgetting.json in `run_dir` when given.
    `tuned` is an `afterwards.Tuned`: adapters are switched off for the base; a full fine-tune loads the base."""
    texts = texts or general_texts()
    max_length = min(512, tuned.cfg.train.max_length)
    tuned_ppl, n = perplexity(tuned.model, tuned.tokenizer, texts, max_length)
    if tuned.is_adapter:
        with tuned.base_context():
            base_ppl, _ = perplexity(tuned.model, tuned.tokenizer, texts, max_length)
    else:
        base = tuned.load_base()
        base_ppl, _ = perplexity(base, tuned.tokenizer, texts, max_length)
        del base
    res = Forgetting(round(base_ppl, 4), round(tuned_ppl, 4), n)
    if run_dir is not None:
        (Path(run_dir) / RESULT).write_text(json.dumps(res.to_json(), indent=1), encoding="utf-8")
    return res


def load_result(run_dir: str | Path) -> Forgetting | None:
    """The stored check of a run, or None when it has not been made."""
    p = Path(run_dir) / RESULT
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return Forgetting(d["base_ppl"], d["tuned_ppl"], d["tokens"], d.get("threshold", THRESHOLD))
    except (OSError, ValueError, KeyError):
        return None


def training_callback(run_dir: str | Path, tokenizer, max_length: int, world_size: int = 1):
    """A TrainerCallback that makes the check inside the training process, where the model is already in
    memory: the base perplexity before the first step (or, for adapters, with the adapter switched off at
    the end), the tuned one when training ends; written as forgetting.json. One process only (a sharded
    model cannot run a forward pass on one rank): on several, `ftwizard evaluate` makes the check."""
    from transformers import TrainerCallback

    texts = general_texts()
    max_length = min(512, max_length)

    def ppl(model) -> tuple[float, int]:
        was_training = model.training
        model.eval()
        try:
            return perplexity(model, tokenizer, texts, max_length)
        finally:
            model.train(was_training)

    class ForgettingCallback(TrainerCallback):
        base: float | None = None

        def on_train_begin(self, args, state, control, model=None, **kw):
            if world_size == 1 and state.global_step == 0 and not hasattr(model, "disable_adapter"):
                self.base = ppl(model)[0]

        def on_train_end(self, args, state, control, model=None, **kw):
            if world_size != 1 or model is None:
                return
            tuned, n = ppl(model)
            base = self.base
            if hasattr(model, "disable_adapter"):
                with model.disable_adapter():
                    base = ppl(model)[0]
            if base is None:
                return  # a resumed full fine-tune: its base was not measured in this process
            res = Forgetting(round(base, 4), round(tuned, 4), n)
            tmp = Path(run_dir) / (RESULT + ".tmp")
            tmp.write_text(json.dumps(res.to_json(), indent=1), encoding="utf-8")
            tmp.replace(Path(run_dir) / RESULT)

    return ForgettingCallback()
