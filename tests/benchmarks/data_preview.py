"""Dataset preview benchmark (run by hand): the first 50 rows of a generated 1 GB JSONL through
`quick_preview`, against `datasets.load_dataset("json", ...)` of the same file, in one run; then how
quickly a Textual app answers keys while `compute_stats` scans that file in a worker thread.

    /work/venv/bin/python tests/benchmarks/data_preview.py [--size-gb 1.0] [--keep]

The file and the `datasets` cache go to a temporary directory under /tmp, deleted at the end (unless
--keep). Goals (issue 5): preview <= 0.3 s and >= 50x faster than load_dataset; keys answered while
statistics run. The page cache is warm for both readers (the file was just written): that favours
load_dataset, which reads the whole file, far more than the preview, which reads 50 lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = ("the a model data train answer question user assistant please help thanks number result file "
         "line error value key table row column token loss learning rate step because first second").split()


def generate(path: Path, size: int, distinct: bool = False) -> int:
    """Chat rows (system/user/assistant, 200-1,500 characters) until the file reaches `size` bytes: 2,000
    conversations over and over, each row with its own `id`; `distinct`: each conversation's question
    also carries the row number, so no two rows share their messages (no duplicates to find)."""
    rng = random.Random(0)
    block = []
    for i in range(2000):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 250)))
        block.append({"messages": [{"role": "system", "content": "You are a helpful assistant."},
                                   {"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    rows = 0
    written = 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < size:
            r = block[rows % len(block)]
            r["id"] = rows  # every row distinct
            if distinct:
                r = {**r, "messages": [r["messages"][0], {**r["messages"][1],
                                                          "content": f"{r['messages'][1]['content']} #{rows}"},
                                       r["messages"][2]]}
            line = json.dumps(r) + "\n"
            fh.write(line)
            written += len(line)
            rows += 1
    return rows


def time_preview(path: Path, runs: int) -> list[float]:
    from ftwizard.core.data.preview import quick_preview

    out = []
    for _ in range(runs):
        t = time.perf_counter()
        p = quick_preview(str(path), n=50)
        out.append(time.perf_counter() - t)
        assert len(p.rows) == 50 and p.format == "messages"
    return out


def time_load_dataset(path: Path, cache: Path) -> float:
    import datasets

    datasets.disable_progress_bars()
    t = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    rows = ds.select(range(50)).to_list()
    dt = time.perf_counter() - t
    assert len(rows) == 50
    return dt


def responsiveness(path: Path, tok, seconds: float) -> dict:
    """A Textual app with one binding; compute_stats runs in a thread worker (as the wizard runs it);
    we send the key every 50 ms and time each press until the app's action has run."""
    from textual.app import App
    from textual.widgets import Static

    from ftwizard.core.data.stats import compute_stats

    cancel = threading.Event()
    progress = [0.0]
    partial = [None]

    class Bench(App):
        BINDINGS = [("x", "bump", "bump")]
        count = 0

        def compose(self):
            yield Static("0", id="n")

        def on_mount(self):
            self.run_worker(lambda: compute_stats(str(path), tok, None, 1024, progress=lambda f: progress.__setitem__(0, f),
                                                  cancel=cancel, partial=lambda st: partial.__setitem__(0, st)),
                            thread=True, exit_on_error=False)

        def action_bump(self):
            self.count += 1
            self.query_one("#n", Static).update(str(self.count))

    lat = []

    async def drive():
        app = Bench()
        async with app.run_test() as pilot:
            await pilot.pause()
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                # app.simulate_key posts the same Key event a terminal key press makes; pilot.press would
                # also wait for the *process* to go idle, which never happens while a worker computes
                t = time.perf_counter()
                before = app.count
                app.simulate_key("x")
                while app.count == before:
                    await asyncio.sleep(0.0005)
                lat.append(time.perf_counter() - t)
                await asyncio.sleep(0.05)
            cancel.set()
            await app.workers.wait_for_complete()
            return app.count

    presses = asyncio.run(drive())
    lat.sort()
    return {"presses": presses, "median_ms": round(statistics.median(lat) * 1000, 1),
            "p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 1), "max_ms": round(lat[-1] * 1000, 1),
            "stats_progress_when_stopped": round(progress[0], 4),
            "estimated_rows_when_stopped": partial[0].estimated_rows if partial[0] else None,
            "estimated_median_tokens": partial[0].median if partial[0] else None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keys-seconds", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ftwizard-bench-", dir="/tmp"))
    path = tmp / "big.jsonl"
    try:
        t = time.perf_counter()
        rows = generate(path, int(args.size_gb * (1 << 30)))
        gen_s = time.perf_counter() - t
        size = path.stat().st_size
        first = time_preview(path, 1)[0]  # includes importing the data modules
        warm = time_preview(path, args.runs)
        from ftwizard.core.data.read import count_rows

        t = time.perf_counter()
        counted = count_rows(str(path))
        count_s = time.perf_counter() - t
        ld = time_load_dataset(path, tmp / "hf-cache")
        shutil.rmtree(tmp / "hf-cache", ignore_errors=True)

        from ftwizard.core.tiny import build_tokenizer

        tok = build_tokenizer(tmp / "tok")
        keys = responsiveness(path, tok, args.keys_seconds)
        res = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                       f"load avg {os.getloadavg()[0]:.1f}",
            "file": {"bytes": size, "rows": rows, "generate_s": round(gen_s, 1)},
            "quick_preview_first_s": round(first, 4),
            "quick_preview_s": {"median": round(statistics.median(warm), 4), "max": round(max(warm), 4)},
            "count_rows_s": round(count_s, 3), "count_rows": counted,
            "load_dataset_json_s": round(ld, 2),
            "speedup_vs_load_dataset": round(ld / max(first, max(warm)), 1),
            "keys_while_stats_run": keys,
        }
        print(json.dumps(res, indent=1))
        ok = max(first, max(warm)) <= 0.3 and res["speedup_vs_load_dataset"] >= 50 and keys["p95_ms"] < 200
        print("PASS" if ok else "FAIL", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
