"""Why did a run fail? Classify an exception or a log into a diagnosis with fixes, ranked.

A diagnosis is a dict: `kind` (oom | nan | diverged | dataset | model-missing | disk-full | killed | error),
`message` (one line) and `fixes` (list of strings, most effective first).
"""

from __future__ import annotations

import re
from pathlib import Path

OOM_FIXES = [
    "halve train.batch_size and double train.gradient_accumulation_steps (same effective batch)",
    "lower train.max_length (the longest rows dominate peak memory)",
    "turn on train.gradient_checkpointing",
    "switch method to qlora (4-bit base weights)",
    "use train.optim: adamw_8bit (8-bit optimizer states)",
]

DISK_FULL_FIXES = [
    "free disk space on the runs' disk (delete old runs: ftwizard delete RUN)",
    "point runs_dir (or --runs-dir) at a larger disk",
    "lower train.save_total_limit (each kept checkpoint costs the same again)",
    "raise train.save_steps (fewer checkpoints written)",
]

_PATTERNS: list[tuple[str, re.Pattern, str, list[str]]] = [
    ("oom", re.compile(r"CUDA out of memory|OutOfMemoryError|out of memory", re.I),
     "out of memory", OOM_FIXES),
    # Disk full in every form it takes: the OS error (errno 28; EDQUOT for a quota), torch.save's zip
    # writer ("unexpected pos", "file write failed"), safetensors' Rust error (StorageFull), json/numpy.
    ("disk-full", re.compile(r"No space left on device|ENOSPC|\[Errno 28\]|os error 28|StorageFull|"
                             r"Disk quota exceeded|EDQUOT|unexpected pos \d+|file write failed|"
                             r"PytorchStreamWriter failed", re.I),
     "disk full while writing", DISK_FULL_FIXES),
    ("nan", re.compile(r"loss is (nan|inf)|non-finite loss", re.I),
     "the loss became NaN/inf", ["lower train.learning_rate (by 10x)", "keep train.max_grad_norm at 1.0",
                                 "use bf16 instead of fp16"]),
    ("diverged", re.compile(r"training has diverged|the model is dead|nothing is learning", re.I),
     "the training doctor ended the run", ["lower train.learning_rate by 10x and start a new run",
                                           "add warmup (train.warmup_ratio 0.03-0.1)",
                                           "keep train.max_grad_norm at 1.0",
                                           "check that the answers are not all masked (dataset.assistant_only_loss)"]),
    ("model-missing", re.compile(r"(is not a local folder and is not a valid model identifier|"
                                 r"Repository Not Found|does not appear to have a file named|"
                                 r"We couldn't connect to|offline mode is enabled|OfflineModeIsEnabled)", re.I),
     "the model could not be found or downloaded", ["check model.name_or_path (a local directory with "
                                                    "config.json, or a hub id with network access)"]),
]


def diagnose_text(text: str, *, exc_type: str | None = None, run_dir: str | Path | None = None) -> dict | None:
    """Diagnose from an error message (and optionally the exception type name). With `run_dir`, a full
    disk also says how much a checkpoint needs and how much is free there."""
    blob = f"{exc_type or ''}: {text}"
    for kind, pattern, message, fixes in _PATTERNS:
        if pattern.search(blob):
            detail = _first_line_matching(text, pattern)
            diag = {"kind": kind, "message": f"{message}: {detail}" if detail else message, "fixes": list(fixes)}
            if kind == "disk-full" and run_dir is not None:
                diag.update(disk_space(run_dir))
                if diag.get("needed_bytes"):
                    diag["message"] = (f"disk full while writing a checkpoint: one takes about "
                                       f"{_mb(diag['needed_bytes'])}, {_mb(diag['free_bytes'])} free on "
                                       f"{diag['mount']} ({detail or message})")
            return diag
    return None


def disk_space(run_dir: str | Path) -> dict:
    """Free bytes where the run lives and the size of its largest whole checkpoint (or of its output,
    or of the model's weights), the space the next save needs."""
    import shutil

    run_dir = Path(run_dir)
    out = {}
    try:
        out["free_bytes"] = shutil.disk_usage(run_dir).free
    except OSError:
        return out
    mount = run_dir.resolve()
    while not mount.is_mount() and mount != mount.parent:
        mount = mount.parent
    out["mount"] = str(mount)
    sizes = []
    for d in [*(run_dir / "checkpoints").glob("checkpoint-*"), run_dir / "output"]:
        if d.is_dir():
            sizes.append(sum(f.stat().st_size for f in d.rglob("*") if f.is_file()))
    if sizes:
        out["needed_bytes"] = max(sizes)
        return out
    from .events import read_events

    for ev in read_events(run_dir):  # no whole save yet: weights + two Adam moments of the trainable part
        if ev.get("type") == "info" and ev.get("key") == "parameters":
            out["needed_bytes"] = int(ev["value"]["trainable"]) * 12
    return out


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB" if n < 2**30 else f"{n / 2**30:,.2f} GB"


def _first_line_matching(text: str, pattern: re.Pattern) -> str:
    for line in text.splitlines():
        if pattern.search(line):
            return line.strip()[:200]
    return ""


def diagnose_log(log_path: str | Path, tail_bytes: int = 64_000) -> dict | None:
    """Look at the end of train.log for a known cause. None when nothing is recognised."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = diagnose_text(text, run_dir=Path(log_path).parent)
    if found:
        return found
    if re.search(r"^Killed$", text, re.M):
        return {"kind": "killed", "message": "killed by the system (out of host memory?)",
                "fixes": ["lower train.batch_size or train.max_length", "close other programs"]}
    return None
