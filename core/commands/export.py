"""Export a run for deployment: a merged standalone model (tokenizer and the chat template it trained
with), a GGUF made by llama.cpp's own converter (and llama-quantize for k-quants), an Ollama Modelfile;
then the template round-trip check (chat template, BOS/EOS/stop tokens, Ollama's TEMPLATE, next-token
distributions of the GGUF vs the merged model). Default output: RUN/export, never overwritten, written
whole or not at all. `--get-converter` fetches llama.cpp's converter into ~/.cache/ftwizard/llama.cpp."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", nargs="?", help="run id (or unique prefix) or run directory")
    p.add_argument("--runs-dir", help="runs root (default ./runs or $FTWIZARD_RUNS_DIR)")
    p.add_argument("--merge", action="store_true",
                   help="a merged standalone model (always made: GGUF and Ollama start from it)")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"),
                   help="dtype of the merged model's weights (default bf16)")
    p.add_argument("--gguf", metavar="TYPE", help="also a GGUF: f16, bf16, q8_0 (Python converter) or "
                   "q4_k_m, q5_k_m, q6_k, ... (need llama-quantize)")
    p.add_argument("--ollama", metavar="NAME", help="also an Ollama Modelfile (implies --gguf q8_0 unless given)")
    p.add_argument("--out", help="export directory (default RUN/export)")
    p.add_argument("--check", action="store_true",
                   help="only run the round-trip check on an existing export (--out or RUN/export)")
    p.add_argument("--yes", action="store_true", help="run `ollama create` without asking when ollama is installed")
    p.add_argument("--get-converter", action="store_true",
                   help="download llama.cpp's converter (llama-cpp-python's source, ~77 MB) into the cache")


def run(args) -> int:
    from pathlib import Path

    from ..errors import UserError

    if args.get_converter:
        from ..gguf import get_converter

        get_converter()
        if args.run is None:
            return 0
    if args.run is None:
        raise UserError("give a RUN (or --get-converter alone)", field="RUN")
    from ..runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    if args.check:
        from ..export import check_export

        out = Path(args.out) if args.out else run_dir / "export"
        if not (out / "export.json").is_file():
            raise UserError("not an export directory (no export.json)", file=str(out), field="--out")
        report = check_export(out, run_dir=run_dir)
        _print_report(report)
        return 0
    from ..export import export

    res = export(run_dir, out=args.out, dtype=args.dtype, gguf=args.gguf, ollama=args.ollama)
    print(f"exported to {res.out}:")
    for f in res.files:
        print(f"  {f}")
    print("times: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in res.times.items()))
    _print_report(res.check)
    if args.ollama:
        _offer_ollama_create(args.ollama, res.out, args.yes)
    return 0


def _print_report(report: dict) -> None:
    if not report:
        return
    print("round-trip check passed:")
    for line in report.get("checked", []):
        print(f"  ok  {line}")
    lg = report.get("logits")
    if lg:
        print(f"      {lg['positions']} positions on {lg['rows']} validation rows: max |p-q| "
              f"{lg['max_abs_prob_diff']:.2g}, mean KL {lg['mean_kl']:.2g} nats, top-1 agreement "
              f"{lg['top1_agreement']:.1%}")


def _offer_ollama_create(name: str, out, yes: bool) -> None:
    cmd = ["ollama", "create", name, "-f", str(out / "Modelfile")]
    shown = " ".join(cmd)
    if shutil.which("ollama") is None:
        print(f"Ollama is not installed here; on a machine with Ollama: cd {out} && ollama create {name} -f Modelfile")
        return
    if not yes:
        if not sys.stdin.isatty():
            print(f"to add it to Ollama: {shown}")
            return
        answer = input(f"run `{shown}` now? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print(f"to add it later: {shown}")
            return
    r = subprocess.run(cmd, cwd=str(out))
    if r.returncode != 0:
        from ..errors import UserError

        raise UserError(f"`{shown}` failed (exit {r.returncode}); the export itself is complete", field="--ollama")
    print(f"Ollama model created: ollama run {name}")
