"""Whole, finite checkpoints (core/checkpoints.py) and disk full (core/diagnose.py): resume picks the
newest checkpoint that is complete and finite and says what it skipped; saves are atomic; a NaN run
leaves only finite checkpoints; a full disk is recognised in each of its forms, with the space needed."""

from __future__ import annotations

import errno
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ftwizard.core.checkpoints import checkpoints_of, resume_checkpoint, safetensors_problem
from ftwizard.core.diagnose import diagnose_text
from ftwizard.core.events import read_events

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def safetensors_bytes(tensors: dict[str, tuple[str, bytes, list[int]]]) -> bytes:
    header, blobs, off = {}, [], 0
    for name, (dtype, raw, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def f32(*vals):
    return ("F32", np.array(vals, dtype="<f4").tobytes(), [len(vals)])


def bf16(*bits):
    return ("BF16", np.array(bits, dtype="<u2").tobytes(), [len(bits)])


def make_ckpt(run: Path, step: int, *, weights: bytes | None = None, state: bool = True, optimizer: bytes | None = None):
    d = run / "checkpoints" / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(weights if weights is not None else
                                                  safetensors_bytes({"a": f32(1.0, 2.0), "b": bf16(0x3F80)}))
    if state:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if optimizer is not None:
        (d / "optimizer.pt").write_bytes(optimizer)
    return d


def test_resume_picks_the_newest_whole_and_finite_checkpoint_and_says_why_it_skipped(tmp_path):
    import io
    import zipfile

    good_zip = io.BytesIO()
    with zipfile.ZipFile(good_zip, "w") as z:
        z.writestr("archive/data.pkl", b"x" * 1000)
    make_ckpt(tmp_path, 2, optimizer=good_zip.getvalue())
    make_ckpt(tmp_path, 4, weights=safetensors_bytes({"a": f32(1.0, float("nan"))}))
    make_ckpt(tmp_path, 6, weights=safetensors_bytes({"a": f32(1.0), "b": bf16(0x3F80, 0x7FC0)}))  # bf16 NaN
    make_ckpt(tmp_path, 8, state=False)
    full = safetensors_bytes({"a": f32(*range(100))})
    make_ckpt(tmp_path, 10, weights=full[:-40])
    make_ckpt(tmp_path, 12, optimizer=good_zip.getvalue()[:-30])
    (tmp_path / "checkpoints" / ".partial-checkpoint-14").mkdir()  # an atomic save cut short: never a candidate

    path, skipped = resume_checkpoint(tmp_path)
    assert Path(path).name == "checkpoint-2"
    assert [n for n, _ in skipped] == ["checkpoint-12", "checkpoint-10", "checkpoint-8", "checkpoint-6", "checkpoint-4"]
    why = dict(skipped)
    assert why["checkpoint-12"].startswith("optimizer.pt: truncated")
    assert why["checkpoint-10"].startswith("adapter_model.safetensors: truncated")
    assert why["checkpoint-8"] == "incomplete (no trainer_state.json)"
    assert "tensor b is not finite" in why["checkpoint-6"] and "tensor a is not finite" in why["checkpoint-4"]


def test_finite_check_knows_each_float_encoding(tmp_path):
    p = tmp_path / "w.safetensors"
    cases = {"f32 inf": ({"x": f32(1.0, float("inf"))}, False), "f32 ok": ({"x": f32(0.0, -3.4e38)}, True),
             "bf16 inf": ({"x": bf16(0xFF80)}, False), "bf16 max": ({"x": bf16(0x7F7F)}, True),
             "f16 nan": ({"x": ("F16", np.array([np.nan], dtype="<f2").tobytes(), [1])}, False),
             "f16 ok": ({"x": ("F16", np.array([65504.0], dtype="<f2").tobytes(), [1])}, True),
             "int untouched": ({"x": ("I64", np.array([-1], dtype="<i8").tobytes(), [1])}, True)}
    for name, (tensors, ok) in cases.items():
        p.write_bytes(safetensors_bytes(tensors))
        assert (safetensors_problem(p) is None) == ok, name


def test_resume_without_any_good_checkpoint_says_what_it_skipped(tmp_path):
    from recorded_runs import make_run

    run = make_run(tmp_path / "runs", "r1", state="stopped", steps=8, max_steps=24)
    make_ckpt(run, 8, state=False)
    r = subprocess.run(CLI + ["resume", str(run)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no checkpoint to resume from (skipped checkpoint-8: incomplete (no trainer_state.json))" in r.stderr


# ------------------------------------------------------------------------------- disk full


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounter: `tmpfs(dir, kib)`; skipped with the reason where mounting is refused."""
    mounted = []

    def mount(where: Path, kib: int) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)])


def fill(where: Path, leave: int = 0) -> None:
    """Fill a filesystem, leaving about `leave` bytes."""
    import shutil

    free = shutil.disk_usage(where).free
    with open(where / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave))
        except OSError:
            pass


def test_disk_full_is_recognised_in_each_form_it_takes(tmp_path, tmpfs):
    """The real errors of a full disk, produced by writing to one: the OS's, torch.save's zip writer's
    and safetensors'; each is diagnosed 'disk-full' with the fixes."""
    import torch
    from safetensors.torch import save_file

    disk = tmpfs(tmp_path / "small", 256)
    fill(disk, leave=16 * 1024)
    texts = {}
    try:
        with open(disk / "plain", "wb") as fh:
            fh.write(b"x" * 100_000)
            fh.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        texts["os"] = (f"{type(exc).__name__}: {exc}", type(exc).__name__)
    for name, save in (("torch", lambda p: torch.save({"w": torch.zeros(50_000)}, p)),
                       ("safetensors", lambda p: save_file({"w": torch.zeros(50_000)}, str(p)))):
        try:
            save(disk / f"{name}.bin")
        except Exception as exc:  # noqa: BLE001 - whatever the library raises is what we must recognise
            texts[name] = (f"{type(exc).__name__}: {exc}", type(exc).__name__)
    assert set(texts) == {"os", "torch", "safetensors"}, texts
    for name, (text, kind) in texts.items():
        d = diagnose_text(text, exc_type=kind)
        assert d and d["kind"] == "disk-full", (name, text)
        assert any("runs_dir" in f for f in d["fixes"]) and any("save_total_limit" in f for f in d["fixes"])
    # the message forms seen in the field, as text (train.log tails)
    for text in ("RuntimeError: [enforce fail at inline_container.cc:603] . unexpected pos 1234 vs 1180",
                 "RuntimeError: PytorchStreamWriter failed writing file data/3: file write failed",
                 "SafetensorError: Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                 "message: \"No space left on device\" })"):
        assert diagnose_text(text)["kind"] == "disk-full", text


@pytest.mark.slow
def test_disk_full_during_a_real_save_leaves_only_whole_checkpoints(tiny_config, tmp_path, tmpfs, wait_run):
    """A tiny-model run whose checkpoints live on a tmpfs with room for about two: the third save hits a
    full disk through the Trainer's own save path. The run fails 'disk-full' with the space a
    checkpoint needs; no cut-short checkpoint carries a checkpoint's name; resume picks the newest."""
    from ftwizard.core.launch import create_run, start

    cfg = tiny_config(steps=40, save_steps=4, save_total_limit=50, eval_steps=100)
    run_dir = create_run(cfg)
    start(create_run(tiny_config(steps=4, save_steps=4, eval_steps=100)))  # learn a checkpoint's size
    probe_run = sorted((tmp_path / "runs").iterdir())[-1]
    assert wait_run(probe_run, 240).state == "completed"
    size = sum(f.stat().st_size for f in (probe_run / "checkpoints" / "checkpoint-4").rglob("*") if f.is_file())
    tmpfs(run_dir / "checkpoints", (int(size * 2.5) // 1024) + 8)
    start(run_dir)
    info = wait_run(run_dir, 240)
    assert info.state == "failed" and info.diagnosis["kind"] == "disk-full", (info.state, info.reason)
    assert "one takes about" in info.reason and "free on" in info.reason
    assert info.diagnosis["needed_bytes"] >= size * 0.9
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir())
    assert names == ["checkpoint-4", "checkpoint-8"], names  # whole ones only; the cut-short stage is gone
    path, skipped = resume_checkpoint(run_dir)
    assert Path(path).name == "checkpoint-8" and skipped == []


# ------------------------------------------------------------------------------- NaN runs


NAN_AT = """
from transformers import TrainerCallback


class NaNAt5(TrainerCallback):
    # After the optimizer step of step 5 a trainable weight is NaN, as a diverged update leaves it; the loss
    # logged for step 5 was computed before, so it is still finite: only the weights tell.
    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step == 5:
            import torch
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))
"""


@pytest.mark.slow
def test_a_nan_run_leaves_only_finite_checkpoints_and_resumes_from_the_last_good_one(tiny_config, start_run,
                                                                                     wait_run, tmp_path, monkeypatch):
    """Saving at every step, a run whose weights turn NaN at step 5 keeps checkpoints 2-4 only, every
    tensor of each finite (step 5's save is vetoed by the weight check, later ones by the NaN loss); it
    fails 'nan', and resume starts from checkpoint-4.

    A learning rate alone does not get there on the tiny model within the config's bounds
    (learning_rate < 1): AdamW at 0.99 diverges to losses of 30-117 (the doctor ends that run, see
    test_doctor) and SGD at 0.99 learns; so the NaN is planted, in real training."""
    from safetensors.numpy import load_file

    (tmp_path / "nan_at.py").write_text(NAN_AT)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    run_dir = start_run(tiny_config(steps=40, save_steps=1, save_total_limit=3, eval_steps=1000,
                                    callbacks=["nan_at:NaNAt5"]))
    info = wait_run(run_dir, 240)
    assert info.state == "failed" and info.diagnosis["kind"] == "nan", (info.state, info.reason)
    evs = read_events(run_dir)
    skipped = [e["evidence"]["step"] for e in evs if e["type"] == "warning" and e.get("code") == "checkpoint-skipped"]
    assert skipped and skipped[0] == 5 and skipped == list(range(5, 5 + len(skipped))), skipped
    ckpts = checkpoints_of(run_dir)
    assert [c.name for c in ckpts] == ["checkpoint-4", "checkpoint-3", "checkpoint-2"]
    for c in ckpts:
        for f in c.glob("*.safetensors"):
            for name, arr in load_file(str(f)).items():
                assert np.isfinite(arr.astype(np.float32)).all(), (c.name, name)
    assert not (run_dir / "output").exists()
    r = subprocess.run(CLI + ["resume", str(run_dir), "--detach"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming from checkpoint-4" in r.stderr
    wait_run(run_dir, 240)
    starts = [e for e in read_events(run_dir) if e["type"] == "phase" and e["phase"] == "training"]
    assert len(starts) == 2 and starts[-1]["start_step"] == 4
