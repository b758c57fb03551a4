"""Pre-flight: every check that can be made before a run directory exists, made by `train`, `resume`
and the wizard's launch (all through `launch.create_run` / `launch.resume`).

`preflight(cfg, ...) -> Report` looks at, cheapest first:

    code                  severity  what                                                 --force
    runs-dir              error     the runs root cannot hold a new directory (under      never
                                    /proc, below a regular file, a read-only mount)
    model                 error     a local model that is not there; a hub id with        never
                                    HF_HUB_OFFLINE=1 and nothing cached
    dataset               error     the dataset cannot be read at all                      never
    kind-data             error     rows of the wrong shape for `training` (dpo/orpo/simpo    never
                                    without a rejected column, kto without labels or with
                                    one label only); data/kinds.py's errors: an empty
                                    chosen/rejected/completion, chosen == rejected in every
                                    row, every prompt too long for max_length (TRL drops it)
    prompts (grpo)        error     a row without a prompt; a column a chosen reward       never
                                    reads is missing from the first row; every prompt over
                                    the prompt budget; a reward that does not import,
                                    has the wrong signature, fails or returns the
                                    wrong number of values on the first row
    rows                  error     rows training would refuse (the same full scan as      never
                                    `ftwizard inspect`: malformed lines, bad bytes,
                                    unknown roles, mixed shapes, ragged CSV rows)
    empty-answers         error     every assistant turn is empty: only end-of-turn        never
                                    tokens would be learnt
    mask                  error     no token would carry loss (template without            never
                                    generation markers, answers cut by max_length); SFT
                                    only (TRL's preference trainers mask by the prompt)
    too-few-rows          error     fewer than MIN_ROWS_TO_TRAIN usable rows               yes
    batch-size            error     train.batch_size above the training rows: every step  yes
                                    is the whole dataset
    memory                error     the estimate does not fit the target's memory          yes (tight);
                                    (VRAM, or RAM on a CPU; seam for core/estimate.py)     never (> IMPOSSIBLE_FACTOR)
    (warnings)            warning   the scan's warnings (duplicates, too long, few rows
                                    for the task, ...), an effective batch above the rows;
                                    the kind's (data/kinds.py): same-answers, both-cut,
                                    prompt-too-long, unbalanced-labels, no-reward-column

An error stops everything: `UserError` (one line: where, what, how to fix), exit 2, no run directory.
With `force`, errors that are a judgement are demoted to warnings. Warnings are returned for the
caller to print and are written into the run (`preflight.json` and `warning` events).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import Problem, UserError

MIN_ROWS_TO_TRAIN = 10  # below this a run learns nothing worth keeping (3 rows trained to "completed")
TOKEN_SAMPLE_ROWS = 256  # rows tokenized for the mask and per-kind token checks (the row scan reads every row)
IMPOSSIBLE_FACTOR = 4.0  # an estimate this many times the memory there is cannot be forced
PREFLIGHT_FILE = "preflight.json"
# Config keys naming files: errors about them name the config file and line as well as the path.
FILE_KEYS = ("model.name_or_path", "model.gguf_file", "dataset.path", "dataset.validation_path", "grpo.rewards",
             "dataset.replay.path")


@dataclass
class Finding:
    code: str
    severity: str  # "error" | "warning"
    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    fix: str = ""
    forceable: bool = False  # a judgement `--force` may override
    forced: bool = False     # was an error, demoted by --force

    def __str__(self) -> str:
        return str(Problem(self.message + (f" (fix: {self.fix})" if self.fix else ""), file=self.file,
                           line=self.line, field=self.field))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    rows: int | None = None  # usable training rows the scan found

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_json(self) -> dict:
        return {"rows": self.rows, "findings": [f.to_json() for f in self.findings]}


# -------------------------------------------------------------------------------------- checks


def check_runs_root(root: str | Path) -> Finding | None:
    """Can a run directory be made under `root`? Tried for real in the deepest existing folder (a
    temporary directory made and removed), so /proc, read-only mounts and permissions all answer
    truthfully; nothing is left behind."""
    root = Path(root).expanduser()
    probe = root if root.is_absolute() else Path.cwd() / root
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link: mkdir would fail
            break
        probe = probe.parent
    where = dict(file=str(root), field="runs_dir", fix="point runs_dir (or --runs-dir) at a writable folder")
    if probe.exists() and not probe.is_dir():
        return Finding("runs-dir", "error", f"cannot create runs here: {probe} is a file, not a folder", **where)
    if not probe.exists():
        return Finding("runs-dir", "error", f"cannot create runs here: {probe} does not exist", **where)
    try:
        tmp = tempfile.mkdtemp(prefix=".ftwizard-probe-", dir=probe)
        os.rmdir(tmp)
    except OSError as exc:
        return Finding("runs-dir", "error", f"cannot create runs here: {probe} is not writable "
                       f"({exc.strerror or exc})", **where)
    return None


def _is_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cache_dir() -> str | None:
    """The hub cache as the environment names it now (huggingface_hub reads it once, at its import:
    a run started after HF_HUB_CACHE/HF_HOME changed must look where the training process will)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def check_model(cfg) -> tuple[Finding | None, str | None]:
    """(problem, local path of the model or None for an uncached hub id). Local paths must exist; a hub
    id must be in the local cache when the hub is offline."""
    from .models import check_model_source

    m = cfg.model
    try:
        path = check_model_source(m.name_or_path, m.gguf_file)
    except UserError as exc:
        p = exc.problems[0]
        return Finding("model", "error", p.message, file=p.file, line=p.line, field=p.field), None
    if Path(path).exists():
        from .models import is_local_model

        if m.revision and is_local_model(path):
            return Finding("model", "error", "a local model directory has no revisions (only hub ids do)",
                           field="model.revision", fix="remove model.revision, or point model.name_or_path "
                           "at the hub id"), None
        return None, path
    # a hub id: reachable only through the network or the local cache
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None, None
    wanted = m.gguf_file or "config.json"
    try:
        hit = try_to_load_from_cache(path, wanted, revision=m.revision, cache_dir=_hub_cache_dir())
    except Exception:  # noqa: BLE001 - an id the hub library refuses (bad characters): let loading say
        hit = None
    if isinstance(hit, str):
        return None, str(Path(hit).parent)
    if _is_offline():
        return Finding("model", "error", f"'{path}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
                       "forbids downloading it", field="model.name_or_path",
                       fix="download it once with network access (huggingface-cli download "
                       f"{path}), unset HF_HUB_OFFLINE, or give a local model directory"), None
    return None, None


def _template_of(model_dir: str | None, cfg) -> tuple[object | None, str | None]:
    """(tokenizer, template) for the mask check, as training sets them up; (None, None) when the
    tokenizer cannot be had without the network."""
    if model_dir is None or cfg.model.gguf_file or str(model_dir).endswith(".gguf"):
        # A GGUF tokenizer takes 4-35 s to load here: the training process checks the mask (prepare.py)
        return None, None
    from .data.tokenize import load_tokenizer, setup_tokenizer

    try:
        tok = load_tokenizer(model_dir, cfg.model.gguf_file)
    except UserError:
        return None, None  # the training process reports loader errors with the full story
    template, _ = setup_tokenizer(tok, cfg.model.chat_template, cfg.dataset.assistant_only_loss)
    return tok, template


def check_dataset_rows(cfg, model_dir: str | None, report: Report,
                       progress: Callable[[float], None] | None = None) -> None:
    """The full row scan `inspect` runs (every row read), then the mask check on the first rows with
    the tokenizer training will use."""
    from .config import PREFERENCE_KINDS
    from .data.read import local_files
    from .data.stats import scan_dataset

    d = cfg.dataset
    for path in (d.path, d.validation_path):
        if path:
            local_files(path)  # a missing file or an unsupported type: UserError with dataset.path
    if cfg.training == "cpt":
        from .data.corpus import check_cpt_source

        check_cpt_source(cfg)  # raw text only: any other format is one line, no run dir
    if local_files(d.path) is None:
        return  # a hub dataset: read by the training process, which may be the only one online
    kind_rows = None
    tok = template = None
    if cfg.training in (*PREFERENCE_KINDS, "kto"):  # rows of the kind's own shape (cpt streams its corpus)
        tok, template = _template_of(model_dir, cfg)  # the kind's token checks and the mask check below
        kind_rows = check_kind_data(cfg, report, tok)
        if kind_rows is None:
            return
    scan = scan_dataset(d.path, columns=d.columns, format=d.format, split=d.split, max_rows=d.max_rows,
                        validation_path=d.validation_path, max_length=cfg.train.max_length,
                        assistant_only=d.assistant_only_loss, progress=progress)
    st = scan.stats
    report.rows = st.used_rows
    errors = [p for p in scan.problems if p.severity == "error"]
    if errors:
        first = errors[0]
        more = sum(max(1, p.count) for p in errors) - 1
        tail = f" (and {more} more: ftwizard inspect {d.path})" if more > 0 else ""
        report.findings.append(Finding("rows", "error", first.message + tail, file=first.file, line=first.line,
                                       field=first.field, fix=first.fix))
        return
    if d.validation_path and local_files(d.validation_path) is not None:
        vscan = scan_dataset(d.validation_path, columns=d.columns, format=d.format, split=d.split)
        verrs = [p for p in vscan.problems if p.severity == "error"]
        if verrs:
            report.findings.append(Finding("rows", "error", verrs[0].message, file=verrs[0].file,
                                           line=verrs[0].line, field=verrs[0].field, fix=verrs[0].fix))
            return
    empty = [p for p in scan.problems if p.code == "empty-answer"]
    empty_rows = sum(max(1, p.count) for p in empty)
    if st.used_rows and empty_rows >= st.used_rows and _every_answer_empty(d, st.used_rows):
        report.findings.append(Finding(
            "empty-answers", "error", f"every assistant turn of the {st.used_rows} rows is empty: the model would "
            "learn only to end its turn", file=empty[0].file, line=empty[0].line, field=empty[0].field,
            fix="give the assistant turns their answers"))
        return
    if kind_rows is not None:
        report.rows = kind_rows  # the kind's own rows (KTO trains the undesirable ones too)
    if report.rows < MIN_ROWS_TO_TRAIN:
        report.findings.append(Finding(
            "too-few-rows", "error", f"only {report.rows} usable rows; a run needs at least {MIN_ROWS_TO_TRAIN} "
            "to learn anything", file=d.path, field="dataset.path", forceable=True,
            fix="add rows (fewer than 100 rarely beats prompting), or --force to train anyway"))
    for p in scan.problems:
        if p.severity == "warning":
            report.findings.append(Finding(p.code, "warning", p.message, file=p.file, line=p.line, field=p.field,
                                           fix=p.fix))
    if kind_rows is not None:
        return  # dpo/orpo/simpo/kto: TRL masks the prompt by its own tokens (no markers); kinds.py checked the tokens
    if tok is None:
        tok, template = _template_of(model_dir, cfg)
    if tok is None:
        return
    tscan = scan_dataset(d.path, tok, template, cfg.train.max_length, d.assistant_only_loss, columns=d.columns,
                         format=d.format, split=d.split, max_rows=min(TOKEN_SAMPLE_ROWS, d.max_rows or TOKEN_SAMPLE_ROWS))
    for p in tscan.problems:
        if p.severity == "error" and p.code in ("all-masked", "no-generation-marker", "missing-eos"):
            if p.code == "all-masked" and tscan.stats.used_rows < st.used_rows:
                p.message = p.message.replace("every row", f"every one of the first {tscan.stats.used_rows} rows")
            report.findings.append(Finding("mask", "error", p.message, file=p.file, line=p.line, field=p.field,
                                           fix=p.fix))
            return


def check_kind_data(cfg, report: Report, tok=None) -> int | None:
    """The rows fit the training kind (dpo/orpo/simpo: preference pairs; kto: rows with both labels, or
    pairs), with that kind's problems (data/kinds.py: chosen == rejected, an empty side, both sides cut at
    max_length, prompts TRL drops, KTO labels one-sided or unbalanced for kto.*_weight) as findings: the
    number of rows the kind trains on, or None after adding an error finding. Token checks need `tok`,
    the tokenizer set up as training sets it up."""
    from .data.formats import detect_source
    from .data.kinds import kind_report
    from .data.prepare import kind_data_problem

    d, kind = cfg.dataset, cfg.training
    if d.validation_path:
        det, _, _ = detect_source(d.validation_path, columns=d.columns, format=d.format, split=d.split)
        why = kind_data_problem(kind, det)
        if why:
            report.findings.append(Finding("kind-data", "error", why, file=d.validation_path, field="training"))
            return None
    weights = {"desirable_weight": cfg.kto.desirable_weight, "undesirable_weight": cfg.kto.undesirable_weight} \
        if kind == "kto" else {}
    try:
        rep = kind_report(d.path, kind, tokenizer=tok, max_length=cfg.train.max_length, columns=d.columns,
                          format=d.format, split=d.split, max_rows=d.max_rows, n=0, token_rows=TOKEN_SAMPLE_ROWS,
                          **weights)
    except UserError as exc:
        p = exc.problems[0]
        if p.field != "training":
            return 0  # bad rows: the row scan reports them, with their lines, before this count is used
        report.findings.append(Finding("kind-data", "error", p.message, file=p.file, field=p.field))
        return None
    for p in rep.problems:
        report.findings.append(Finding("kind-data" if p.severity == "error" else p.code, p.severity, p.message,
                                       file=p.file, line=p.line, field=p.field, fix=p.fix))
    if any(p.severity == "error" for p in rep.problems):
        return None
    return rep.rows - rep.left_out


def check_prompt_rows(cfg, report: Report, model_dir: str | None = None) -> None:
    """training: grpo: every row has a prompt (read in full), the columns the chosen rewards read are
    there (data/kinds.grpo_report: absent from the first row is an error, empty in a row a warning), the
    prompts fit the prompt budget (with the tokenizer), and each reward loads and answers one real row
    with one float per completion (core/rewards.py check_on_row): an import error, a wrong signature or a
    wrong length is an error here, not at step 1."""
    from .data.kinds import grpo_report
    from .data.read import local_files
    from .recipes.grpo import read_prompt_rows
    from .rewards import check_on_row

    d, g = cfg.dataset, cfg.grpo
    for path in (d.path, d.validation_path):
        if path:
            local_files(path)
    if local_files(d.path) is None:
        return  # a hub dataset: read by the training process
    tok, _ = _template_of(model_dir, cfg)
    rep = grpo_report(d.path, g, tokenizer=tok, max_length=cfg.train.max_length, columns=d.columns,
                      split=d.split, max_rows=d.max_rows, n=0)
    report.rows = rep.rows - rep.left_out
    for p in rep.problems:
        if p.code == "no-reward-column" and p.severity == "error":  # the reward would fail at step 1
            raise UserError(p.message + f" (fix: {p.fix})", field="grpo.rewards")
        report.findings.append(Finding(p.code if p.severity == "warning" else "kind-data", p.severity, p.message,
                                       file=p.file, line=p.line, field=p.field, fix=p.fix))
    check_on_row(g, read_prompt_rows(cfg, limit=1)[0], where=d.path)
    if report.rows < MIN_ROWS_TO_TRAIN:
        report.findings.append(Finding(
            "too-few-rows", "error", f"only {report.rows} usable rows; a run needs at least {MIN_ROWS_TO_TRAIN} "
            "to learn anything", file=d.path, field="dataset.path", forceable=True,
            fix="add rows, or --force to train anyway"))


def _every_answer_empty(d, n_rows: int) -> bool:
    """True when no row has a non-empty assistant turn (the scan's warnings count rows with at least one
    empty turn; a row may also hold a real answer)."""
    from .data.formats import to_canonical
    from .data.preview import detect_source
    from .data.read import iter_rows

    det, _, _ = detect_source(d.path, columns=d.columns, format=d.format, split=d.split)
    for r in iter_rows(d.path, split=d.split, limit=d.max_rows):
        if r.error:
            continue
        try:
            canon = to_canonical(r.row, det)
        except Exception:  # noqa: BLE001 - row problems are the scan's business
            continue
        msgs = canon.get("messages")
        if msgs is None:
            return False
        if any(m["role"] == "assistant" and (m.get("content") or "").strip() for m in msgs):
            return False
    return True


def check_settings(cfg, report: Report) -> None:
    """Settings absurd for this dataset: a batch larger than the training rows."""
    rows = report.rows
    if not rows:
        return
    t = cfg.train
    d = cfg.dataset
    train_rows = rows if d.validation_path else max(1, rows - round(rows * d.validation))
    world = max(1, int(os.environ.get("WORLD_SIZE", 1)))
    if t.batch_size > train_rows:
        report.findings.append(Finding(
            "batch-size", "error", f"batch_size {t.batch_size:,} is larger than the {train_rows:,} training rows: "
            "every step would be the whole dataset", field="train.batch_size", forceable=True,
            fix="use a batch_size of 1-32 with gradient_accumulation_steps for a larger effective batch"))
        return
    eff = t.batch_size * t.gradient_accumulation_steps * world
    if eff > train_rows:
        report.findings.append(Finding(
            "batch-size", "warning", f"the effective batch ({eff:,}) is larger than the {train_rows:,} training rows: "
            "one optimizer step per epoch at most", field="train.gradient_accumulation_steps",
            fix="lower train.gradient_accumulation_steps"))


def check_method(cfg, arch, report: Report) -> None:
    """What the method cannot do on this architecture: peft wraps fused MoE experts (Qwen3-MoE,
    Mixtral under all-linear) in a ParamWrapper that refuses LoRA dropout, so the run would fail when
    the adapters are made."""
    if cfg.method in ("lora", "qlora") and arch.moe and arch.lora_on_experts \
            and cfg.lora.target_modules == "all-linear" and cfg.lora.dropout > 0:
        report.findings.append(Finding(
            "method", "error", f"LoRA on this model's fused MoE experts takes no dropout (peft's ParamWrapper), "
            f"got {cfg.lora.dropout}", field="lora.dropout",
            fix="set lora.dropout: 0, or list target_modules without the experts"))


def check_memory(cfg, hardware, report: Report) -> None:
    """The estimate against the memory the run will have (estimate.check_fits: the smallest card's free
    memory, or free RAM on a CPU), with the nearest setting that fits when it does not. Tight is a
    warning; over the memory there is, an error `--force` may override; over 4x it, impossible. A model
    the estimator cannot size (an uncached hub id) is let through."""
    from .catalog import known_arch
    from .estimate import NO_FIT, TIGHT, check_fits

    arch = known_arch(cfg.model.name_or_path)
    if arch is None:
        return
    check_method(cfg, arch, report)
    c = check_fits(cfg, hardware, arch=arch)
    if c.verdict == TIGHT:
        report.findings.append(Finding("memory", "warning", c.reason(), field="train.batch_size"))
    if c.verdict != NO_FIT:
        return
    impossible = c.estimate.total_gib > IMPOSSIBLE_FACTOR * c.capacity_gib
    report.findings.append(Finding(
        "memory", "error", f"would not fit: {c.reason()}", field="train.batch_size", forceable=not impossible,
        fix="ftwizard estimate shows where the memory goes" + ("" if impossible else "; --force starts it anyway")))


# ---------------------------------------------------------------------------------------- entry


def preflight(cfg, *, runs_root: str | Path | None = None, config_file: str | Path | None = None,
              force: bool = False, hardware=None, progress: Callable[[float], None] | None = None) -> Report:
    """Run every check; raise `UserError` (one line) on the first error left after `force`. Returns the
    report, whose warnings the caller prints and stores in the run."""
    report = Report()
    lines = _config_lines(config_file)

    def fail(f: Finding):
        f = _locate(f, config_file, lines)
        raise UserError(Problem(f.message + (f" (fix: {f.fix})" if f.fix else ""), file=f.file, line=f.line,
                                field=f.field))

    if runs_root is not None:
        f = check_runs_root(runs_root)
        if f:
            fail(f)
    f, model_dir = check_model(cfg)
    if f:
        fail(f)
    try:
        if cfg.training == "grpo":
            check_prompt_rows(cfg, report, model_dir)
        else:
            check_dataset_rows(cfg, model_dir, report, progress)
            if cfg.dataset.replay is not None:  # the replay file is readable before any run dir exists
                from .data.prepare import replay_source

                replay_source(cfg.dataset.replay)
    except UserError as exc:
        p = exc.problems[0]
        fail(Finding("dataset", "error", p.message, file=p.file, line=p.line, field=p.field))
    check_settings(cfg, report)
    from .config import tracker_problems

    for key, message in tracker_problems(cfg.train.report_to):
        fail(Finding("tracker", "error", message, field=key))
    from .guidance import config_guidance

    for key, message in config_guidance(cfg):  # the wizard's usual ranges: a warning, the run starts
        report.findings.append(Finding("guidance", "warning", message, field=key))
    if hardware is not None:
        check_memory(cfg, hardware, report)
    for f in report.errors:
        if force and f.forceable:
            f.severity, f.forced = "warning", True
            f.message += " (--force)"
            continue
        fail(f)
    return report


def _config_lines(config_file) -> dict:
    if not config_file:
        return {}
    from .config import _line_index

    try:
        return _line_index(Path(config_file).read_text(encoding="utf-8"))
    except OSError:
        return {}


def _locate(f: Finding, config_file, lines: dict) -> Finding:
    """An error about a file the config names: the config file and line, then the path."""
    if not config_file or f.field not in FILE_KEYS or f.line:
        return f
    line = lines.get(tuple(f.field.split(".")))
    path = f.file
    msg = f"{path}: {f.message}" if path and path not in f.message else f.message
    return Finding(f.code, f.severity, msg, file=str(config_file), line=line, field=f.field, fix=f.fix,
                   forceable=f.forceable)


def relocate(exc: UserError, config_file) -> UserError:
    """A `UserError` about a config-named file, re-pointed at the config file and line (for checks made
    outside `preflight`)."""
    lines = _config_lines(config_file)
    out = []
    for p in exc.problems:
        f = _locate(Finding("", "error", p.message, file=p.file, line=p.line, field=p.field), config_file, lines)
        out.append(Problem(f.message, file=f.file, line=f.line, field=f.field))
    return UserError(out)


def record(run_dir: Path, report: Report) -> None:
    """Store the report in the run: preflight.json, and each warning as a `warning` event."""
    from .events import EventWriter
    from .runs import write_json_atomic

    write_json_atomic(Path(run_dir) / PREFLIGHT_FILE, report.to_json())
    if not report.warnings:
        return
    w = EventWriter(run_dir)
    try:
        for f in report.warnings:
            w.emit("warning", code=f"preflight-{f.code}", message=str(f), evidence={"source": "preflight"})
    finally:
        w.close()


def read(run_dir: Path) -> list[dict]:
    try:
        return json.loads((Path(run_dir) / PREFLIGHT_FILE).read_text(encoding="utf-8")).get("findings", [])
    except (OSError, ValueError):
        return []


def print_warnings(run_dir: Path) -> None:
    """The pre-flight's warnings stored in a run, one line each on stderr."""
    import sys

    for f in read(run_dir):
        if f.get("severity") == "warning":
            print(f"ftwizard: warning: {Finding(**f)}", file=sys.stderr)
