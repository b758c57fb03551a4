"""torchrun for a run of several processes: `python -m ftwizard.core.distlaunch RUN_DIR TORCHRUN_ARGS...`.

This is PyTorch's own launcher (`torch.distributed.run.main`, what the `torchrun` command runs) with two
things added, so that a group of processes behaves like the one training process does:

    SIGHUP    ignored: torchrun would turn it into the end of every rank (it handles SIGHUP like
              SIGTERM); a dropped SSH session must never end training
    a crash   when any rank fails, torchrun ends the others; this process then writes the run's `end`
              event and status.json as failed, naming the rank that caused it and why (its own
              RUN_DIR/ranks/RANK.end.json when it wrote one, else its exit code or signal). A rank that
              only lost its peers, or was ended by torchrun, is not the cause.

The launcher (core/launch.py) records this process's pid: the run is alive while it is. Rank 0 alone
writes events.jsonl and status.json while training (core/recipes/common.py `Run`).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

RANKS = "ranks"
PEER_LOST_EXIT = 3  # a rank that failed because another one went away


def _ignore_sighup() -> None:
    original = signal.signal

    def patched(sig, handler):
        if sig == signal.SIGHUP:
            return original(sig, signal.SIG_IGN)
        return original(sig, handler)

    signal.signal = patched
    original(signal.SIGHUP, signal.SIG_IGN)


def rank_end(run_dir: Path, rank: int) -> dict:
    try:
        return json.loads((run_dir / RANKS / f"{rank}.end.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def cause(run_dir: Path, failures: dict[int, dict]) -> tuple[int, str]:
    """(rank, reason) of the failure that ended the group. `failures`: rank -> {exitcode, signal}."""
    def why(rank: int) -> str:
        own = rank_end(run_dir, rank).get("reason")
        f = failures[rank]
        if own:
            return own
        if f.get("signal"):
            return f"killed by {f['signal']}"
        return f"exited with code {f.get('exitcode')}"

    def secondary(rank: int) -> bool:
        end, f = rank_end(run_dir, rank), failures[rank]
        return bool(end.get("peer_lost")) or f.get("exitcode") == PEER_LOST_EXIT or f.get("signal") == "SIGTERM"

    ranks = sorted(failures)
    first = next((r for r in ranks if not secondary(r)), ranks[0])
    return first, why(first)


def record_failure(run_dir: Path, failures: dict[int, dict]) -> None:
    from .events import EventWriter, read_events
    from .runs import LAUNCH, STATUS, read_json, write_json_atomic

    launched = (read_json(run_dir / LAUNCH) or {}).get("launched_at") or 0
    ended = [e for e in read_events(run_dir) if e.get("type") == "end" and (e.get("t") or 0) >= launched]
    rank, reason = cause(run_dir, failures)
    events = EventWriter(run_dir)
    try:
        if ended and ended[-1].get("state") in ("completed", "stopped"):
            # Rank 0 had already said how training ended: a crash at teardown does not change it.
            events.emit("warning", code="teardown-crash", message=f"rank {rank} {reason} after the run had "
                        f"ended as {ended[-1]['state']}", evidence={"rank": rank, "failures": failures})
            return
        message = f"rank {rank}: {reason}"
        diag = {"kind": "rank-failed", "message": message, "rank": rank, "failures": failures,
                "fixes": ["see train.log (every rank writes to it)"]}
        events.emit("end", state="failed", reason=message, diagnosis=diag)
        status = read_json(run_dir / STATUS) or {}
        status.update(state="failed", reason=message, diagnosis=diag, updated=time.time())
        write_json_atomic(run_dir / STATUS, status)
    finally:
        events.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir, torchrun_args = Path(argv[0]).resolve(), argv[1:]
    _ignore_sighup()
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(torchrun_args)
        return 0
    except ChildFailedError as exc:
        failures = {int(r): {"exitcode": f.exitcode, "signal": f.signal_name() if f.exitcode < 0 else None,
                             "pid": f.pid} for r, f in exc.failures.items()}
        record_failure(run_dir, failures)
        return 1


if __name__ == "__main__":
    sys.exit(main())
