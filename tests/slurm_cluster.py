"""A one-node Slurm cluster on this machine for tests: Debian's slurm-wlm and munge (installed by .ci/run),
started with a generated slurm.conf in a temporary directory (state, spool, logs, pid files, munge's
socket and key all there; ports picked free), so nothing of the machine's own Slurm or munge is used.
`start` raises Unavailable with the reason when it cannot (not root, binaries missing, a daemon that does
not come up); the fixture turns that into a skip.

`Cluster(base, nodes=2)` runs two slurmd daemons on this machine (`slurmd -N NAME`, each its own port,
spool and pid file), named by two host names that resolve here (this machine's name and localhost), so
a job of 2 nodes gets two host names and torchrun's rendezvous crosses "nodes" as on a real cluster
(on one kernel: not a test of the network between machines). Each node is given every CPU of the
machine: Slurm's accounting is oversubscribed, the machine is not asked for more than it runs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


class Unavailable(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ram_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


class Cluster:
    def __init__(self, base: Path, nodes: int = 1):
        self.base = base
        self.nodes = nodes
        self.conf = base / "slurm.conf"
        self.socket = base / "munge" / "munge.socket"
        self.host = socket.gethostname()
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pids: list[Path] = []
        self.names = [self.host, "localhost"][:nodes] if self.host != "localhost" else ["localhost"]

    def write(self) -> None:
        b = self.base
        for d in ("munge", "state", "spool", "log"):
            (b / d).mkdir(parents=True, exist_ok=True)
        key = b / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        per_node = os.cpu_count() or 1  # each node believes it has the whole machine (tests only)
        self.conf.write_text("\n".join([
            "ClusterName=ftwtest",
            f"SlurmctldHost={self.host}",
            f"SlurmctldPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={b / 'state'}",
            f"SlurmdSpoolDir={b / 'spool'}-%n",
            f"SlurmctldPidFile={b / 'slurmctld.pid'}",
            f"SlurmdPidFile={b / 'slurmd'}-%n.pid",
            f"SlurmctldLogFile={b / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={b / 'log' / 'slurmd'}-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "MinJobAge=600",
            "KillWait=30",
            *(f"NodeName={n} NodeAddr=127.0.0.1 NodeHostname={self.host} Port={free_port()} CPUs={per_node} "
              f"RealMemory={int(ram_mib() * 0.8) // self.nodes} State=UNKNOWN" for n in self.names),
            f"PartitionName=debug Nodes={','.join(self.names)} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def _daemon(self, cmd: list[str], pidfile: Path, what: str) -> None:
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise Unavailable(f"{what} did not start: {' '.join((r.stderr or r.stdout).split())[:300]}")
        self.pids.append(pidfile)

    def start(self) -> "Cluster":
        missing = [b for b in BINARIES if not shutil.which(b)]
        if missing:
            raise Unavailable(f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge; .ci/run does)")
        if os.geteuid() != 0:
            raise Unavailable("the test cluster runs its daemons as root; this is not root")
        if len(self.names) < self.nodes:
            raise Unavailable(f"this machine has no second host name for a {self.nodes}-node cluster")
        self.write()
        m = self.base / "munge"
        try:
            self._daemon(["munged", "--force", f"--socket={self.socket}", f"--key-file={m / 'munge.key'}",
                          f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                          f"--seed-file={m / 'munged.seed'}"], m / "munged.pid", "munged")
            self._daemon(["slurmctld", "-f", str(self.conf)], self.base / "slurmctld.pid", "slurmctld")
            for n in self.names:
                self._daemon(["slurmd", "-f", str(self.conf), "-N", n], self.base / f"slurmd-{n}.pid", f"slurmd {n}")
        except Unavailable:
            self.stop()  # the daemons that did start
            raise
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True,
                               timeout=30)
            state = (r.stdout or r.stderr).strip()
            states = [x.rstrip("*") for x in state.split()]
            if r.returncode == 0 and len(states) == self.nodes and all(x == "idle" for x in states):
                return self
            time.sleep(0.5)
        self.stop()
        log = self.base / "log" / f"slurmd-{self.names[-1]}.log"
        tail = log.read_text()[-300:] if log.exists() else ""
        raise Unavailable(f"the node did not become idle within 60 s (sinfo: {state!r}; slurmd.log: {tail!r})")

    def stop(self) -> None:
        for pidfile in reversed(self.pids):  # slurmd, slurmctld, munged: each by its own pid file
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        self.pids.clear()
