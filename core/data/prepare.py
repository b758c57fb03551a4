"""The data step of the training process: read, check, convert, split and tokenize.

`prepare_training_data(cfg, tokenizer, template, emit, phase=None) -> (train_ds, eval_ds, facts)` is the
only data call `core/trainer.py` makes. It goes through the same functions as the wizard's preview
(`read.iter_rows`, `formats.detect_format` / `to_canonical`, `tokenize.encode_row`), so what the preview
showed is what trains. It refuses, before training starts, with `UserError`s naming file and line:
unreadable rows, rows missing required fields, no usable rows, a chat template that cannot mark the
assistant's tokens while assistant-only loss is on, and data whose every row would train on zero tokens.

What SFT does with each format (also reported as an `info` event `dataset` with `sft_note`):
    alpaca, sharegpt (tool calls as text), messages, prompt-completion: SFT on the conversation
    preference: SFT on prompt + chosen; KTO: SFT on the desirable (label true) rows
    text: every token trained (continued pre-training style)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import Problem as BaseProblem
from ..errors import UserError
from .checks import generation_marker_problem, mask_fallback_problem, row_problems
from .formats import Detected, detect_source, keep_for_sft, to_canonical, to_trl
from .problems import Problem
from .read import iter_rows, source_fingerprint
from .split import split_indices
from .tokenize import ROW_COLUMN, cache_root, tokenize_dataset, trl_prompt_fills

MAX_REPORTED = 10
SPOOL_BATCH = 1000  # canonical rows written to the spool file per batch: bounds RAM


class _BadRows:
    """Rows that cannot be used, the first MAX_REPORTED kept with their place; `raise_if_any` refuses
    them all in one UserError (file:line: field: message (fix)), as every reader of training rows does."""

    def __init__(self, source: str):
        self.source, self.first, self.n = source, [], 0

    def check(self, r, det: Detected) -> bool:
        """True when row `r` has an error (it is counted and skipped)."""
        errors = [p for p in row_problems(r, det) if p.severity == "error"]
        if not errors:
            return False
        self.n += 1
        if len(self.first) < MAX_REPORTED:
            e = errors[0]
            self.first.append(BaseProblem(f"{e.message} ({e.fix})", file=e.file, line=e.line, field=e.field))
        return True

    def raise_if_any(self) -> None:
        if not self.first:
            return
        bad = list(self.first)
        if self.n > len(bad):
            bad.append(BaseProblem(f"... and {self.n - len(bad)} more bad rows; `ftwizard inspect {self.source}` "
                                   "lists them all", file=self.source))
        raise UserError(bad)


def _canonical_rows(source: str, det: Detected, *, split: str, max_rows: int | None, bad: _BadRows,
                    counts: dict):
    """(canonical row, raw label, file, line) of each usable row, in order, one at a time; bad rows go to
    `bad`, rows SFT does not train on (KTO's undesirable ones) are counted in counts["skipped"]."""
    label_col = det.col("label")
    for r in iter_rows(source, split=split, limit=max_rows, streaming_hub=False):
        if bad.check(r, det):
            continue
        if not keep_for_sft(r.row, det):
            counts["skipped"] += 1
            continue
        yield to_canonical(r.row, det), r.row.get(label_col), r.file, r.line


def _stratify_labels(det: Detected, labels: list) -> list | None:
    """`labels` when they are a class to stratify the split by, else None: a `label` column that is not
    the format's own (KTO's desirable flag) with few distinct values."""
    has = "label" not in det.spec.columns and any(v is not None for v in labels) and \
        len({json.dumps(v, sort_keys=True, default=str) for v in labels}) <= max(2, len(labels) // 10)
    return labels if has else None


def read_canonical(source: str, det: Detected, *, split: str = "train", max_rows: int | None = None):
    """(canonical rows, their raw labels or None, (file, line) of each, skipped count), in memory: for
    previews and tests. Training spools them to disk instead (`spool_canonical`). Raises `UserError`
    listing the first bad rows (file:line: field: message) when any row cannot be used."""
    rows, labels, where = [], [], []
    bad, counts = _BadRows(source), {"skipped": 0}
    for row, label, file, line in _canonical_rows(source, det, split=split, max_rows=max_rows, bad=bad,
                                                  counts=counts):
        rows.append(row)
        labels.append(label)
        where.append((file, line))
    bad.raise_if_any()
    return rows, _stratify_labels(det, labels), where, counts["skipped"]


def _row_key(row: dict) -> bytes:
    return hashlib.sha1(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).digest()


def spool_canonical(source: str, det: Detected, spool: Path, *, split: str = "train",
                    max_rows: int | None = None, keys: bool = False):
    """(Dataset of canonical rows memory-mapped from an Arrow file in `spool`, one JSON string per row in
    column `ROW_COLUMN`; labels or None; skipped count; {row digest: (file, line)} when `keys`, else
    None). Rows are read and written a batch at a time: what stays in RAM is the labels (for a stratified
    split) and, with `keys`, a 20-byte digest per row (for the overlap check), never the rows. Raises
    `UserError` listing the first bad rows, as `read_canonical` does."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"canonical-{len(list(spool.iterdir()))}.arrow"
    features = datasets.Features({ROW_COLUMN: datasets.Value("string")})
    bad, counts = _BadRows(source), {"skipped": 0}
    labels: list = []
    seen: dict | None = {} if keys else None
    pending: list[str] = []
    writer = ArrowWriter(features=features, path=str(path), writer_batch_size=SPOOL_BATCH)
    try:
        for row, label, file, line in _canonical_rows(source, det, split=split, max_rows=max_rows, bad=bad,
                                                      counts=counts):
            pending.append(json.dumps(row, ensure_ascii=False))
            labels.append(label)
            if seen is not None:
                seen.setdefault(_row_key(row), (file, line))
            if len(pending) >= SPOOL_BATCH:
                writer.write_batch({ROW_COLUMN: pending})
                pending = []
        if pending:
            writer.write_batch({ROW_COLUMN: pending})
        writer.finalize()
    finally:
        writer.close()
    bad.raise_if_any()
    return datasets.Dataset.from_file(str(path)), _stratify_labels(det, labels), counts["skipped"], seen


def _fingerprint(source: str, det: Detected, extra: Any) -> str:
    return source_fingerprint(source, det.to_json(), extra)[:32]


def prepare_training_data(cfg, tokenizer, template: str | None, emit: Callable[..., Any],
                          phase: Callable[..., Any] | None = None):
    """Tokenized (train, validation or None) datasets and facts; events go to `emit(type, **fields)`,
    phase changes to `phase(name, detail)`. See the module docstring for what is refused.

    The rows never sit in a Python list: they are spooled to an Arrow file (`spool_canonical`), split
    by index over it, tokenized by `Dataset.map` into the on-disk cache, and the datasets returned are
    memory-mapped from that cache, so RAM does not grow with the dataset's size."""
    import datasets

    datasets.disable_progress_bars()
    d = cfg.dataset
    det, _, _ = detect_source(d.path, columns=d.columns, format=d.format, split=d.split)
    spool = Path(tempfile.mkdtemp(prefix="spool-", dir=_spool_root()))
    try:
        return _prepare(cfg, det, spool, tokenizer, template, emit, phase)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _spool_root() -> Path:
    root = cache_root() / "spool"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _prepare(cfg, det: Detected, spool: Path, tokenizer, template, emit, phase):
    d, t = cfg.dataset, cfg.train
    rows, labels, skipped, seen = spool_canonical(d.path, det, spool, split=d.split, max_rows=d.max_rows,
                                                  keys=bool(d.validation_path))
    if not len(rows):
        why = (f" ({skipped} rows are labelled undesirable and SFT skips them)" if skipped else "")
        raise UserError(f"no usable rows in the dataset{why}", file=d.path, field="dataset.path")
    emit("info", key="dataset", value={"path": d.path, "format": det.format, "evidence": det.evidence,
                                       "variant": det.variant, "sft_note": det.sft_note, "rows": len(rows) + skipped,
                                       "used_rows": len(rows), "skipped_rows": skipped})
    if det.sft_note:
        emit("warning", code=f"dataset-{det.format}-as-sft", message=det.sft_note,
             evidence={"format": det.format, "skipped_rows": skipped})
    chat = "messages" in json.loads(rows[0][ROW_COLUMN])
    assistant_only = det.spec.masks_prompt(d.assistant_only_loss)
    if chat and assistant_only:
        p = generation_marker_problem(template or getattr(tokenizer, "chat_template", None), det.format, True)
        if p is not None:
            raise UserError(Problem(p.message + f"; {p.fix}", field=p.field))

    eval_rows = None
    if d.validation_path:
        vdet, _, _ = detect_source(d.validation_path, columns=d.columns, format=d.format, split=d.split)
        eval_rows, _, _, _ = spool_canonical(d.validation_path, vdet, spool, split=d.split)
        _warn_overlap(seen, d.validation_path, vdet, d.split, emit)
        train_rows = rows
        split_key = ("file", d.validation_path)
    else:
        tr, va = split_indices(len(rows), d.validation, t.seed, labels)
        train_rows = rows.select(tr) if len(tr) < len(rows) else rows
        eval_rows = rows.select(va) if va else None
        split_key = ("fraction", d.validation, t.seed, labels is not None)
        if labels is not None and eval_rows is not None:
            emit("info", key="validation_split", value={"rows": len(va), "stratified_by": det.col("label")})
    fp = _fingerprint(d.path, det, [d.max_rows, split_key])
    if phase is not None:
        phase("tokenizing", f"{len(train_rows)} rows, max_length {t.max_length}")
    train_ds, facts = tokenize_dataset(train_rows, tokenizer, template, t.max_length,
                                       assistant_only, data_fingerprint=fp + "-train", name="train")
    emit("info", key="tokenized", value=facts)
    if facts["dropped_no_trained_tokens"]:
        emit("warning", code="rows-without-trained-tokens",
             message=f"{facts['dropped_no_trained_tokens']} rows had no trained token after truncation and "
             "were dropped", evidence=facts)
    p = mask_fallback_problem(facts.get("mask_fallback_rows", 0), [], d.path)
    if p is not None:
        emit("warning", code=p.code, message=p.message, evidence=facts, advice=[p.fix])
    if facts.get("truncated_rows"):
        emit("warning", code="rows-truncated",
             message=f"{facts['truncated_rows']} rows are longer than max_length {t.max_length} and were "
             "truncated (the cut part is not trained)", evidence=facts)
    if d.replay is not None:
        train_ds = _mix_replay(cfg, train_ds, tokenizer, template, emit)
    eval_ds = None
    if eval_rows is not None and len(eval_rows):
        vfp = _fingerprint(d.validation_path or d.path, det, [d.max_rows, split_key, "validation"])
        eval_ds, efacts = tokenize_dataset(eval_rows, tokenizer, template,
                                           t.max_length, assistant_only, data_fingerprint=vfp,
                                           name="validation")
        emit("info", key="tokenized_validation", value=efacts)
    facts = {**facts, "format": det.format, "skipped_rows": skipped}
    return train_ds, eval_ds, facts


def replay_source(replay) -> tuple[str, Detected]:
    """(file, detected format) of dataset.replay.path; 'general' is the sample shipped with ftwizard."""
    from ..forgetting import GENERAL_SAMPLE, general_sample_path

    path = str(general_sample_path()) if replay.path == GENERAL_SAMPLE else replay.path
    try:
        det, _, _ = detect_source(path)
    except UserError as exc:
        p = exc.problems[0]
        raise UserError(BaseProblem(p.message, file=p.file or path, line=p.line, field="dataset.replay.path")) from None
    return path, det


def replay_count(replay, n_train: int) -> int:
    """Replay rows so that they are `fraction` of the mixed training rows (at least one)."""
    return max(1, round(n_train * replay.fraction / (1.0 - replay.fraction)))


def _mix_replay(cfg, train_ds, tokenizer, template, emit):
    """dataset.replay: rows of general data sampled (train.seed) and tokenized with their own format's
    masking, appended to the tokenized training rows (the Trainer shuffles them in)."""
    import random

    import datasets

    r = cfg.dataset.replay
    path, det = replay_source(r)
    rows = read_canonical(path, det)[0]
    if not rows:
        raise UserError("no usable rows in the replay data", file=path, field="dataset.replay.path")
    want = replay_count(r, len(train_ds))
    picked = random.Random(cfg.train.seed).sample(range(len(rows)), min(want, len(rows)))
    if want > len(rows):
        emit("warning", code="replay-short", message=f"dataset.replay asked for {want} rows but {path} has "
             f"{len(rows)}: all are used ({len(rows) / (len(rows) + len(train_ds)):.0%} of training rows)",
             evidence={"wanted": want, "rows": len(rows)})
    fp = _fingerprint(path, det, ["replay", sorted(picked)])
    replay_ds, facts = tokenize_dataset(datasets.Dataset.from_list([rows[i] for i in sorted(picked)]), tokenizer,
                                        template, cfg.train.max_length, det.spec.masks_prompt(
                                            cfg.dataset.assistant_only_loss), data_fingerprint=fp, name="replay")
    emit("info", key="replay", value={"path": path, "format": det.format, "rows": len(replay_ds),
                                      "train_rows": len(train_ds), "fraction": r.fraction, "tokens": facts["tokens"]})
    return datasets.concatenate_datasets([train_ds, replay_ds])


def _warn_overlap(seen: dict, vsource: str, vdet: Detected, split: str, emit) -> None:
    """Warn when validation rows also appear in the training data (`seen`: train row digest -> where)."""
    hits = []
    bad, counts = _BadRows(vsource), {"skipped": 0}
    for row, _, file, line in _canonical_rows(vsource, vdet, split=split, max_rows=None, bad=bad, counts=counts):
        w = seen.get(_row_key(row))
        if w is not None:
            hits.append(((file, line), w))
    if hits:
        (vf, vl), (tf, tl) = hits[0]
        emit("warning", code="validation-overlap",
             message=f"{len(hits)} validation rows also appear in the training data ({vf}:{vl} = {tf}:{tl}): "
             "validation loss will look better than it is",
             evidence={"count": len(hits), "lines": [vl for (_, vl), _ in hits[:20]]})



# ------------------------------------------------------------------ preference kinds (dpo, orpo, simpo, kto)

PAIR_KINDS = ("dpo", "orpo", "simpo")


def kind_data_problem(kind: str, det: Detected) -> str | None:
    """Why rows of format `det` cannot train as `kind` (None: they can). One home for the refusal the
    pre-flight and the training process both make; the callers name the field (`training`), so the
    message starts with the kind."""
    fmt = det.format
    if kind in PAIR_KINDS and fmt != "preference":
        return (f"{kind} needs preference pairs (prompt, chosen and rejected answers), but this dataset is "
                f"{fmt} ({det.evidence}) with no rejected column: use training: sft, or map your columns with "
                "dataset.columns {chosen: ..., rejected: ...}")
    if kind == "kto" and fmt not in ("kto", "preference"):
        return (f"kto needs rows labelled desirable or not (prompt/completion/label, or messages + label) "
                f"or preference pairs, but this dataset is {fmt} ({det.evidence}) without labels: add a true/false "
                "'label' column, or use training: sft")
    return None


def iter_trl_rows(source: str, det: Detected, kind: str, *, split: str = "train", max_rows: int | None = None,
                  bad: "_BadRows | None" = None):
    """(file, line, row) for each row in the shape TRL's trainer for `kind` takes (`formats.to_trl`); KTO takes
    preference pairs as two rows, the chosen answer desirable and the rejected one not. Rows with errors are
    skipped and counted in `bad` (whose `raise_if_any` refuses them after the loop)."""
    bad = bad if bad is not None else _BadRows(source)
    for r in iter_rows(source, split=split, limit=max_rows, streaming_hub=False):
        if bad.check(r, det):
            continue
        row = to_trl(r.row, det)
        if kind == "kto" and det.format == "preference":
            yield r.file, r.line, {"prompt": row["prompt"], "completion": row["chosen"], "label": True}
            yield r.file, r.line, {"prompt": row["prompt"], "completion": row["rejected"], "label": False}
        else:
            yield r.file, r.line, row


def read_trl_rows(source: str, det: Detected, kind: str, *, split: str = "train", max_rows: int | None = None):
    """(rows in the shape TRL's trainer for `kind` takes, labels or None): `iter_trl_rows` in a list.
    Refuses bad rows like `read_canonical`."""
    bad = _BadRows(source)
    rows = [row for _, _, row in iter_trl_rows(source, det, kind, split=split, max_rows=max_rows, bad=bad)]
    bad.raise_if_any()
    labels = [r["label"] for r in rows] if kind == "kto" else None
    return rows, labels


def kto_balance(labels: list) -> dict:
    n_true = sum(1 for v in labels if v)
    return {"desirable": n_true, "undesirable": len(labels) - n_true}


def kto_label_problem(balance: dict) -> str | None:
    if not balance["desirable"] or not balance["undesirable"]:
        have, missing = ("desirable", "undesirable") if balance["desirable"] else ("undesirable", "desirable")
        return (f"training: kto needs both labels, but every row is {have} ({balance[have]} rows, no {missing} "
                "one): KTO learns from the contrast; add rows of the other label, or use training: sft")
    return None


def prepare_preference_data(cfg, emit: Callable[..., Any], phase: Callable[..., Any] | None = None,
                            tokenizer=None):
    """(train, validation or None, facts) for training: dpo|orpo|simpo|kto as `datasets.Dataset`s of TRL's
    shape ({prompt, chosen, rejected} or {prompt, completion, label}: strings, or message lists that TRL
    renders with the tokenizer's chat template). TRL tokenizes them; what is refused is refused here
    first: data of the wrong shape for the kind, bad rows, no rows, a KTO set with one label only.

    With the run's `tokenizer`, rows whose prompt alone fills train.max_length are left out here, before
    the validation split (a warning event says how many): TRL would drop them silently after it, and a
    validation split made only of such rows evaluates nothing (no eval_loss: the run failed on
    metric_for_best_model; seen with LLaMA-Factory's kto_en_demo.json at max_length 128)."""
    import datasets

    datasets.disable_progress_bars()
    d, t, kind = cfg.dataset, cfg.train, cfg.training
    det, _, _ = detect_source(d.path, columns=d.columns, format=d.format, split=d.split)
    why = kind_data_problem(kind, det)
    if why:
        raise UserError(why, file=d.path, field="training")
    rows, labels = read_trl_rows(d.path, det, kind, split=d.split, max_rows=d.max_rows)
    if not rows:
        raise UserError("no usable rows in the dataset", file=d.path, field="dataset.path")
    n_read = len(rows)
    rows, labels = _prompts_that_fit(rows, labels, tokenizer, t.max_length, d.path, emit)
    info = {"path": d.path, "format": det.format, "evidence": det.evidence, "variant": det.variant,
            "rows": n_read, "used_rows": len(rows), "skipped_rows": 0, "kind": kind,
            "prompt_too_long": n_read - len(rows)}
    if labels is not None:
        info["labels"] = kto_balance(labels)
        why = kto_label_problem(info["labels"])
        if why:
            raise UserError(why, file=d.path, field="dataset.path")
    emit("info", key="dataset", value=info)
    if d.validation_path:
        vdet, _, _ = detect_source(d.validation_path, columns=d.columns, format=d.format, split=d.split)
        why = kind_data_problem(kind, vdet)
        if why:
            raise UserError(why, file=d.validation_path, field="dataset.validation_path")
        train_rows = rows
        eval_rows, _ = read_trl_rows(d.validation_path, vdet, kind, split=d.split)
        eval_rows, _ = _prompts_that_fit(eval_rows, None, tokenizer, t.max_length, d.validation_path, emit,
                                         required=False)
    else:
        tr, va = split_indices(len(rows), d.validation, t.seed, labels)
        train_rows = [rows[i] for i in tr]
        eval_rows = [rows[i] for i in va]
    if phase is not None:
        phase("tokenizing", f"{len(train_rows)} rows, max_length {t.max_length}")
    train_ds = datasets.Dataset.from_list(train_rows)
    eval_ds = datasets.Dataset.from_list(eval_rows) if eval_rows else None
    facts = {"format": det.format, "rows": len(train_rows), "skipped_rows": 0, "kind": kind}
    if labels is not None:
        facts["labels"] = info["labels"]
    return train_ds, eval_ds, facts


def _prompts_that_fit(rows: list[dict], labels, tokenizer, max_length: int, source: str, emit,
                      required: bool = True):
    """(rows, labels) without the rows TRL's DPO/KTO trainers would drop, their prompt alone filling
    `max_length` (tokenize.trl_prompt_fills); a warning event when any goes, a UserError when none is left
    (`required`). Unchanged without a tokenizer."""
    if tokenizer is None or not rows:
        return rows, labels
    keep = [i for i, r in enumerate(rows) if not trl_prompt_fills(tokenizer, r, max_length)]
    if len(keep) == len(rows):
        return rows, labels
    gone = len(rows) - len(keep)
    if not keep and required:
        raise UserError(f"every prompt fills train.max_length ({max_length} tokens) or more: TRL would drop every "
                        "row (nothing of an answer would be left); raise train.max_length or shorten the prompts "
                        "(ftwizard inspect --kind lists them)", file=source, field="train.max_length")
    emit("warning", code="prompt-too-long",
         message=f"{gone} of {len(rows)} rows of {source} have a prompt of train.max_length ({max_length}) tokens or "
         "more and were left out (TRL would drop them: nothing of their answers would be left)",
         evidence={"left_out": gone, "rows": len(rows), "max_length": max_length})
    return [rows[i] for i in keep], ([labels[i] for i in keep] if labels is not None else None)
