"""Finished runs are final: resume of a completed run is refused (exit 2, why, how to train further) and
leaves every byte of it as it was; `--extend N` trains a NEW run from its adapter; `stop` of a run that
is not running exits 2 on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftwizard.core.events import read_events
from ftwizard.core.runs import run_info

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def cli(*args):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def files(run_dir: Path) -> dict:
    """Every file with its bytes and mtime."""
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def completed(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=6, save_steps=2, save_total_limit=2, eval_steps=100))
    info = wait_run(run_dir, 240)
    assert info.state == "completed", info.reason
    assert (run_dir / "output" / "adapter_config.json").exists()
    return run_dir


def test_resume_of_a_completed_run_is_refused_and_changes_nothing(completed, wait_run):
    from ftwizard.core.launch import start

    before = files(completed)
    for args in (["resume", completed], ["resume", completed, "--detach"]):
        r = cli(*args)
        assert r.returncode == 2, (r.stdout, r.stderr)
        err = r.stderr.strip()
        assert "\n" not in err and "Traceback" not in err
        assert "completed at step 6/6" in err and "a finished run is final" in err
        assert "--extend N" in err and "train.max_steps" in err
        assert files(completed) == before
    # the launcher refuses too, and so does the training process started by hand: neither writes anything
    from ftwizard.core.errors import UserError

    with pytest.raises(UserError, match="a finished run is final"):
        start(completed, resume=True)
    r = subprocess.run([sys.executable, "-m", "ftwizard.core.trainer", str(completed), "--resume"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "refusing to resume" in r.stderr, r.stderr
    assert files(completed) == before
    r = cli("stop", completed)
    assert r.returncode == 2 and r.stdout == "" and "is not running (completed)" in r.stderr, (r.stdout, r.stderr)
    assert run_info(completed).state == "completed"


def test_extend_trains_a_new_run_from_the_finished_adapter(completed, wait_run):
    before = files(completed)
    r = cli("resume", completed, "--extend", "4", "--detach")
    assert r.returncode == 0, r.stderr
    new = Path(r.stdout.strip().splitlines()[-1])
    assert new != completed and new.parent == completed.parent
    text = (new / "config.yaml").read_text()
    assert f"extends run {completed.name}" in text
    cfg = yaml.safe_load(text)
    assert cfg["model"]["init_adapter"] == str(completed / "output") and cfg["train"]["max_steps"] == 4
    info = wait_run(new, 240)
    assert info.state == "completed", info.reason
    old_losses = [e["loss"] for e in read_events(completed) if e["type"] == "train"]
    new_losses = [e["loss"] for e in read_events(new) if e["type"] == "train"]
    assert [e["step"] for e in read_events(new) if e["type"] == "train"] == [1, 2, 3, 4]
    # it starts where the finished adapter left off (a fresh start gives exactly old_losses[0]: same seed)
    assert new_losses[0] < old_losses[-1] + 0.05 and new_losses[0] < old_losses[0] - 0.2, (old_losses, new_losses)
    assert files(completed) == before
