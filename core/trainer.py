"""The training process: `python -m ftwizard.core.trainer RUN_DIR [--resume]`.

Reads `RUN_DIR/config.yaml` and nothing else, as written (everything `auto` was resolved when the run
was created); writes `events.jsonl`, `status.json`, checkpoints and `output/`. It is started detached
by `ftwizard train` (own session, stdout/stderr to `train.log`) so it survives the terminal.

This file is only the process around a recipe: signals, status and how the run ended (completed,
stopped, failed with a diagnosis). The training itself is the recipe of the config's `training` kind
(core/recipes/: sft.py, with each feature mapped to its config key), on shared set-up (common.py) and
the Trainer's speed patches (core/speed.py).

    stop      SIGTERM or RUN_DIR/stop.request: checkpoint, save, state "stopped"
    resume    --resume: from the newest whole and finite checkpoint in RUN_DIR/checkpoints (core/checkpoints.py);
              a completed run is final and refused
    SIGHUP    ignored: a dropped SSH session never ends training
    several   started by torchrun (core/distlaunch.py) when distributed.nproc_per_node x nnodes > 1:
    processes rank 0 alone writes events.jsonl and status.json; a stop is agreed by every rank at a step
              end (all checkpoint together); SIGTERM from torchrun (another rank failed) ends this
              rank at once; a failing rank writes why to RUN_DIR/ranks/RANK.end.json and the launcher
              ends the run as failed naming the rank
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from .config import load_config
from .errors import UserError
from .recipes.common import Run, StopRequested, log
from .runs import CONFIG


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0]).resolve()
    resume = "--resume" in argv
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH session must never end training
    # Handlers first, then status.json (with our pid): `ftwizard stop` only signals a process whose pid
    # is in status.json, so a SIGTERM can never arrive before the handler (it would kill, not stop).
    holder: list[Run] = []
    early_stop = []

    world = int(os.environ.get("WORLD_SIZE", 1))

    def on_stop(*_):
        if world > 1 and holder:
            # torchrun ends the other ranks with SIGTERM when one fails (a user's stop is the
            # stop.request file every rank agrees on): nothing to save, the group is broken.
            holder[0].end_rank("ended by torchrun (SIGTERM)", peer_lost=True)
            os._exit(128 + signal.SIGTERM)
        if holder:
            holder[0].request_stop()
        else:
            early_stop.append(True)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    from .checkpoints import refuse_final

    if resume and refuse_final(run_dir):  # a completed run is final: nothing is written to it
        return 2
    run = Run(run_dir)
    holder.append(run)
    t_start = time.time()
    try:
        run.stop_requested = bool(early_stop)
        run.phase("started", f"pid {os.getpid()}" + (" (resume)" if resume else ""))
        cfg = load_config(run_dir / CONFIG, resolve_paths=False)
        from .recipes import recipe_for

        outcome = recipe_for(cfg.training)(cfg, run, resume)
        state = "stopped" if outcome.stopped else "completed"
        reason = "stopped on request (checkpoint saved)" if outcome.stopped else None
        run.events.emit("end", state=state, reason=reason, output=str(outcome.output),
                        elapsed_s=round(time.time() - t_start, 2), step=outcome.step)
        run.write_status(state=state, reason=reason, step=outcome.step)
        log(f"{state}: {outcome.output}")
        return 0
    except StopRequested:
        reason = "stopped on request before training started"
        run.events.emit("end", state="stopped", reason=reason, output=None)
        run.write_status(state="stopped", reason=reason)
        return 0
    except UserError as exc:
        reason = str(exc).splitlines()[0]
        from .diagnose import diagnose_text

        diag = {"kind": "dataset" if "dataset" in reason else "config", "message": reason, "fixes": []}
        diag = diagnose_text(reason) or diag
        log(f"failed: {reason}")
        return fail(run, reason, diag, 2)
    except BaseException as exc:  # noqa: BLE001 - the run must always record how it ended
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        from .diagnose import diagnose_text

        text = f"{type(exc).__name__}: {exc}"
        diag = diagnose_text(text, exc_type=type(exc).__name__, run_dir=run_dir) or {
            "kind": "error", "message": text.splitlines()[0][:300], "fixes": ["see train.log"]}
        if diag["kind"] == "oom":
            # Where it happened and the longest batch, so the fixes can be judged (with longest_first the
            # longest rows run at step 1: an OOM later means memory grew, e.g. fragmentation or eval).
            step = run.status.get("step") or 0
            where = f"at step {step + 1}" if run.training_started else "before training started"
            longest = run.facts.get("max_length_seen")
            diag["message"] = f"CUDA out of memory {where}" + (
                f"; longest row {longest} tokens (max_length {run.facts.get('max_length')})" if longest else "")
            diag["step"] = step + 1 if run.training_started else None
            diag["longest_row_tokens"] = longest
        return fail(run, diag["message"], diag, 1, peer_lost=peer_lost(text))
    finally:
        run.events.close()


def fail(run: Run, reason: str, diag: dict, code: int, peer_lost: bool = False) -> int:
    """A failed run's end. With several processes a rank only says why it failed
    (ranks/RANK.end.json): the launcher, which sees every rank end, names the cause in the end event."""
    if run.world_size == 1:
        run.events.emit("end", state="failed", reason=reason, diagnosis=diag)
        run.write_status(state="failed", reason=reason, diagnosis=diag)
        return code
    from .distlaunch import PEER_LOST_EXIT

    run.end_rank(reason, peer_lost=peer_lost)
    return PEER_LOST_EXIT if peer_lost else code


def peer_lost(text: str) -> bool:
    """An error that only says another rank went away (gloo / NCCL lost a peer)."""
    needles = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "DistBackendError",
               "NCCL communicator was aborted", "ProcessGroupGloo", "Socket Timeout", "recvBytes", "sendBytes")
    return any(n in text for n in needles)


if __name__ == "__main__":
    sys.exit(main())
