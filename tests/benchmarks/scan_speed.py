"""Full-scan benchmark (run by hand; issue 17): the scan behind `ftwizard inspect` (without --quick) and
the dataset step's statistics (`core.data.stats.scan_dataset`), against `datasets.load_dataset("json")`
of the same generated messages JSONL, in one run.

    python tests/benchmarks/scan_speed.py [--size-mb 300] [--runs 3] [--distinct]

The file (chat rows of 200-1,500 characters, data_preview.generate) and the `datasets` cache go to a
temporary directory, deleted at the end. The two readers alternate, `--runs` times each, each
load_dataset with a fresh cache (what a first look at a file costs). Both wall and CPU seconds
(`time.process_time`, every thread of this process) are reported: on a shared machine the wall time
follows the load, the CPU time much less. Goal: the scan no slower than load_dataset (ratio >= 1).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_preview import generate  # noqa: E402


def timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=float, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--distinct", action="store_true",
                    help="no two rows share their messages (the duplicate check finds nothing to repeat)")
    args = ap.parse_args()
    import datasets

    from ftwizard.core.data.stats import WORK, scan_dataset

    datasets.disable_progress_bars()
    tmp = Path(tempfile.mkdtemp(prefix="ftwizard-scan-"))
    path = tmp / "big.jsonl"
    try:
        rows = generate(path, int(args.size_mb * (1 << 20)), distinct=args.distinct)
        scan_dataset(str(path), max_rows=10)  # imports, not timed
        ld_w, ld_c, sc_w, sc_c = [], [], [], []
        load0 = os.getloadavg()[0]
        for i in range(args.runs):
            cache = tmp / f"hf-{i}"
            w, c, ds = timed(lambda: datasets.load_dataset("json", data_files=str(path), split="train",
                                                          cache_dir=str(cache)))
            assert len(ds) == rows
            ld_w.append(w), ld_c.append(c)
            del ds
            shutil.rmtree(cache, ignore_errors=True)
            WORK.clear()
            w, c, rep = timed(lambda: scan_dataset(str(path)))
            assert rep.stats.rows == rows and WORK["arrow_rows"] == rows, (rep.stats.rows, dict(WORK))
            sc_w.append(w), sc_c.append(c)
        med = statistics.median
        out = {"file_mb": round(path.stat().st_size / (1 << 20), 1), "rows": rows, "runs": args.runs,
               "distinct": args.distinct,
               "load_dataset_wall_s": round(med(ld_w), 2), "load_dataset_cpu_s": round(med(ld_c), 2),
               "scan_wall_s": round(med(sc_w), 2), "scan_cpu_s": round(med(sc_c), 2),
               "ratio_wall": round(med(ld_w) / med(sc_w), 2), "ratio_cpu": round(med(ld_c) / med(sc_c), 2),
               "scan_rows_per_s": round(rows / med(sc_w)), "problems": len(rep.problems),
               "cpus": os.cpu_count(), "loadavg_1m_start": round(load0, 1),
               "loadavg_1m_end": round(os.getloadavg()[0], 1), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(json.dumps(out))
        return 0 if out["ratio_cpu"] >= 1 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
