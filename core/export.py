"""Export a run: a merged standalone model, a GGUF (llama.cpp's own converter), an Ollama Modelfile,
and the template round-trip check that proves they behave as the model did in training.

Layout of an export directory (default RUN/export; never overwritten; built in a hidden sibling
`.NAME.partial-PID` and renamed at the end, so it is there whole or not at all):

    merged/            the standalone model (safetensors, --dtype) + the tokenizer and chat template
                       it was trained with (ftwizard's `{% generation %}` training markers removed:
                       same rendering, and llama.cpp's Jinja engine does not know that tag)
    RUNNAME-TYPE.gguf  --gguf TYPE, from llama.cpp's convert_hf_to_gguf.py (+ llama-quantize)
    Modelfile          --ollama NAME: FROM the GGUF, TEMPLATE, SYSTEM, stop tokens, parameters
    export.json        what was exported, from which run, with the times of each step
    check.json         the round-trip check's findings and measured differences
    convert.log        the converter's output

The round-trip check (`check_export`, also `ftwizard export RUN --check`) compares, each with the
first differing character on a mismatch:
1. the merged tokenizer's chat template rendering with the run's output/ tokenizer's (two turns,
   with and without a system message);
2. the GGUF's embedded chat template with the merged one (text, and rendering), its BOS/EOS/EOT
   token ids and their strings with the tokenizer's, every special token's id;
3. the Modelfile's TEMPLATE (rendered as Ollama does, plus the BOS the runtime adds) with the
   tokenizer's rendering, and its stop tokens with the end-of-turn token;
4. the next-token distribution of the GGUF loaded back by transformers with the merged model's on
   validation rows (every position): max |p - q|, mean KL, top-1 agreement, within TOLERANCE.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Problem, UserError

DTYPES = ("bf16", "fp16", "fp32")
EXPORT_JSON, CHECK_JSON, MODELFILE, MERGED = "export.json", "check.json", "Modelfile", "merged"
# Allowed next-token distribution differences, GGUF (loaded back by transformers) vs the merged model
# in fp32, at every position of the validation rows: (max |p - q| over the vocabulary at any position,
# mean KL(p||q) in nats, top-1 agreement). Measured on a SmolLM2-135M LoRA run (README, "After
# training: export"): q8_0 from a bf16 merge gave max 0.059, mean KL 0.0014, top-1 96.4% on 857 positions;
# the bounds leave ~2.5x room on the max and ~7x on KL. f16 from the same bf16 merge: max 4.1e-6,
# KL 2.9e-9, top-1 100% (bf16 values are f16 values but for range: the bound allows for rounding).
TOLERANCE = {
    "f32": (1e-3, 1e-5, 0.99), "f16": (0.005, 1e-4, 0.99), "bf16": (0.005, 1e-4, 0.99),
    "q8_0": (0.15, 0.01, 0.90),
}
_K_TOLERANCE = (0.25, 0.1, 0.8)  # k-quants and the other llama-quantize types: a loose sanity bound
CHECK_ROWS = 8
CHECK_MAX_TOKENS = 128

_MARKER = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def strip_generation_markers(template: str | None) -> str | None:
    """The chat template without ftwizard's `{% generation %}` training markers (same rendering)."""
    return _MARKER.sub("", template) if template else template


def first_difference(expected: str, got: str) -> str:
    """Where two strings first differ, with a little context, for one-line error messages."""
    i = next((k for k, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
    lo = max(0, i - 25)
    return (f"first difference at character {i}: expected {expected[i:i + 1]!r} in {expected[lo:i + 25]!r}, "
            f"got {got[i:i + 1]!r} in {got[lo:i + 25]!r}")


# Two-turn conversations the templates are rendered for (with and without a system message).
CONVERSATIONS = [
    [{"role": "system", "content": "You answer briefly."},
     {"role": "user", "content": "What is two plus three?"},
     {"role": "assistant", "content": "two plus three equals five."},
     {"role": "user", "content": "And four plus four?"}],
    [{"role": "user", "content": "Hello there."},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Name a colour."}],
]


@dataclass
class ExportResult:
    out: Path
    files: list[str]
    times: dict[str, float]
    check: dict = field(default_factory=dict)


def _default_out(run_dir: Path) -> Path:
    return run_dir / "export"


def plan(run_dir: Path, *, out: str | Path | None, dtype: str, gguf: str | None, ollama: str | None):
    """Everything that can be refused is refused here, before any work: nothing is half-written."""
    from . import gguf as G
    from .afterwards import output_dir

    if dtype not in DTYPES:
        raise UserError(f"unknown dtype '{dtype}' (one of: {', '.join(DTYPES)})", field="--dtype")
    output_dir(run_dir)
    dest = Path(out) if out else _default_out(run_dir)
    if dest.exists():
        raise UserError("already exists; choose another --out or delete it (nothing is overwritten)",
                        file=str(dest), field="--out")
    if ollama is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]*", ollama):
            raise UserError(f"not a valid Ollama model name: '{ollama}'", field="--ollama")
        gguf = gguf or "q8_0"
        from transformers import AutoTokenizer

        from .ollama import explain_unknown, template_family

        template = strip_generation_markers(AutoTokenizer.from_pretrained(str(run_dir / "output")).chat_template)
        if template_family(template) is None:
            raise UserError(explain_unknown(template), field="--ollama")
    conv = G.require_converter(gguf) if gguf else None
    return dest, gguf, conv


def export(run_dir: str | Path, *, out: str | Path | None = None, dtype: str = "bf16", gguf: str | None = None,
           ollama: str | None = None, check: bool = True, echo=print) -> ExportResult:
    """Merge (or copy) the run's model, then the GGUF and Modelfile when asked, then check them."""
    from . import gguf as G
    from .config import load_config
    from .runs import CONFIG

    run_dir = Path(run_dir)
    dest, gguf, conv = plan(run_dir, out=out, dtype=dtype, gguf=gguf, ollama=ollama)
    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    from transformers import AutoTokenizer

    template = strip_generation_markers(AutoTokenizer.from_pretrained(str(run_dir / "output")).chat_template)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    times: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        echo(f"merging into a standalone {dtype} model ...")
        merge_to(run_dir, tmp / MERGED, dtype, template)
        times["merge_s"] = round(time.perf_counter() - t0, 2)
        info = {"run": str(run_dir.resolve()), "base_model": cfg.model.name_or_path, "method": cfg.method,
                "training": cfg.training, "dtype": dtype, "merged": MERGED, "gguf": None, "gguf_type": gguf,
                "modelfile": None, "ollama_name": ollama, "converter": None}
        if gguf:
            t0 = time.perf_counter()
            name = f"{_safe(run_dir.name)}-{gguf}.gguf"
            log = tmp / "convert.log"
            echo(f"converting to GGUF {gguf} with llama.cpp ({conv.where}) ...")
            if gguf in G.CONVERTER_TYPES:
                G.convert(conv, tmp / MERGED, tmp / name, gguf, log)
            else:
                G.convert(conv, tmp / MERGED, tmp / "f16.gguf.tmp", "f16", log)
                G.quantize(conv, tmp / "f16.gguf.tmp", tmp / name, gguf, log)
                (tmp / "f16.gguf.tmp").unlink()
            times["gguf_s"] = round(time.perf_counter() - t0, 2)
            info.update(gguf=name, converter=conv.where)
        if ollama:
            from .ollama import build_modelfile

            merged_tok = AutoTokenizer.from_pretrained(str(tmp / MERGED))
            mf = build_modelfile(merged_tok, merged_tok.chat_template, info["gguf"],
                                 **_sampling_defaults(tmp / MERGED, cfg))
            (tmp / MODELFILE).write_text(mf.text(), encoding="utf-8")
            info["modelfile"] = MODELFILE
        info["times"] = times
        _write_json(tmp / EXPORT_JSON, info)
        report = {}
        if check:
            t0 = time.perf_counter()
            echo("checking the chat template, special tokens and next-token distributions round trip ...")
            report = check_export(tmp, run_dir=run_dir)
            times["check_s"] = round(time.perf_counter() - t0, 2)
            info["times"] = times
            _write_json(tmp / EXPORT_JSON, info)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    return ExportResult(dest, files, times, report)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _sampling_defaults(merged: Path, cfg) -> dict:
    """Modelfile parameters: the model's own generation_config sampling values when it has them,
    else temperature 0.7 / top_p 0.9; num_ctx = the training max_length rounded up (>= 2048), capped
    by the model's context."""
    gc = {}
    if (merged / "generation_config.json").exists():
        gc = json.loads((merged / "generation_config.json").read_text())
    mc = json.loads((merged / "config.json").read_text())
    ctx = max(2048, cfg.train.max_length)
    if mc.get("max_position_embeddings"):
        ctx = min(ctx, int(mc["max_position_embeddings"]))
    sampled = gc.get("do_sample")
    return {"temperature": gc.get("temperature", 0.7) if sampled else 0.7,
            "top_p": gc.get("top_p", 0.9) if sampled else 0.9, "num_ctx": ctx}


def merge_to(run_dir: Path, dest: Path, dtype: str, template: str | None) -> None:
    """The run's model as one standalone checkpoint: LoRA/QLoRA merged into the full-precision base
    (in fp32, then cast), a full fine-tune cast as is; the tokenizer with `template`, and EOS (the
    end-of-turn token training used) in the generation config so generation stops."""
    import torch

    from .afterwards import load_tuned

    tuned = load_tuned(run_dir, device="cpu")
    model = tuned.model.merge_and_unload() if tuned.is_adapter else tuned.model
    model = model.to({"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype])
    tok = tuned.tokenizer
    tok.chat_template = template
    if tok.eos_token_id is not None:
        model.generation_config.eos_token_id = tok.eos_token_id
        model.config.eos_token_id = tok.eos_token_id
    if tok.pad_token_id is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))


# ---------------------------------------------------------------------------------------------
# The round-trip check


def _render(tok, template: str, messages: list[dict]) -> str:
    return tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)


def check_export(export_dir: str | Path, *, run_dir: str | Path | None = None) -> dict:
    """Run the round-trip check on an export directory; writes check.json; UserError on mismatch."""
    from transformers import AutoTokenizer

    export_dir = Path(export_dir)
    info = json.loads((export_dir / EXPORT_JSON).read_text())
    run_dir = Path(run_dir or info["run"])
    problems: list[Problem] = []
    report: dict = {"checked": []}

    def fail(what: str, message: str, file: str | None = None):
        problems.append(Problem(message, file=file, field=what))

    train_tok = AutoTokenizer.from_pretrained(str(run_dir / "output"))
    merged_dir = export_dir / info["merged"]
    merged_tok = AutoTokenizer.from_pretrained(str(merged_dir))
    train_tpl, merged_tpl = train_tok.chat_template, merged_tok.chat_template
    expected = {}
    for i, conv in enumerate(CONVERSATIONS):
        expected[i] = _render(train_tok, train_tpl, conv)
        got = _render(merged_tok, merged_tpl, conv)
        if got != expected[i]:
            fail("chat template", f"the merged model's template renders differently from training's: "
                 f"{first_difference(expected[i], got)}", file=str(merged_dir))
    report["checked"].append("merged chat template renders as in training")
    if merged_tok.eos_token != train_tok.eos_token:
        fail("eos_token", f"merged EOS {merged_tok.eos_token!r} != training EOS {train_tok.eos_token!r}",
             file=str(merged_dir))

    gguf_path = export_dir / info["gguf"] if info.get("gguf") else None
    facts = None
    if gguf_path:
        from .gguf import read_facts

        facts = read_facts(gguf_path)
        f = str(gguf_path)
        if facts.chat_template is None:
            fail("tokenizer.chat_template", "the GGUF carries no chat template", file=f)
        else:
            if facts.chat_template != merged_tpl:
                fail("tokenizer.chat_template", "differs from the merged tokenizer's: "
                     + first_difference(merged_tpl or "", facts.chat_template), file=f)
            for i, conv in enumerate(CONVERSATIONS):
                got = _render(train_tok, facts.chat_template, conv)
                if got != expected[i]:
                    fail("tokenizer.chat_template", "renders differently from training's: "
                         + first_difference(expected[i], got), file=f)
                    break
        toks = facts.tokens

        def tok_at(i):
            return toks[i] if i is not None and 0 <= i < len(toks) else None

        eos_ids = {x for x in (facts.eos_id, facts.eot_id) if x is not None}
        if train_tok.eos_token_id not in eos_ids:
            fail("tokenizer.ggml.eos_token_id", f"EOS/EOT ids {sorted(eos_ids)} "
                 f"({[tok_at(i) for i in sorted(eos_ids)]}) do not include training's end-of-turn token "
                 f"{train_tok.eos_token!r} (id {train_tok.eos_token_id}): generation would not stop", file=f)
        if tok_at(train_tok.eos_token_id) != train_tok.eos_token:
            fail("tokenizer.ggml.tokens", f"token {train_tok.eos_token_id} is {tok_at(train_tok.eos_token_id)!r}, "
                 f"training's EOS is {train_tok.eos_token!r}", file=f)
        for t, i in sorted(_special_ids(train_tok).items(), key=lambda kv: kv[1]):
            if tok_at(i) != t:
                fail("tokenizer.ggml.tokens", f"special token {t!r} has id {i} in training, the GGUF has "
                     f"{tok_at(i)!r} there", file=f)
        runtime_bos = tok_at(facts.bos_id) if facts.add_bos else ""
        train_bos = _bos_added_on_encode(train_tok)
        if (runtime_bos or "") != (train_bos or ""):
            fail("tokenizer.ggml.add_bos_token", f"a runtime prepends {runtime_bos!r} to the prompt; training "
                 f"prepended {train_bos!r}", file=f)
        report["gguf"] = {"file": info["gguf"], "architecture": facts.architecture, "eos_id": facts.eos_id,
                          "eot_id": facts.eot_id, "bos_id": facts.bos_id, "add_bos": facts.add_bos,
                          "eos": tok_at(facts.eos_id), "vocab": len(toks)}
        report["checked"].append("GGUF chat template, BOS/EOS/EOT and special token ids")

    if info.get("modelfile"):
        from .gotemplate import TemplateError
        from .ollama import parse_modelfile, render

        mpath = export_dir / info["modelfile"]
        mf = parse_modelfile(mpath)
        bos = (facts.tokens[facts.bos_id] if facts and facts.add_bos and facts.bos_id is not None else "")
        for i, conv in enumerate(CONVERSATIONS):
            try:
                got = bos + render(mf, conv)
            except TemplateError as exc:
                fail("TEMPLATE", f"cannot render: {exc}", file=str(mpath))
                break
            if got != expected[i]:
                fail("TEMPLATE", "Ollama's prompt differs from the tokenizer's: "
                     + first_difference(expected[i], got), file=str(mpath))
                break
        if train_tok.eos_token not in mf.stops:
            fail("PARAMETER stop", f"the end-of-turn token {train_tok.eos_token!r} is not a stop token "
                 f"(stops: {mf.stops})", file=str(mpath))
        report["modelfile"] = {"stops": mf.stops, "system": mf.system}
        report["checked"].append("Modelfile TEMPLATE renders as the tokenizer; stop tokens")

    if gguf_path and not problems:
        report["logits"] = compare_logits(merged_dir, gguf_path, run_dir, train_tok, info.get("gguf_type"))
        lg = report["logits"]
        if not lg["within_tolerance"]:
            fail("logits", f"the GGUF's next-token distribution differs from the merged model's beyond the "
                 f"{info.get('gguf_type')} tolerance: max |p-q| {lg['max_abs_prob_diff']:.4g} (<= {lg['tolerance'][0]}), "
                 f"mean KL {lg['mean_kl']:.3g} (<= {lg['tolerance'][1]}), top-1 agreement {lg['top1_agreement']:.3f} "
                 f"(>= {lg['tolerance'][2]})", file=str(gguf_path))
        report["checked"].append("next-token distributions, GGUF vs merged")
    report["ok"] = not problems
    report["problems"] = [str(p) for p in problems]
    _write_json(export_dir / CHECK_JSON, report)
    if problems:
        raise UserError(problems)
    return report


def _special_ids(tok) -> dict[str, int]:
    out = {}
    for t in set(tok.all_special_tokens) | {t.content for t in tok.added_tokens_decoder.values()}:
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i >= 0:
            out[t] = i
    return out


def _bos_added_on_encode(tok) -> str:
    """The BOS string training puts before a chat prompt beyond what the template writes: none, since
    chat rows are tokenized from the template's text without special tokens (data/tokenize.py)."""
    return ""


def _validation_ids(run_dir: Path, tok) -> list[list[int]]:
    """Token ids of up to CHECK_ROWS validation rows, tokenized as training did (else training rows);
    `tok` is the run's output/ tokenizer (its template carries the assistant-only markers)."""
    from .config import load_config
    from .data.prepare import prepare_training_data
    from .runs import CONFIG

    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    train_ds, eval_ds, _ = prepare_training_data(cfg, tok, tok.chat_template, lambda *a, **k: None)
    ds = eval_ds if eval_ds is not None and len(eval_ds) else train_ds
    return [list(ds[i]["input_ids"][:CHECK_MAX_TOKENS]) for i in range(min(CHECK_ROWS, len(ds)))]


def compare_logits(merged_dir: Path, gguf_path: Path, run_dir: Path, tok, gguf_type: str | None) -> dict:
    """Next-token distributions of the GGUF (loaded back by transformers) vs the merged model on
    validation rows, at every position. Both in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    rows = _validation_ids(run_dir, tok)
    ref = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    back = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                dtype=torch.float32).eval()
    max_diff, kl_sum, agree, n = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for ids in rows:
            x = torch.tensor([ids])
            p = torch.log_softmax(ref(x).logits[0].float(), -1)
            q = torch.log_softmax(back(x).logits[0].float(), -1)
            v = min(p.shape[-1], q.shape[-1])
            if p.shape[-1] != q.shape[-1]:  # padded vocabularies: compare the real tokens
                p, q = p[:, :v], q[:, :v]
            max_diff = max(max_diff, float((p.exp() - q.exp()).abs().max()))
            kl_sum += float((p.exp() * (p - q)).sum(-1).sum())
            agree += int((p.argmax(-1) == q.argmax(-1)).sum())
            n += p.shape[0]
    tol = TOLERANCE.get(gguf_type or "", _K_TOLERANCE)
    res = {"rows": len(rows), "positions": n, "max_abs_prob_diff": max_diff, "mean_kl": kl_sum / max(n, 1),
           "top1_agreement": agree / max(n, 1), "tolerance": list(tol)}
    res["within_tolerance"] = (res["max_abs_prob_diff"] <= tol[0] and res["mean_kl"] <= tol[1]
                               and res["top1_agreement"] >= tol[2])
    return res
