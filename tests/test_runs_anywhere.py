"""Runs found from anywhere (core/runs.py): a default runs root that does not depend on the current
directory, a config's `runs_dir` taken from the config file's folder, and the per-user registry of run
directories that `runs`, `attach`, `status`, `stop`, `resume`, `delete` and the wizard read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftwizard.core.config import load_config, save_config
from ftwizard.core.errors import UserError
from ftwizard.core.runs import (default_runs_root, delete_run, list_runs, make_run_dir, registered_runs,
                                registry_path, resolve_run, runs_root, user_data_dir)

CLI = [sys.executable, "-m", "ftwizard.tui.cli"]  # the `ftwizard` console script


@pytest.fixture(autouse=True)
def own_user_data(tmp_path, monkeypatch):
    """A registry of this test's own (the session's is shared by every test that makes runs), for this
    process and the CLI subprocesses."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("FTWIZARD_RUNS_DIR", str(tmp_path / "default-runs"))


def fake_run(root: Path | None, label: str = "tiny-lora") -> Path:
    """A run directory made the way create_run makes one (registered), with a config and no process."""
    run_dir = make_run_dir(root, label)
    (run_dir / "config.yaml").write_text("model:\n  name_or_path: tiny\nmethod: lora\n")
    return run_dir


def test_default_runs_root_never_depends_on_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("FTWIZARD_RUNS_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_runs_root() == user_data_dir() / "runs" and runs_root() == default_runs_root()
    monkeypatch.setenv("FTWIZARD_RUNS_DIR", "rel")
    assert default_runs_root().resolve() == tmp_path / "rel"  # relative: to the current directory
    # creation honours it too: no runs_dir anywhere -> $FTWIZARD_RUNS_DIR
    assert fake_run(None).parent == tmp_path / "rel"


def test_config_runs_dir_is_taken_from_the_config_files_folder(tiny_config, tmp_path, monkeypatch):
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir(), elsewhere.mkdir()
    cfg = tiny_config()
    cfg.runs_dir = "my-runs"
    save_config(cfg, proj / "run.yaml")
    monkeypatch.chdir(elsewhere)
    assert load_config(proj / "run.yaml").runs_dir == str(proj / "my-runs")
    cfg.runs_dir = None
    save_config(cfg, proj / "run.yaml")
    assert load_config(proj / "run.yaml").runs_dir is None  # the default root decides


def test_runs_made_under_any_root_are_listed_and_found_by_id(tmp_path):
    a, b = fake_run(tmp_path / "a" / "runs", "first"), fake_run(tmp_path / "b" / "runs", "second")
    c = fake_run(None, "third")  # under $FTWIZARD_RUNS_DIR
    paths = [Path(i.path) for i in list_runs()]
    assert {a, b, c} <= set(paths) and len(paths) == len(set(paths))
    for run_dir in (a, b, c):
        assert resolve_run(run_dir.name) == run_dir
        assert resolve_run(run_dir.name[:-2]) == run_dir  # a unique prefix
    # --runs-dir narrows the list (and the search) to one root
    assert [Path(i.path) for i in list_runs(tmp_path / "a" / "runs")] == [a]
    with pytest.raises(UserError, match="no run"):
        resolve_run(b.name, tmp_path / "a" / "runs")


def test_same_id_under_two_roots_asks_for_the_directory(tmp_path):
    a = fake_run(tmp_path / "a", "twin")
    b = tmp_path / "b" / a.name
    shutil.copytree(a, b)
    from ftwizard.core.runs import register_run

    register_run(b)
    with pytest.raises(UserError, match="give the run directory") as exc:
        resolve_run(a.name)
    assert str(a) in str(exc.value) and str(b) in str(exc.value)
    assert resolve_run(str(b)) == b


def test_a_vanished_run_directory_drops_out_with_a_note_once(tmp_path):
    keep, gone = fake_run(tmp_path / "x", "keep"), fake_run(tmp_path / "y", "gone")
    shutil.rmtree(gone)
    assert gone not in [Path(i.path) for i in list_runs()]
    assert gone in registered_runs()  # a caller that shows no note does not prune
    missing: list = []
    listed = [Path(i.path) for i in list_runs(missing=missing)]
    assert missing == [gone] and keep in listed and gone not in registered_runs()
    again: list = []
    list_runs(missing=again)
    assert again == []


def test_ftwizard_runs_says_which_run_directory_is_gone(tmp_path):
    gone = fake_run(tmp_path / "moved", "gone")
    keep = fake_run(tmp_path / "kept", "keep")
    shutil.rmtree(gone)
    r = subprocess.run(CLI + ["runs", "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"1 run directory no longer exists: {gone} (removed from the list)\n"
    import json

    assert str(keep) in [i["path"] for i in json.loads(r.stdout)]


def test_delete_removes_the_run_from_the_registry(tmp_path):
    run_dir = fake_run(tmp_path / "r", "doomed")
    (run_dir / "status.json").write_text('{"state": "completed", "updated": 1e12}')
    delete_run(run_dir)
    assert not run_dir.exists() and run_dir not in registered_runs()
    missing: list = []
    list_runs(missing=missing)
    assert missing == []  # deleted on purpose: no note


REGISTER = """
import sys
from ftwizard.core.runs import register_run, unregister_runs
tag, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    register_run(f"/nowhere/{tag}-{i}")
    if tag == "pruner":
        unregister_runs([f"/nowhere/{tag}-{i}"])
"""


def test_registry_writes_from_concurrent_launches_lose_nothing(tmp_path):
    """Four processes register 200 runs each while a fifth keeps rewriting the file (prune): every run
    registered by the four is there, once."""
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER, tag, "200"])
             for tag in ("a", "b", "c", "d", "pruner")]
    assert [p.wait(timeout=120) for p in procs] == [0] * 5
    lines = registry_path().read_text().splitlines()
    for tag in "abcd":
        mine = [ln for ln in lines if ln.startswith(f"/nowhere/{tag}-")]
        assert sorted(mine) == sorted(f"/nowhere/{tag}-{i}" for i in range(200))
    assert not any("pruner" in ln for ln in lines)


def test_a_run_started_elsewhere_is_found_from_a_fresh_shell_in_home(tiny_config, tmp_path, wait_run):
    """Acceptance: `train --detach` on a config with a relative runs_dir, started from another directory;
    then, from $HOME with nothing set, `runs --json` lists it, `status ID` and `attach ID` open it."""
    home, proj, elsewhere = tmp_path / "home", tmp_path / "proj", tmp_path / "elsewhere"
    for d in (home, proj, elsewhere):
        d.mkdir()
    cfg = tiny_config(steps=4)
    cfg.runs_dir = "runs"
    save_config(cfg, proj / "tiny.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "FTWIZARD_RUNS_DIR")}
    env["HOME"] = str(home)

    r = subprocess.run(CLI + ["train", str(proj / "tiny.yaml"), "--detach"], capture_output=True, text=True,
                       cwd=elsewhere, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    try:
        assert run_dir.parent == proj / "runs"  # the config's folder, not the current directory
        assert (home / ".local" / "share" / "ftwizard" / "runs.txt").read_text() == f"{run_dir}\n"

        r = subprocess.run(CLI + ["runs", "--json"], capture_output=True, text=True, cwd=home, env=env, timeout=120)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        import json

        assert [(i["id"], i["path"]) for i in json.loads(r.stdout)] == [(run_dir.name, str(run_dir))]
        r = subprocess.run(CLI + ["status", run_dir.name, "--json"], capture_output=True, text=True, cwd=home,
                           env=env, timeout=120)
        assert r.returncode == 0 and json.loads(r.stdout)["path"] == str(run_dir), r.stderr
        assert attach_draws_the_monitor(run_dir.name, cwd=home, env=env)
    finally:
        info = wait_run(run_dir)
    assert info.state == "completed", info.reason


def attach_draws_the_monitor(run_id: str, *, cwd: Path, env: dict) -> bool:
    """`ftwizard attach RUN` in a real pseudo-terminal: True once the monitor has drawn its title (the
    run's id); the monitor is then closed (the run goes on)."""
    import pty
    import select
    import signal
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(CLI + ["attach", run_id], stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                            env={**env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
                            start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = time.time() + 60
    try:
        while f"run {run_id}".encode() not in seen and time.time() < deadline and proc.poll() is None:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
    finally:
        os.close(master)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return f"run {run_id}".encode() in seen
