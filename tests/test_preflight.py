"""Pre-flight (core/preflight.py): every bad input is refused by `train` before a run exists, with one
line naming the place, exit 2 and no run directory; --force overrides judgements, never the impossible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftwizard.core.errors import UserError
from ftwizard.core.launch import create_run

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def cli(*args, cwd, env=None):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "FTWIZARD_RUNS_DIR": str(cwd / "runs"), **(env or {})})


def chat(q="What is two plus two?", a="four"):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def good_rows(n=40):
    return [json.dumps(chat(f"What is {i} plus {i}?", f"{2 * i}")) for i in range(n)]


@pytest.fixture
def setup(tmp_path, tiny_config):
    """(tmp_path, write(name, lines or bytes) -> path, config(**changes) -> config path)."""
    base = tiny_config().model_dump(mode="json")
    base["runs_dir"] = str(tmp_path / "runs")

    def write(name, content):
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else ("\n".join(content) + "\n").encode())
        return p

    def config(**changes):
        d = json.loads(json.dumps(base))
        for dotted, value in changes.items():
            node = d
            *parents, leaf = dotted.split("__")
            for k in parents:
                node = node[k]
            node[leaf] = value
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump(d, sort_keys=False))
        return p

    return tmp_path, write, config


def refused(r, tmp_path, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err and "\n" not in err, err
    assert "Traceback" not in r.stdout + r.stderr
    for w in words:
        assert w in err, (w, err)
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    return err


BAD_DATA = {
    # name: (file name, content, words the line must hold)
    "malformed json on line 1": ("d.jsonl", ["{not json"] + good_rows(), ["d.jsonl:1:", "not valid JSON"]),
    "bad bytes after line 1": ("d.jsonl", good_rows(5) + ['{"text": "caf\udce9"}'.encode("utf-8", "surrogateescape").decode("latin-1")]
                               + good_rows(30), ["d.jsonl:"]),
    "unknown role": ("d.jsonl", good_rows(30) + [json.dumps({"messages": [{"role": "wizard", "content": "x"},
                                                                            {"role": "assistant", "content": "y"}]})],
                     ["d.jsonl:31:", "unknown role 'wizard'"]),
    "rows of mixed shapes": ("d.jsonl", good_rows(30) + [json.dumps({"instruction": "a", "output": "b"})],
                             ["d.jsonl:31:", "looks like alpaca"]),
    "ragged csv rows": ("d.csv", ["prompt,completion"] + [f"q{i},a{i}" for i in range(30)] + ["q,a,extra"],
                        ["d.csv:32:"]),
}


@pytest.mark.parametrize("name", list(BAD_DATA))
def test_train_refuses_bad_rows_before_a_run_exists(name, setup):
    tmp_path, write, config = setup
    fname, content, words = BAD_DATA[name]
    if name == "bad bytes after line 1":
        content = b"\n".join(x.encode() for x in good_rows(5)) + b'\n{"text": "caf\xe9"}\n' + \
            b"\n".join(x.encode() for x in good_rows(30)) + b"\n"
        words = ["d.jsonl:6:", "UTF-8"]
    data = write(fname, content)
    refused(cli("train", config(dataset__path=str(data)), "--detach", cwd=tmp_path), tmp_path, *words)


def test_three_rows_are_refused_and_force_overrides_the_judgement(setup):
    tmp_path, write, config = setup
    data = write("d.jsonl", good_rows(3))
    cfg_path = config(dataset__path=str(data), dataset__validation=0.0, train__batch_size=1)
    err = refused(cli("train", cfg_path, "--detach", cwd=tmp_path), tmp_path, "only 3 usable rows", "--force")
    assert "dataset.path" in err
    from ftwizard.core.config import load_config
    from ftwizard.core.preflight import read

    run_dir = create_run(load_config(cfg_path), force=True)  # the same core call `train --force` makes
    forced = [f for f in read(run_dir) if f["code"] == "too-few-rows"]
    assert forced and forced[0]["forced"] and forced[0]["severity"] == "warning"
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "warning" and e["code"] == "preflight-too-few-rows" for e in events)


def test_every_assistant_turn_empty_is_refused_even_with_force(setup):
    tmp_path, write, config = setup
    data = write("d.jsonl", [json.dumps(chat(f"question {i}?", "")) for i in range(40)])
    cfg_path = config(dataset__path=str(data))
    refused(cli("train", cfg_path, "--force", "--detach", cwd=tmp_path), tmp_path,
            "every assistant turn", "empty", "d.jsonl:1:")


def test_some_empty_answers_are_only_a_warning(setup):
    from ftwizard.core.config import load_config
    from ftwizard.core.preflight import preflight

    tmp_path, write, config = setup
    data = write("d.jsonl", good_rows(40) + [json.dumps(chat("q?", ""))])
    report = preflight(load_config(config(dataset__path=str(data))))
    assert not report.errors and any(f.code == "empty-answer" for f in report.warnings)


def test_absurd_batch_size_is_refused(setup):
    tmp_path, write, config = setup
    err = refused(cli("train", config(train__batch_size=10**9), "--detach", cwd=tmp_path), tmp_path,
                  "train.batch_size", "1,000,000,000", "training rows")
    assert "--force" not in err or "batch_size" in err


def test_offline_hub_model_with_nothing_cached_is_refused(setup, tmp_path):
    tmp, write, config = setup
    r = cli("train", config(model__name_or_path="nobody-ftw/no-such-model"), "--detach", cwd=tmp,
            env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")})
    refused(r, tmp, "nobody-ftw/no-such-model", "HF_HUB_OFFLINE=1", "model.name_or_path", "c.yaml:")


def test_missing_model_and_dataset_name_the_config_file_and_line(setup):
    tmp_path, write, config = setup
    cfg_path = config(model__name_or_path=str(tmp_path / "no-model"))
    line = next(i for i, t in enumerate(cfg_path.read_text().splitlines(), 1) if "name_or_path" in t)
    refused(cli("train", cfg_path, cwd=tmp_path), tmp_path,
            f"c.yaml:{line}: model.name_or_path: {tmp_path / 'no-model'}: no such model directory")
    cfg_path = config(dataset__path=str(tmp_path / "gone.jsonl"))
    line = next(i for i, t in enumerate(cfg_path.read_text().splitlines(), 1) if t.strip().startswith("path:"))
    refused(cli("train", cfg_path, cwd=tmp_path), tmp_path,
            f"c.yaml:{line}: dataset.path: {tmp_path / 'gone.jsonl'}: no such file")


def test_runs_dir_under_proc_or_below_a_file_is_one_line(setup):
    tmp_path, write, config = setup
    (tmp_path / "a-file").write_text("x")
    for where in ("/proc/ftwizard-runs", str(tmp_path / "a-file" / "runs")):
        r = cli("train", config(), "--runs-dir", where, "--detach", cwd=tmp_path)
        refused(r, tmp_path, "runs_dir", "cannot create runs here")
    assert not Path("/proc/ftwizard-runs").exists()


def test_runs_dir_on_a_read_only_mount(setup):
    tmp_path, write, config = setup
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        r = cli("train", config(), "--runs-dir", ro / "runs", "--detach", cwd=tmp_path)
        err = refused(r, tmp_path, "runs_dir", "not writable")
        assert "Read-only" in err
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_memory_over_free_ram_is_forceable_far_over_it_is_not(setup):
    """The estimator's verdict (estimate.check_fits) against a fake reading of free RAM: over it, an error
    --force may override, with the setting that fits; over 4x it, refused even with --force; tight is
    a warning."""
    from ftwizard.core.config import load_config
    from ftwizard.core.estimate import check_fits
    from ftwizard.core.hardware import Hardware
    from ftwizard.core.preflight import preflight

    tmp_path, write, config = setup
    cfg = load_config(config())
    need = check_fits(cfg, Hardware(ram_total_gib=64, ram_available_gib=64)).estimate.total_gib
    assert preflight(cfg, hardware=Hardware(ram_total_gib=64, ram_available_gib=64)).errors == []
    over = Hardware(ram_total_gib=64, ram_available_gib=need * 0.8)
    with pytest.raises(UserError, match="would not fit: the run needs"):
        preflight(cfg, hardware=over)
    assert [f.code for f in preflight(cfg, hardware=over, force=True).warnings if f.forced] == ["memory"]
    with pytest.raises(UserError, match="would not fit"):
        preflight(cfg, hardware=Hardware(ram_total_gib=64, ram_available_gib=need / 5), force=True)


def test_resume_runs_the_preflight_too(setup, tiny_config):
    """A stopped run whose dataset went bad since: resume refuses, one line, and writes nothing."""
    from recorded_runs import make_run

    tmp_path, write, config = setup
    run = make_run(tmp_path / "runs", "r1", state="stopped", steps=8, max_steps=24)
    ck = run / "checkpoints" / "checkpoint-8"
    ck.mkdir(parents=True, exist_ok=True)
    (ck / "trainer_state.json").write_text("{}")
    (ck / "adapter_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    data = write("d.jsonl", ["{broken"] + good_rows())
    cfg = tiny_config().model_dump(mode="json")
    cfg["dataset"]["path"] = str(data)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    r = cli("resume", run, cwd=tmp_path)
    assert r.returncode == 2 and "d.jsonl:1:" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
