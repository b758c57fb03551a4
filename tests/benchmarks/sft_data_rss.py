"""Peak RSS of the SFT data step (`prepare_training_data`: read, split, tokenize) on a generated chat set:
the rows are spooled to disk rather than held in a list, so the peak should not grow with the file.

    python tests/benchmarks/sft_data_rss.py 20      # a 20 MB messages JSONL, the tiny test tokenizer
    python tests/benchmarks/sft_data_rss.py 20 OTHER/.venv/bin/python   # the same with another checkout

Runs the data step in a fresh process (so the peak is the step's, after imports) and prints its peak
RSS (VmHWM) against the RSS after the imports, and the peak of anonymous memory (RssAnon, sampled): the
pages of memory-mapped Arrow files count in RSS but are page cache the kernel can drop.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import datasets, transformers  # noqa: F401 - imports before the baseline
from ftwizard.core.selftest import make_tiny_setup
from ftwizard.core.data.prepare import prepare_training_data
from ftwizard.core.data.tokenize import load_tokenizer, setup_tokenizer

def vm(key):
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key)).split()[1]) / 1024

work, data = Path(sys.argv[1]), sys.argv[2]
cfg = make_tiny_setup(work, steps=1, batch_size=1, max_length=256, eval_steps=None)
cfg.dataset.path, cfg.dataset.validation = data, 0.05
tok = load_tokenizer(cfg.model.name_or_path)
template, _ = setup_tokenizer(tok, None, True)
import threading
base, base_anon = vm("VmRSS"), vm("RssAnon")
peak_anon = [base_anon]
done = threading.Event()
def sample():  # anonymous memory only: pages of the memory-mapped Arrow files count in VmRSS but are page cache
    while not done.wait(0.05):
        peak_anon[0] = max(peak_anon[0], vm("RssAnon"))
threading.Thread(target=sample, daemon=True).start()
c0, w0 = time.process_time(), time.time()
train, val, facts = prepare_training_data(cfg, tok, template, lambda *a, **k: None)
done.set()
print(json.dumps({"rows": len(train) + len(val), "base_mib": base, "peak_mib": vm("VmHWM"),
                  "base_anon_mib": base_anon, "peak_anon_mib": peak_anon[0],
                  "after_mib": vm("VmRSS"), "cpu_s": time.process_time() - c0, "wall_s": time.time() - w0}))
"""


def main(argv: list[str]) -> None:
    size_mb = float(argv[0]) if argv else 20.0
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        data = work / "chat.jsonl"
        rng = random.Random(0)
        words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8))) for _ in range(3000)]
        with data.open("w") as fh:
            i = 0
            while fh.tell() < size_mb * 1e6:
                msgs = [{"role": "user", "content": f"question {i}: " + " ".join(rng.choices(words, k=40))},
                        {"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(20, 120)))}]
                fh.write(json.dumps({"messages": msgs}) + "\n")
                i += 1
        env = {**os.environ, "FTWIZARD_CACHE": str(work / "cache")}
        python = argv[1] if len(argv) > 1 else sys.executable
        out = subprocess.run([python, "-c", CHILD, str(work), str(data)], capture_output=True, text=True,
                             env=env)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{data.stat().st_size / 1e6:.0f} MB, {r['rows']} rows: data step peak RSS {r['peak_mib']:.0f} MiB "
              f"(+{r['peak_mib'] - r['base_mib']:.0f} over the {r['base_mib']:.0f} MiB after imports; anonymous "
              f"memory +{r.get('peak_anon_mib', 0) - r.get('base_anon_mib', 0):.0f} MiB, sampled every 50 ms), "
              f"{r['cpu_s']:.0f} CPU-s, {r['wall_s']:.0f} s wall, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
