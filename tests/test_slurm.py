"""`ftwizard slurm`: the run and its job.sbatch, checked as text (bash -n, shellcheck) and for real on a
one-node Slurm cluster started on this machine (tests/slurm_cluster.py; skipped with the reason where
slurm-wlm/munge are missing or will not start): the generated job of a 2-process CPU run of the tiny
model runs to completion; status, runs, attach, stop (graceful, and scancel of a pending job) and resume
(a new job from the checkpoint) work on such runs from outside the job, asking Slurm.

Two Slurm nodes run too (two slurmd daemons on this machine under two host names): the rendezvous
crosses Slurm nodes, not a network. Not run here: GPUs (NCCL), several machines, a real login node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftwizard.core.config import dump_config

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def wait_until(pred, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def config_file(tiny_config, tmp_path, name="run.yaml", **kw) -> Path:
    c = tiny_config(longest_first=False, **{"steps": 6, "batch_size": 2, "eval_steps": 6, "save_steps": 2, **kw})
    c.dataset.validation = 0.0
    path = tmp_path / name
    path.write_text(dump_config(c))
    return path


def run_dir_of(r: subprocess.CompletedProcess) -> Path:
    assert r.returncode == 0, r.stderr[-2000:]
    return Path(r.stdout.strip().splitlines()[-1])


def check_script(path: Path) -> None:
    """bash -n, and shellcheck's full read when it is installed (.ci/run installs it)."""
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


# ------------------------------------------------------------------------------- the script, no Slurm


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return {}


def test_slurm_makes_the_run_and_a_cpu_job_script_and_submits_nothing(tiny_config, tmp_path, made):
    cfg = config_file(tiny_config, tmp_path)
    r = cli("slurm", cfg, "--nodes", 2, "--gpus-per-node", 0, "--procs-per-node", 2, "--partition", "cpu",
            "--time", "00:30:00", "--account", "proj1", "--runs-dir", tmp_path / "runs")
    run_dir = run_dir_of(r)
    assert "not submitted" in r.stderr
    assert not (run_dir / "launch.json").exists()  # nothing submitted, nothing started
    assert json.loads((run_dir / "slurm.json").read_text())["jobs"] == []
    text = (run_dir / "config.yaml").read_text()
    assert "nnodes: 2" in text and "nproc_per_node: 2" in text and "strategy: ddp" in text
    script = (run_dir / "job.sbatch").read_text()
    for directive in ("--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=2", "--partition=cpu",
                      "--time=00:30:00", "--account=proj1", f"--output={run_dir}/train.log"):
        assert f"#SBATCH {directive}\n" in script
    assert "--gpus-per-node" not in script
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "-m ftwizard.core.distlaunch" in srun and "-m ftwizard.core.trainer" in srun
    assert "--nnodes 2 --nproc_per_node 2 --rdzv_backend c10d" in srun
    assert '--rdzv_endpoint "${head_node}":"${port}"' in srun and '--rdzv_id "${SLURM_JOB_ID}"' in srun
    check_script(run_dir / "job.sbatch")
    r = cli("status", run_dir, "--json")
    assert json.loads(r.stdout)["world_size"] == 4


def test_a_gpu_job_script_asks_for_the_cards_and_one_process_each(tiny_config, tmp_path):
    cfg = config_file(tiny_config, tmp_path)
    r = cli("slurm", cfg, "--nodes", 2, "--gpus-per-node", 4, "--gpu-memory", 80, "--runs-dir", tmp_path / "runs")
    run_dir = run_dir_of(r)
    script = (run_dir / "job.sbatch").read_text()
    assert "#SBATCH --gpus-per-node=4\n" in script and "--cpus-per-task" not in script
    assert "--nnodes 2 --nproc_per_node 4" in script
    text = (run_dir / "config.yaml").read_text()
    assert "device: cuda" in text and "nproc_per_node: 4" in text and "strategy: ddp" in text
    check_script(run_dir / "job.sbatch")


def test_gpus_on_a_login_node_without_them_need_their_memory(tiny_config, tmp_path):
    r = cli("slurm", config_file(tiny_config, tmp_path), "--nodes", 1, "--gpus-per-node", 2,
            "--runs-dir", tmp_path / "runs")
    assert r.returncode == 2 and "--gpu-memory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, field", [
    (["--partition", "a b"], "--partition"),
    (["--account", "x'y"], "--account"),
    (["--nodes", "0"], "--nodes"),
])
def test_what_an_sbatch_line_cannot_carry_is_refused_before_anything_exists(tiny_config, tmp_path, args, field):
    base = {"--nodes": "1", "--gpus-per-node": "0"}
    given = dict(zip(args[::2], args[1::2]))
    flat = [x for k, v in {**base, **given}.items() for x in (k, v)]
    r = cli("slurm", config_file(tiny_config, tmp_path), *flat, "--runs-dir", tmp_path / "runs")
    assert r.returncode == 2 and field in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_a_runs_folder_with_a_space_is_refused_for_slurm(tiny_config, tmp_path):
    r = cli("slurm", config_file(tiny_config, tmp_path), "--nodes", 1, "--gpus-per-node", 0,
            "--runs-dir", tmp_path / "my runs")
    assert r.returncode == 2 and "runs_dir" in r.stderr and not (tmp_path / "my runs").exists()


def test_a_slurm_job_refuses_cards_picked_on_one_machine(tiny_config, tmp_path):
    """distributed.gpus is CUDA_VISIBLE_DEVICES for the local launcher; in a job Slurm picks the cards,
    so a list is refused rather than written into a job that would not honour it."""
    path = config_file(tiny_config, tmp_path)
    path.write_text(path.read_text().replace("gpus: auto", "gpus:\n  - 0\n  - 1"))
    assert "  - 1" in path.read_text()
    r = cli("slurm", path, "--nodes", 1, "--gpus-per-node", 2, "--gpu-memory", 80, "--runs-dir", tmp_path / "runs")
    assert r.returncode == 2 and "distributed.gpus" in r.stderr and "--gpus-per-node" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_launch_command_gives_every_node_the_cards_the_run_chose(tiny_config, tmp_path):
    """As the local launcher does (launch.chosen_cards_env): CUDA_VISIBLE_DEVICES of distributed.gpus, in
    NVML's order, before each machine's torchrun line; a CPU run's line has no such prefix."""
    from ftwizard.core.hardware import GPU, Hardware
    from ftwizard.core.launch import create_run

    c = tiny_config(steps=2)
    c.train.device, c.distributed.gpus, c.distributed.strategy = "cuda", [0, 2], "ddp"
    three = Hardware(gpus=tuple(GPU(i, "NVIDIA A100-SXM4-80GB", 80.0, 79.0, (8, 0)) for i in range(3)))
    gpu_run = create_run(c, tmp_path / "runs", hardware=three)
    r = cli("launch-command", gpu_run, "--nodes", 2, "--master", "head")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if not x.startswith("#")]
    assert len(lines) == 2
    for k, line in enumerate(lines):
        assert line.startswith("CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0,2 python -m ftwizard.core.distlaunch ")
        assert f"--nnodes 2 --node_rank {k} --nproc_per_node 2 " in line and "--rdzv_endpoint head:29500" in line
        assert subprocess.run(["bash", "-n", "-c", line]).returncode == 0

    cpu_run = run_dir_of(cli("slurm", config_file(tiny_config, tmp_path), "--nodes", 2, "--gpus-per-node", 0,
                             "--procs-per-node", 2, "--runs-dir", tmp_path / "runs"))
    line = cli("launch-command", cpu_run, "--nodes", 2, "--node-rank", 1, "--master", "head").stdout.strip()
    assert line.startswith("python -m ftwizard.core.distlaunch ") and "--node_rank 1 --nproc_per_node 2 " in line


def test_launch_command_takes_the_rendezvous_from_the_config(tiny_config, tmp_path):
    """distributed.rdzv_endpoint / rdzv_backend / rdzv_id are honoured: the first machine, the port, the
    backend and the id come from the run's config.yaml when the command line does not give them."""
    from ftwizard.core.launch import create_run

    c = tiny_config(steps=2)
    d = c.distributed
    d.strategy, d.nproc_per_node, d.nnodes = "ddp", 1, 2
    d.rdzv_endpoint, d.rdzv_backend, d.rdzv_id = "head.example:29400", "static", "exp1"
    run_dir = create_run(c, tmp_path / "runs")
    r = cli("launch-command", run_dir, "--nodes", 2, "--node-rank", 1)
    assert r.returncode == 0, r.stderr
    assert ("--nnodes 2 --node_rank 1 --nproc_per_node 1 --rdzv_backend static --rdzv_endpoint head.example:29400 "
            "--rdzv_id exp1 ") in r.stdout
    r = cli("launch-command", run_dir, "--nodes", 2, "--node-rank", 0, "--master", "other", "--port", 1234)
    assert "--rdzv_endpoint other:1234 " in r.stdout


def test_a_slurm_job_refuses_a_fixed_rendezvous_and_keeps_the_rendezvous_id(tiny_config, tmp_path):
    path = config_file(tiny_config, tmp_path)
    text = path.read_text()
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(text.replace("rdzv_endpoint: null", "rdzv_endpoint: head:29400"))
    r = cli("slurm", fixed, "--nodes", 2, "--gpus-per-node", 0, "--runs-dir", tmp_path / "runs")
    assert r.returncode == 2 and "distributed.rdzv_endpoint" in r.stderr and not (tmp_path / "runs").exists()
    named = tmp_path / "named.yaml"
    named.write_text(text.replace("rdzv_id: null", "rdzv_id: exp1"))
    run_dir = run_dir_of(cli("slurm", named, "--nodes", 2, "--gpus-per-node", 0, "--runs-dir", tmp_path / "runs"))
    script = (run_dir / "job.sbatch").read_text()
    assert "--rdzv_id exp1 " in script and "SLURM_JOB_ID}\" -m" not in script


def test_the_script_quotes_a_run_dir_the_shell_would_split():
    """The run dir goes into the shell part through shlex: one word whatever it holds (the #SBATCH
    lines refuse such paths before; this guards the shell half on its own)."""
    from ftwizard.core.slurm import JobSpec, job_script

    odd = "/tmp/a b/$(touch x);c"
    text = job_script(odd, "r", JobSpec(nodes=1, gpus_per_node=0, procs_per_node=2),
                      ["python", "-m", "ftwizard.core.trainer", odd], {"A": "1 2"})
    r = subprocess.run(["bash", "-c", text.split("set -euo pipefail\n")[1].split("\ncd ")[0] + '\nprintf %s "$RUN_DIR"'],
                       capture_output=True, text=True)
    assert r.stdout == odd
    assert "export A='1 2'" in text


def test_a_slurm_run_is_never_called_dead_when_slurm_cannot_be_asked(tmp_path, monkeypatch):
    from ftwizard.core.runs import run_info, write_json_atomic

    run_dir = tmp_path / "20260101-000000-x"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("method: lora\n")
    write_json_atomic(run_dir / "launch.json", {"slurm_job": "424242", "launched_at": time.time() - 5})
    write_json_atomic(run_dir / "status.json", {"state": "running", "pid": os.getpid() + 10_000_000})
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))  # no squeue, sacct, scontrol
    info = run_info(run_dir)
    assert info.state == "running" and "cannot be asked" in info.reason
    assert info.pid is None and info.extra["slurm_job"] == "424242"


# ------------------------------------------------------------------------------ a real one-node cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from slurm_cluster import Cluster, Unavailable

    try:
        c = Cluster(tmp_path_factory.mktemp("slurm"), nodes=2).start()
    except Unavailable as two:  # e.g. no second host name: the one-node tests still run
        try:
            c = Cluster(tmp_path_factory.mktemp("slurm1"), nodes=1).start()
        except Unavailable as exc:
            pytest.skip(f"no Slurm cluster here: {exc}")
        print(f"one-node Slurm cluster only: {two}")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(c.conf)
    yield c
    subprocess.run(["scancel", "--partition", "debug"], env=c.env, capture_output=True)  # our private cluster only
    c.stop()
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


def losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "train":
            out[e["step"]] = e["loss"]
    return out


def test_the_generated_job_runs_a_two_process_cpu_run_to_completion(cluster, tiny_config, tmp_path, wait_run, made):
    cfg = config_file(tiny_config, tmp_path)
    t0 = time.time()
    r = cli("slurm", cfg, "--nodes", 1, "--gpus-per-node", 0, "--procs-per-node", 2, "--submit",
            "--runs-dir", tmp_path / "runs")
    run_dir = run_dir_of(r)
    job = json.loads((run_dir / "launch.json").read_text())["slurm_job"]
    assert f"submitted Slurm job {job}" in r.stderr
    check_script(run_dir / "job.sbatch")
    info = wait_run(run_dir, 300)
    took = time.time() - t0
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-3000:])
    st = json.loads(cli("status", run_dir, "--json").stdout)
    assert st["world_size"] == 2 and st["state"] == "completed" and st["extra"]["slurm_job"] == job
    evs = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    submitted = json.loads((run_dir / "launch.json").read_text())["launched_at"]
    print(f"Slurm job {job} (2 gloo processes, 6 steps): `ftwizard slurm --submit` to completed {took:.1f} s, "
          f"of which sbatch to the end event {evs[-1]['t'] - submitted:.1f} s")
    assert [e["type"] for e in evs].count("end") == 1 and max(losses(run_dir)) == 6
    dev = next(e["value"] for e in evs if e["type"] == "info" and e.get("key") == "device")
    assert dev["world_size"] == 2 and dev["strategy"] == "ddp"
    assert "rendezvous on" in (run_dir / "train.log").read_text()
    runs = json.loads(cli("runs", "--runs-dir", tmp_path / "runs", "--json").stdout)
    assert [(x["id"], x["state"]) for x in runs] == [(run_dir.name, "completed")]
    made["slurm_completed"] = run_dir


async def test_attach_opens_the_monitor_on_a_slurm_run(cluster, made):
    from fakes import FakeNvml
    from pilot import until

    from ftwizard.tui.screens.finished import FinishedScreen
    from ftwizard.tui.screens.monitor import MonitorApp, MonitorScreen

    run_dir = made.get("slurm_completed")
    if run_dir is None:
        pytest.skip("the Slurm run did not complete")
    app = MonitorApp(lambda: MonitorScreen(run_dir, nvml_source=FakeNvml([])))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FinishedScreen), timeout=60)
        mon = next(s for s in app.screen_stack if isinstance(s, MonitorScreen))
        assert mon.run_state == "completed" and mon.view.train_loss.xs == list(range(1, 7))


LOSS_TOLERANCE = 1e-3  # relative, per step: as tests/test_distributed.py


def test_two_slurm_nodes_train_the_same_curve_as_one_node_of_two_processes(cluster, tiny_config, tmp_path,
                                                                           wait_run, made):
    """--nodes 2 --procs-per-node 1: one torchrun per Slurm node, meeting in the c10d rendezvous on the
    first node (both nodes are this machine under two host names); the same world size and batch as the
    one-node run, so the same losses."""
    one = made.get("slurm_completed")
    if one is None:
        pytest.skip("the one-node Slurm run did not complete")
    if cluster.nodes < 2:
        pytest.skip("the test cluster has one node here (no second host name)")
    run_dir = run_dir_of(cli("slurm", config_file(tiny_config, tmp_path), "--nodes", 2, "--gpus-per-node", 0,
                             "--procs-per-node", 1, "--submit", "--runs-dir", tmp_path / "runs"))
    info = wait_run(run_dir, 300)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-3000:])
    log = (run_dir / "train.log").read_text()
    nodes = log.split("ftwizard: Slurm job ", 1)[1].split(" on ", 1)[1].split(",", 1)
    assert len(nodes) == 2, log[:500]  # the job ran on two Slurm nodes
    assert json.loads(cli("status", run_dir, "--json").stdout)["world_size"] == 2
    a, b = losses(one), losses(run_dir)
    assert a.keys() == b.keys()
    worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
    print(f"2 Slurm nodes x 1 process vs 1 node x 2 processes: worst relative loss difference {worst:.2e}")
    assert worst < LOSS_TOLERANCE


def test_stop_scancels_a_pending_job_and_stops_a_running_one_gracefully_then_resume(
        cluster, tiny_config, tmp_path, wait_run):
    """A one-node job holding every CPU of its node runs; a job of every node waits for it. stop on the
    pending one cancels it (scancel); stop on the running one makes it checkpoint and end as stopped;
    resume submits a new job that continues its curve."""
    from ftwizard.core.runs import run_info

    long = dict(steps=3000, save_steps=1000, eval_steps=3000)
    first = run_dir_of(cli("slurm", config_file(tiny_config, tmp_path, "a.yaml", **long), "--nodes", 1,
                           "--gpus-per-node", 0, "--procs-per-node", 2, "--cpus-per-task", os.cpu_count() or 1,
                           "--submit", "--runs-dir", tmp_path / "runs"))
    assert wait_until(lambda: run_info(first).step >= 3, timeout=300), run_info(first)
    second = run_dir_of(cli("slurm", config_file(tiny_config, tmp_path, "b.yaml"), "--nodes", cluster.nodes,
                            "--gpus-per-node", 0, "--procs-per-node", 2, "--submit", "--runs-dir", tmp_path / "runs"))
    pending = run_info(second)
    assert pending.state == "starting" and "pending" in pending.reason, pending

    r = cli("stop", second, "--timeout", 60)
    assert r.returncode == 0, r.stderr
    assert "scancel" in r.stdout and "still pending" in r.stdout
    info = run_info(second)
    assert info.state == "stopped" and "cancelled by ftwizard stop" in info.reason

    r = cli("stop", first, "--timeout", 120, "--grace", 100)
    assert r.returncode == 0, r.stderr
    assert "scancel" not in r.stdout
    info = wait_run(first, 120)
    assert info.state == "stopped" and info.reason != "" and "cancelled" not in (info.reason or ""), info.reason
    stopped_at = info.step
    assert stopped_at < 3000 and list((first / "checkpoints").glob("checkpoint-*"))

    r = cli("resume", first, "--detach")
    assert r.returncode == 0, r.stderr
    jobs = json.loads((first / "slurm.json").read_text())["jobs"]
    assert len(jobs) == 2 and f"submitted Slurm job {jobs[1]}" in r.stderr
    assert "--resume" in (first / "job.sbatch").read_text()
    assert wait_until(lambda: run_info(first).step > stopped_at + 2, timeout=300)
    r = cli("stop", first, "--timeout", 120)  # the rest of 3,000 steps is not the point: stop again
    assert r.returncode == 0
    info = wait_run(first, 120)
    assert info.state == "stopped" and info.step > stopped_at
    curve = losses(first)
    assert all(s in curve for s in range(1, info.step + 1))  # one curve across both jobs, no gap
