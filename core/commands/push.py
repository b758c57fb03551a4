"""Push a run to the Hugging Face Hub: its adapter (default for LoRA runs), the merged model or the GGUF
(both from `ftwizard export`), with a model card written from the run (base model, kind and method,
data statistics, the config, the loss curve, evaluation results, how to load it). The token comes from
HF_TOKEN or `hf auth login` and is never written anywhere. --dry-run lists the files and prints the
card, without network and without writing anything."""

from __future__ import annotations

import argparse

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("repo", metavar="REPO", help="hub repository id, user/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--what", choices=("adapter", "merged", "gguf"),
                   help="what to upload (default: the adapter of a LoRA run, the model of a full one)")
    p.add_argument("--export-dir", help="the export to take merged/GGUF files from (default RUN/export)")
    p.add_argument("--dry-run", action="store_true", help="list the files and print the card; no network")


def run(args) -> int:
    from pathlib import Path

    from ..push import plan_push, push
    from ..runs import fmt_bytes, resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    plan = plan_push(run_dir, args.repo, args.what, Path(args.export_dir) if args.export_dir else None)
    total = sum(src.stat().st_size for src, _ in plan.files)
    print(f"{'would upload' if args.dry_run else 'uploading'} to {plan.repo} "
          f"({'private' if args.private else 'public'}), {plan.what}, {len(plan.files) + 1} files, "
          f"{fmt_bytes(total)}:")
    for src, dest in plan.files:
        print(f"  {dest}  ({fmt_bytes(src.stat().st_size)})")
    print("  README.md  (model card" + (", below)" if args.dry_run else ")"))
    if args.dry_run:
        print("\n" + plan.card)
        return 0
    url = push(plan, private=args.private)
    print(f"pushed: {url}")
    return 0
