"""Whole, finite checkpoints and final runs.

- `guard_saves(trainer, emit)`: one call in the recipe. The Trainer's own `_save_checkpoint` is wrapped
  so that a checkpoint is written under a temporary name (`checkpoints/.partial-checkpoint-N/`) and
  renamed to `checkpoint-N` only once every file is written: a save cut short (disk full, kill -9) never
  carries a checkpoint's name. A save is skipped (and said so with a `warning` event) once the loss or
  grad norm has been non-finite, or when a trainable weight is NaN/inf: no checkpoint after the last
  finite step. (One process only; several processes keep the Trainer's own save.)
- `resume_checkpoint(run_dir) -> (path | None, [(name, why), ...])`: the newest checkpoint that is
  complete (trainer_state.json present, every safetensors/torch file whole) and finite (every tensor of
  every safetensors file), with the ones skipped and why. Pure reading, numpy only: `resume` answers
  without importing torch.
- `final_reason(run_dir)`: why a run may not be resumed (it completed), with how to train further;
  `extension_config(run_dir, steps)`: the config of a NEW run starting from a finished run's adapter
  (its training-side half is recipes.common.load_start_adapter).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Callable

PREFIX = "checkpoint-"
PARTIAL = ".partial-"
TRAINER_STATE = "trainer_state.json"


# ------------------------------------------------------------------------------------ saving


def guard_saves(trainer, emit: Callable[..., object] | None = None) -> None:
    """Make `trainer`'s checkpoint saves atomic and finite-only (see the module docstring)."""
    from transformers import TrainerCallback

    guard = _Guard(emit)

    class FiniteGuard(TrainerCallback):
        """Notes the first non-finite logged loss/grad norm and vetoes every save from then on."""

        def on_log(self, args, state, control, logs=None, **kw):
            for key in ("loss", "grad_norm"):
                v = (logs or {}).get(key)
                if v is not None and not _finite(v) and guard.poisoned_at is None:
                    guard.poisoned_at = (state.global_step, key, v)
            if guard.poisoned_at is not None and control.should_save:
                control.should_save = False
                guard.skipped(state.global_step, f"{guard.poisoned_at[1]} was {guard.poisoned_at[2]} at step "
                              f"{guard.poisoned_at[0]}")

    trainer.add_callback(FiniteGuard())
    if getattr(trainer.args, "world_size", 1) > 1:
        return
    original = trainer._save_checkpoint

    def save(model, trial=None):
        step = trainer.state.global_step
        if guard.poisoned_at is not None:
            return guard.skipped(step, f"{guard.poisoned_at[1]} was {guard.poisoned_at[2]} at step "
                                 f"{guard.poisoned_at[0]}")
        bad = _nonfinite_weight(trainer.model)
        if bad:
            guard.poisoned_at = (step, "weight", bad)
            return guard.skipped(step, f"weight {bad} is not finite")
        atomic_save(trainer, original, model, trial)

    trainer._save_checkpoint = save


class _Guard:
    def __init__(self, emit):
        self.emit = emit
        self.poisoned_at: tuple | None = None
        self.said: set[int] = set()

    def skipped(self, step: int, why: str) -> None:
        if self.emit is not None and step not in self.said:
            self.said.add(step)
            self.emit("warning", code="checkpoint-skipped",
                      message=f"no checkpoint saved at step {step}: {why}; the last checkpoint before it is kept",
                      evidence={"step": step})


def atomic_save(trainer, original, model, trial) -> None:
    """`original(model, trial)` (the Trainer's `_save_checkpoint`) writing into a staging folder, then
    renamed into place; the best-checkpoint bookkeeping and the rotation are redone on the real folder."""
    from transformers.trainer_utils import rotate_checkpoints

    real = Path(trainer._get_output_dir(trial=trial))
    step = trainer.state.global_step
    final = real / f"{PREFIX}{step}"
    stage = real / f"{PARTIAL}{PREFIX}{step}"
    shutil.rmtree(stage, ignore_errors=True)
    trainer._get_output_dir = lambda trial=None: str(stage)
    try:
        original(model, trial)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # free the space a cut-short save took
        raise
    finally:
        del trainer._get_output_dir  # the class's own method again
    if not trainer.args.should_save:
        return
    st = trainer.state
    if st.best_global_step:
        best = real / f"{PREFIX}{st.best_global_step}"
        if best.exists() or st.best_global_step == step:
            st.best_model_checkpoint = str(best)
    if st.best_model_checkpoint and str(stage) in st.best_model_checkpoint:
        st.best_model_checkpoint = str(final)
    st.save_to_json(str(stage / final.name / TRAINER_STATE))
    _fsync_tree(stage / final.name)
    if final.exists():  # saved again at the same step (a stop right after a scheduled save)
        old = real / f"{PARTIAL}old-{PREFIX}{step}"
        os.replace(final, old)
        os.replace(stage / final.name, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage / final.name, final)
    shutil.rmtree(stage, ignore_errors=True)
    rotate_checkpoints(output_dir=str(real), save_total_limit=trainer.args.save_total_limit,
                       best_model_checkpoint=st.best_model_checkpoint, use_mtime=True)


def _fsync_tree(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            try:
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass


def _nonfinite_weight(model) -> str | None:
    import torch

    for name, p in model.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p).all()):
            return name
    return None


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------- choosing


def checkpoints_of(run_dir: str | Path) -> list[Path]:
    """checkpoint-N folders, newest (highest N) first."""
    out = []
    for p in (Path(run_dir) / "checkpoints").glob(f"{PREFIX}*"):
        tail = p.name[len(PREFIX):]
        if p.is_dir() and tail.isdigit():
            out.append((int(tail), p))
    return [p for _, p in sorted(out, reverse=True)]


def resume_checkpoint(run_dir: str | Path) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest complete and finite checkpoint of a run, and the newer ones skipped with why."""
    skipped = []
    for ckpt in checkpoints_of(run_dir):
        why = checkpoint_problem(ckpt)
        if why is None:
            return str(ckpt), skipped
        skipped.append((ckpt.name, why))
    return None, skipped


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a checkpoint cannot be resumed from, or None when it is whole and finite."""
    state = ckpt / TRAINER_STATE
    if not state.is_file():
        return "incomplete (no trainer_state.json)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "incomplete (trainer_state.json is cut short)"
    weights = list(ckpt.glob("*.safetensors"))
    if not weights and not list(ckpt.glob("*.bin")):
        return "incomplete (no weights)"
    for f in sorted(ckpt.iterdir()):
        if f.suffix == ".safetensors":
            why = safetensors_problem(f)
        elif f.suffix in (".pt", ".bin", ".pth"):
            why = torch_file_problem(f)
        else:
            continue
        if why:
            return f"{f.name}: {why}"
    return None


def torch_file_problem(path: Path) -> str | None:
    """torch.save writes a zip; one cut short has no central directory."""
    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"truncated ({exc})" if path.stat().st_size else "empty"
    return None


_FINITE_CHECK = {"F32": ("<f4", None), "F64": ("<f8", None), "F16": ("<u2", 0x7C00), "BF16": ("<u2", 0x7F80)}


def safetensors_problem(path: Path) -> str | None:
    """A truncated file (header and sizes disagree) or a non-finite tensor; read with numpy."""
    import numpy as np

    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "truncated (no header)"
            n = struct.unpack("<Q", head)[0]
            if n > size - 8:
                return "truncated (header)"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:
        return f"unreadable header ({exc})"
    header.pop("__metadata__", None)
    end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if size < 8 + n + end:
        return f"truncated ({size:,} of {8 + n + end:,} bytes)"
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n, shape=(end,)) if end else None
    for name, t in header.items():
        kind = _FINITE_CHECK.get(t["dtype"])
        if kind is None:
            continue
        a, b = t["data_offsets"]
        if a == b:
            continue
        arr = data[a:b].view(kind[0])
        if kind[1] is None:
            ok = bool(np.isfinite(arr).all())
        else:
            ok = not bool(((arr & kind[1]) == kind[1]).any())
        if not ok:
            return f"tensor {name} is not finite (NaN/inf)"
    return None


# ------------------------------------------------------------------------------ final runs


def final_reason(run_dir: str | Path, info=None) -> str | None:
    """Why `resume` must not touch this run (it completed), with the ways to train further; else None."""
    from .runs import run_info

    info = info or run_info(run_dir)
    if info.state != "completed":
        return None
    step = f" at step {info.step}" + (f"/{info.max_steps}" if info.max_steps else "")
    return (f"run {info.id} completed{step}: a finished run is final and is never trained again. To train "
            f"further: ftwizard resume {info.id} --extend N (a new run that starts from its adapter), or "
            f"ftwizard train {Path(info.path) / 'config.yaml'} with a larger train.max_steps (a new run)")


def refuse_final(run_dir: Path) -> bool:
    """For the training process started with --resume: True (and why, on stderr) when the run completed,
    read from its own status.json before anything is written."""
    import sys

    from .runs import STATUS, read_json

    status = read_json(Path(run_dir) / STATUS) or {}
    if status.get("state") == "completed":
        print(f"refusing to resume {Path(run_dir).name}: it completed; a finished run is final", file=sys.stderr)
        return True
    return False


def extension_config(run_dir: str | Path, steps: int):
    """(config of a new run training `steps` more steps from this run's output, a note saying so)."""
    from .config import load_config
    from .errors import UserError
    from .runs import CONFIG, LIVE_STATES, run_info

    run_dir = Path(run_dir)
    if steps < 1:
        raise UserError(f"--extend takes a number of steps >= 1, got {steps}", field="--extend")
    info = run_info(run_dir)
    if info.state in LIVE_STATES:
        raise UserError(f"run {info.id} is still {info.state}", field="RUN")
    out = run_dir / "output"
    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    if cfg.method == "full":
        if not (out / "config.json").is_file():
            raise UserError("this run has no finished model to extend (no output/config.json)", file=str(out))
        cfg.model.name_or_path = str(out)
        cfg.model.gguf_file = None
        what = "model"
    else:
        if not (out / "adapter_config.json").is_file():
            raise UserError("this run has no finished adapter to extend (no output/adapter_config.json)",
                            file=str(out))
        cfg.model.init_adapter = str(out)
        what = "adapter"
    cfg.train.max_steps = steps
    note = (f"extends run {run_dir.name} (ended {info.state} at step {info.step}) from its {what} {out}: "
            f"{steps} more steps, a fresh optimizer and schedule")
    return cfg, note
